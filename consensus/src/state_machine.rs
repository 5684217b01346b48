//! What a raft group replicates: a deterministic state machine that applies committed
//! commands, turns into a snapshot and back, and records the group's members (so a restarted
//! or joining node knows its peers from the state alone) and the group's CA certificate.

use std::collections::BTreeMap;
use std::fmt;

use flotilla_pki::CaPem;

use crate::{NodeId, RequestId};

/// The replicated state. Applying must be deterministic: every replica applies the same
/// commands in the same order and must end in the same state (no clocks, no randomness; what
/// a command needs travels in it).
pub trait StateMachine: fmt::Debug + Default + Clone + Send + Sync + 'static {
    /// A write, proposed by a node and applied by every replica once committed.
    type Command: Send + Sync + 'static;
    /// Why a committed command was refused; nothing the command would have changed is changed
    /// when one is returned (the record of its request and outcome is kept).
    type Rejection: std::error::Error + Clone + Send + Sync + 'static;
    /// Why a command could not be encoded into a log entry.
    type EncodeError: std::error::Error + Send + Sync + 'static;
    /// Why a log entry could not be decoded (damaged, or written by a newer version).
    type DecodeError: std::error::Error + Send + Sync + 'static;
    /// Why a snapshot could not be written or read.
    type SnapshotError: std::error::Error + Send + Sync + 'static;

    /// The bytes of a log entry carrying `command`.
    fn encode_command(command: &Self::Command) -> Result<Vec<u8>, Self::EncodeError>;

    /// The command a log entry carries.
    fn decode_command(bytes: &[u8]) -> Result<Self::Command, Self::DecodeError>;

    /// Applies a committed command. `request` is the id of the write it carries (none for
    /// entries written without one): a request that already applied must change nothing and
    /// return its first outcome, so each write applies at most once however often it was sent.
    /// Recent requests and their outcomes are part of the state (snapshots carry them).
    fn apply_command(
        &mut self,
        command: &Self::Command,
        request: Option<RequestId>,
    ) -> Result<(), Self::Rejection>;

    /// The outcome of `request`, if it applied recently: how a caller whose own copy of the
    /// write was superseded or jumped over by a snapshot learns what became of the write.
    fn request_outcome(&self, request: RequestId) -> Option<Result<(), Self::Rejection>>;

    /// The state every founding member of a group starts from: the founders (id → advertised
    /// address) and the group's CA certificate (never its private key), if the group uses TLS.
    fn founding(members: BTreeMap<NodeId, String>, ca: Option<CaPem>) -> Self;

    /// The group's members, id → advertised address.
    fn members(&self) -> &BTreeMap<NodeId, String>;

    /// Records a committed membership change: `Some(address)` adds or moves a member, `None`
    /// removes it.
    fn change_member(&mut self, id: NodeId, address: Option<String>);

    /// The group's CA as replicated (a group founded by an older version may carry its
    /// private key too).
    fn group_ca(&self) -> Option<&CaPem>;

    /// The state as snapshot bytes.
    fn snapshot(&self) -> Result<Vec<u8>, Self::SnapshotError>;

    /// The state a snapshot holds.
    fn restore(bytes: &[u8]) -> Result<Self, Self::SnapshotError>;

    /// A digest of the state, equal on replicas that applied the same entries.
    fn digest(&self) -> Result<String, Self::SnapshotError>;

    /// The state with every secret removed, as it may be shown to a peer or an operator.
    fn without_secrets(&self) -> Self;
}
