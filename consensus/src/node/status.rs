//! What a node reports about itself: who leads, its role, its raft and state machine progress.

use std::collections::BTreeMap;

use crate::NodeId;

/// Who leads, as this node knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leadership {
    /// The leader, if one is known.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
}

/// A node's raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Leads the group.
    Leader,
    /// Follows a leader (or waits for one).
    Follower,
    /// Campaigning.
    Candidate,
    /// Checking whether a campaign could win (pre-vote).
    PreCandidate,
}

impl Role {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::PreCandidate => "pre-candidate",
        }
    }
}

/// A snapshot of a node's raft and state machine progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// The leader it knows.
    pub leader: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// First index still in the log (the rest is in the snapshot).
    pub first_index: u64,
    /// Last index in the log.
    pub last_index: u64,
    /// Raft ticks since start: logical time, in units of the tick interval.
    pub ticks: u64,
    /// Current voters, as raft sees them.
    pub voters: Vec<NodeId>,
    /// Members and addresses, as the state machine records them.
    pub members: BTreeMap<NodeId, String>,
    /// blake3 of the state machine's canonical encoding.
    pub state_hash: String,
    /// On the leader: how far each other voter's log is known to match the leader's (its
    /// match index); empty on other nodes. `last_index` minus it is the voter's lag.
    pub matched: BTreeMap<NodeId, u64>,
    /// Set while the disk under the log is full: why this node refuses writes. Meanwhile the
    /// node is out of the group (role follower, no leader; term, commit and indexes as they were
    /// when the disk filled up) and rejoins by itself once a write to its log succeeds again.
    pub disk_full: Option<String>,
}
