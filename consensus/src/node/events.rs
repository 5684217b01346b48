//! What the rest of the node asks of the raft thread, and what it answers.

use tokio::sync::oneshot;

use super::NodeStatus;
use super::waiters::Proposed;
use crate::transport::{Inbound, Proposal, ProposeReply};

/// What the raft thread is asked to do. `R` is the state machine's rejection.
pub(crate) enum Event<R> {
    /// Traffic from the transport: peer messages, delivery reports, forwarded proposals.
    Peer(Inbound),
    /// Propose, answering `reply` at once and `outcome` when the entry applies.
    Propose {
        proposal: Proposal,
        reply: oneshot::Sender<ProposeReply>,
        outcome: oneshot::Sender<EntryOutcome<R>>,
    },
    /// Answer `outcome` when the entry the leader appended at (index, term) applies here.
    Await {
        proposed: Proposed,
        outcome: oneshot::Sender<EntryOutcome<R>>,
    },
    /// A linearizable read: answer with a read index once applied reaches it.
    ReadIndex(oneshot::Sender<u64>),
    /// Report status; with the state's hash when the flag is set (it serializes the whole
    /// state on the raft thread, so polling never asks for it).
    Status(oneshot::Sender<NodeStatus>, bool),
    /// Start an election now.
    Campaign,
    /// Stop the raft thread.
    Stop,
}

/// What became of an appended entry. `R` is the state machine's rejection.
#[derive(Debug, Clone)]
pub(crate) enum EntryOutcome<R> {
    Applied,
    Rejected(R),
    Refused(String),
    Superseded,
    Unknown,
}
