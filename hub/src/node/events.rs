//! What the rest of the node asks of the raft thread, and what it answers.

use raft::SnapshotStatus;
use raft::eraftpb::{ConfChangeV2, Message};
use tokio::sync::oneshot;

use super::NodeStatus;
use crate::state::{CommandError, NodeId};

/// What the raft thread is asked to do.
pub(crate) enum Event {
    /// A message from a peer.
    Raft(Box<Message>),
    /// Propose, answering `reply` at once and `outcome` when the entry applies.
    Propose {
        proposal: Proposal,
        reply: oneshot::Sender<ProposeReply>,
        outcome: Option<oneshot::Sender<EntryOutcome>>,
    },
    /// Answer `outcome` when the entry the leader appended at (index, term) applies here.
    Await {
        index: u64,
        term: u64,
        conf_change: bool,
        outcome: oneshot::Sender<EntryOutcome>,
    },
    /// A linearizable read: answer with a read index once applied reaches it.
    ReadIndex(oneshot::Sender<u64>),
    /// Sending to the peer failed.
    Unreachable(NodeId),
    /// A snapshot upload to the peer finished or failed.
    SnapshotReport(NodeId, SnapshotStatus),
    /// Report status.
    Status(oneshot::Sender<NodeStatus>),
    /// Start an election now.
    Campaign,
    /// Stop the raft thread.
    Stop,
}

/// Something to append to the log.
#[derive(Debug, Clone)]
pub(crate) enum Proposal {
    /// An encoded command.
    Command(Vec<u8>),
    /// A membership change.
    ConfChange(ConfChangeV2),
}

/// The raft thread's immediate answer to a proposal.
#[derive(Debug, Clone)]
pub(crate) enum ProposeReply {
    Proposed { index: u64, term: u64 },
    NotLeader { leader: Option<NodeId> },
    Refused(String),
}

/// What became of an appended entry.
#[derive(Debug, Clone)]
pub(crate) enum EntryOutcome {
    Applied,
    Rejected(CommandError),
    Refused(String),
    Superseded,
    Unknown,
}
