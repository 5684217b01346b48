//! The hub's node: a consensus node ([`flotilla_consensus::node`]) replicating the hub's
//! [`State`], with the hub's own peer services on its peer listener: [`presence`] (and the
//! presence board it fills) and [`content`] (the rendered bundles the state names by hash, in a
//! store beside the raft log).
//!
//! [`Node::start`] starts one; the returned [`NodeHandle`] is all a service or controller
//! needs: it dereferences to the consensus handle (proposals, reads, leadership, membership)
//! and adds what the hub keeps beside the raft group.

use std::ops::Deref;

use prometheus_client::metrics::histogram::Histogram;
use std::sync::Arc;

use crate::config::NodeConfig;
use crate::state::State;
pub mod content;
pub mod presence;

use crate::state::source::{Blob, BlobHash};
use content::{Content, ContentError, ContentStore};
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
    content: Arc<Content>,
    proposals: Arc<std::sync::OnceLock<Histogram>>,
}

impl Node {
    /// Starts a consensus node replicating the hub's state, with the presence and content
    /// services on its peer listener, on the current tokio runtime; the node keeps its content
    /// store holding what the state references until it stops.
    pub async fn start(config: NodeConfig) -> Result<NodeHandle, StartError> {
        let store =
            ContentStore::open(&config.data_dir).map_err(|e| StartError::Beside(e.to_string()))?;
        let content = Arc::new(Content::new(Arc::new(store)));
        let presence = Arc::new(PresenceBoard::default());
        let proposals: Arc<std::sync::OnceLock<Histogram>> = Arc::default();
        let (board, held, timed) = (presence.clone(), content.clone(), proposals.clone());
        let consensus = flotilla_consensus::node::Node::start(config, move |consensus, peers| {
            let node = NodeHandle {
                consensus: consensus.clone(),
                presence: board,
                content: held,
                proposals: timed,
            };
            peers
                .add_service(presence::server(node.clone()))
                .add_service(content::server(node))
        })
        .await?;
        let node = NodeHandle {
            consensus,
            presence,
            content,
            proposals,
        };
        tokio::spawn(content::keep_up(node.clone()));
        Ok(node)
    }
}

impl NodeHandle {
    /// Proposes a command (the consensus handle's `propose`), timing it into the histogram
    /// [`NodeHandle::time_proposals`] gave, if any.
    pub async fn propose(&self, command: &crate::state::Command) -> Result<Applied, ProposeError> {
        let start = std::time::Instant::now();
        let outcome = self.consensus.propose(command).await;
        if let Some(histogram) = self.proposals.get() {
            histogram.observe(start.elapsed().as_secs_f64());
        }
        outcome
    }

    /// Times every later proposal through this handle and its clones into `histogram` (the
    /// first histogram given stays).
    pub fn time_proposals(&self, histogram: Histogram) {
        let _ = self.proposals.set(histogram);
    }

    /// Which clusters the group's nodes hold agent streams for, as reported to this node while
    /// it leads (see `node::presence`).
    pub fn presence(&self) -> &Arc<PresenceBoard> {
        &self.presence
    }

    /// Stops the node (see the consensus handle's `shutdown`) and closes its content store.
    pub async fn shutdown(&self) {
        self.consensus.shutdown().await;
        self.content.store().close();
    }

    /// This node's content: its store of blobs and its clients to the peers' stores.
    pub fn content(&self) -> &Arc<Content> {
        &self.content
    }

    /// A blob the state names, from this node's store or fetched from a peer (checked).
    pub async fn blob(&self, hash: &BlobHash) -> Result<Blob, ContentError> {
        content::blob(self, hash).await
    }

    /// Stores new blobs here and on a majority of the group, durably: done before proposing
    /// the hashes that name them.
    pub async fn replicate(&self, blobs: Vec<Blob>) -> Result<(), ContentError> {
        content::replicate(self, blobs).await
    }
}

impl Deref for NodeHandle {
    type Target = ConsensusHandle;

    fn deref(&self) -> &ConsensusHandle {
        &self.consensus
    }
}
