//! The hub's node: a consensus node ([`flotilla_consensus::node`]) replicating the hub's
//! [`State`], with the hub's own peer service ([`presence`]) on its peer listener and the
//! presence board that service fills.
//!
//! [`Node::start`] starts one; the returned [`NodeHandle`] is all a service or controller
//! needs: it dereferences to the consensus handle (proposals, reads, leadership, membership)
//! and adds what the hub keeps beside the raft group.

use std::ops::Deref;
use std::sync::Arc;

use crate::config::NodeConfig;
use crate::state::State;
pub mod presence;

use presence::PresenceBoard;

pub use flotilla_consensus::node::{
    Applied, CA_FILE, CA_KEY_FILE, Leadership, NodeStatus, ReadError, Role,
};

/// Why a proposal of a hub command did not apply.
pub type ProposeError = flotilla_consensus::node::ProposeError<State>;

/// Why a hub node did not start.
pub type StartError = flotilla_consensus::node::StartError<State>;

/// A read view of this replica's hub state.
pub type StateView<'a> = flotilla_consensus::node::StateView<'a, State>;

/// A client of a hub node's group API.
pub type GroupClient = flotilla_consensus::group::GroupClient<State>;

/// The consensus node under a hub node.
pub type ConsensusHandle = flotilla_consensus::node::NodeHandle<State>;

/// Starts hub nodes.
pub struct Node;

/// A running hub node. Clones share the node; call `shutdown` to stop it.
#[derive(Clone)]
pub struct NodeHandle {
    consensus: ConsensusHandle,
    presence: Arc<PresenceBoard>,
}

impl Node {
    /// Starts a consensus node replicating the hub's state, with the presence service on its
    /// peer listener, on the current tokio runtime.
    pub async fn start(config: NodeConfig) -> Result<NodeHandle, StartError> {
        let presence = Arc::new(PresenceBoard::default());
        let board = presence.clone();
        let consensus = flotilla_consensus::node::Node::start(config, move |consensus, peers| {
            let node = NodeHandle {
                consensus: consensus.clone(),
                presence: board,
            };
            peers.add_service(presence::server(node))
        })
        .await?;
        Ok(NodeHandle {
            consensus,
            presence,
        })
    }
}

impl NodeHandle {
    /// Which clusters the group's nodes hold agent streams for, as reported to this node while
    /// it leads (see `node::presence`).
    pub fn presence(&self) -> &Arc<PresenceBoard> {
        &self.presence
    }
}

impl Deref for NodeHandle {
    type Target = ConsensusHandle;

    fn deref(&self) -> &ConsensusHandle {
        &self.consensus
    }
}
