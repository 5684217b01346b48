//! Why a node did not start, a proposal did not apply, or a read did not complete.

use crate::config::ConfigError;
use crate::storage::StoreError;
use crate::transport::net::NetError;
use crate::{NodeId, StateMachine};

/// Why a proposal did not apply. Only `Timeout` and `Unknown` leave the outcome open.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError<S: StateMachine> {
    /// No leader was known before the deadline (an election is running, or a quorum is lost).
    #[error("no leader is known (election in progress or quorum lost); retry shortly")]
    NoLeader,
    /// This node does not lead and forwarding to the leader kept failing.
    #[error("not leader; try node {leader}{}", address.as_deref().map(|a| format!(" at {a}")).unwrap_or_default())]
    NotLeader {
        /// The node believed to lead.
        leader: NodeId,
        /// Its address, if known.
        address: Option<String>,
    },
    /// Appended but not applied before the deadline: it may still apply.
    #[error("timed out waiting for the proposal{} to apply; it may still apply", index.map(|i| format!(" at index {i}")).unwrap_or_default())]
    Timeout {
        /// Where it was appended, if it was.
        index: Option<u64>,
    },
    /// A later leader overwrote the entry: it did not apply and is safe to retry.
    #[error("the proposal at index {index} was overwritten after a leader change; retry")]
    Superseded {
        /// Where it had been appended.
        index: u64,
    },
    /// A snapshot replaced the log over the entry; whether it applied is unknown.
    #[error("a snapshot replaced the log over index {index}; check the state before retrying")]
    Unknown {
        /// Where it had been appended.
        index: u64,
    },
    /// It committed, but the state machine refused it (the state is unchanged).
    #[error("rejected at index {index}: {error}")]
    Rejected {
        /// Where it committed.
        index: u64,
        /// Why it was refused.
        error: S::Rejection,
    },
    /// The leader refused it outright (e.g. another membership change is in progress).
    #[error("refused: {0}")]
    Refused(String),
    /// The command could not be encoded.
    #[error(transparent)]
    Encode(S::EncodeError),
    /// The node is stopped.
    #[error("the hub node is stopped")]
    Stopped,
}

/// Why a linearizable read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The leader did not confirm a read index before the deadline.
    #[error("no read index confirmed by a leader in time (no leader, or quorum lost)")]
    Timeout,
    /// This node's disk is full, so it is out of the group until space is freed: its replica
    /// cannot be known to be current. Carries the node's reason.
    #[error(
        "{0}; this node cannot serve linearizable reads until it rejoins: read from another node"
    )]
    DiskFull(String),
    /// The node is stopped.
    #[error("the hub node is stopped")]
    Stopped,
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError<S: StateMachine> {
    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data dir is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Listening failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The stored state machine image is unreadable.
    #[error("data dir state snapshot: {0}")]
    Snapshot(S::SnapshotError),
    /// raft refused the configuration or the log.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The raft thread could not be started.
    #[error("cannot start the raft thread: {0}")]
    Thread(std::io::Error),
    /// What the embedding program keeps beside the log could not be opened (the message says
    /// what and why).
    #[error("{0}")]
    Beside(String),
}
