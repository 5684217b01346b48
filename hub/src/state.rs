//! The replicated state machine: Flotilla's fleet, sources, stages, rollouts, health, access and
//! audit, changed only by applying committed commands.
//!
//! `apply` is deterministic: it reads nothing but the state and the command (timestamps travel
//! in commands), and every collection is ordered (`BTreeMap`), so the canonical encoding — and
//! its blake3 `hash` — is identical on every replica that applied the same log.
//!
//! A rejected command (e.g. pinning a stage to a revision that failed to render) is still a
//! committed log entry; it leaves the state untouched and its error is returned to the proposer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod access;
pub mod audit;
pub mod command;
pub mod delivery;
pub mod fleet;
pub mod health;
pub mod identity;
mod machine;
pub mod notice;
pub mod pki;
pub mod requests;
pub mod rollout;
pub mod signature;
pub mod source;
pub mod stage;

#[cfg(test)]
pub(crate) mod tests;

pub use command::{
    COMMAND_VERSION, Command, DecodeError, EncodeError, PlannedWave, RenderOutcome, RolloutAction,
    RolloutStep,
};

use access::Access;
use audit::AuditLog;
use fleet::Cluster;
use health::{HealthKey, HealthRecord};
use rollout::Rollout;
use source::{
    BlobHash, BlobInfo, ObjectKey, ObjectSetId, PendingRender, Revision, RevisionRef, Source,
};
use stage::Stage;

/// Raft id of a hub node.
pub use flotilla_consensus::NodeId;

/// Key/value labels of a cluster (core's type).
pub use flotilla_core::Labels;

/// Milliseconds since the Unix epoch, as stamped by the proposer of a command; and a
/// duration in whole milliseconds, as the state counts time (core's).
pub use flotilla_core::clock::{Timestamp, millis};

/// Version of the snapshot encoding this build writes and the newest it reads.
pub const SNAPSHOT_VERSION: u32 = 14;

/// The whole replicated state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Hub nodes in the raft group and their advertised addresses.
    pub members: BTreeMap<NodeId, String>,
    /// Registered clusters by name.
    pub clusters: BTreeMap<String, Cluster>,
    /// Git sources by name.
    pub sources: BTreeMap<String, Source>,
    /// Fetched revisions and their render results.
    pub revisions: BTreeMap<RevisionRef, Revision>,
    /// The blobs revisions reference, by content hash: size and objects, not content (which
    /// each node keeps in its content store, `node::content`).
    pub blobs: BTreeMap<BlobHash, BlobInfo>,
    /// The object sets blobs hold, each once.
    pub object_sets: BTreeMap<ObjectSetId, Vec<ObjectKey>>,
    /// Renders recorded in several entries whose final entry has not applied yet.
    pub pending_renders: BTreeMap<RevisionRef, PendingRender>,
    /// Stages by name: pinned revision and history.
    pub stages: BTreeMap<String, Stage>,
    /// Rollouts by id.
    pub rollouts: BTreeMap<u64, Rollout>,
    /// Id the next rollout gets.
    pub next_rollout_id: u64,
    /// Latest health per cluster and bundle.
    pub health: BTreeMap<HealthKey, HealthRecord>,
    /// Tokens, role bindings and bootstrap tokens.
    pub access: Access,
    /// Recent audit events.
    pub audit: AuditLog,
    /// The group's CA and the agent certificates it issued and revoked.
    pub pki: pki::Pki,
    /// Recent client writes and their outcomes, so each applies at most once.
    pub requests: requests::RequestLog,
    /// Notices for the outside world, and how far each receiver got.
    pub notices: notice::Notices,
}

/// Why a committed command was not applied. `State::apply` leaves the state unchanged when it
/// returns one (`apply_command` still records the request's outcome). Recorded outcomes are part
/// of the snapshot encoding (`State.requests`): changing this enum changes that encoding and
/// needs a new `SNAPSHOT_VERSION`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    /// The cluster is not registered.
    #[error("cluster '{0}' is not registered")]
    UnknownCluster(String),
    /// A cluster of that name is already registered.
    #[error("cluster '{0}' is already registered")]
    ClusterExists(String),
    /// The revision was never fetched (or was forgotten).
    #[error("revision {0} is unknown")]
    UnknownRevision(RevisionRef),
    /// The revision has not rendered successfully, so it cannot reach a cluster.
    #[error("revision {0} is not rendered successfully")]
    RevisionNotRendered(RevisionRef),
    /// The revision was already rendered; a render result is recorded once.
    #[error("revision {0} already has a render result")]
    AlreadyRendered(RevisionRef),
    /// The revision is still pinned, assigned or part of a rollout.
    #[error("revision {revision} is still used by {user}")]
    RevisionInUse {
        /// The revision.
        revision: RevisionRef,
        /// What uses it.
        user: String,
    },
    /// A render result names a blob that is neither stored nor carried.
    #[error("blob {0} is referenced but neither stored nor included")]
    MissingBlob(BlobHash),
    /// The stage has never been pinned.
    #[error("stage '{0}' is unknown")]
    UnknownStage(String),
    /// The rollout id is unknown.
    #[error("rollout {0} is unknown")]
    UnknownRollout(u64),
    /// Another rollout of the stage is still active.
    #[error("stage '{stage}' already has active rollout {rollout}")]
    RolloutActive {
        /// The stage.
        stage: String,
        /// The active rollout.
        rollout: u64,
    },
    /// The rollout is not in a status that allows the request.
    #[error("rollout {rollout} is {status}, cannot {action}")]
    InvalidRolloutTransition {
        /// The rollout.
        rollout: u64,
        /// Its status.
        status: String,
        /// What was asked.
        action: String,
    },
    /// A token with that id, or an unrevoked one with that name, exists.
    #[error("token '{0}' already exists; `flotilla token list` shows the tokens")]
    TokenExists(String),
    /// No token with that id.
    #[error("token '{0}' is unknown")]
    UnknownToken(String),
    /// The bootstrap token is unknown, used or expired.
    #[error("bootstrap token is {0}")]
    BootstrapTokenRefused(String),
    /// The revision is not signed as the stage requires.
    #[error("revision {revision} may not enter stage '{stage}': {reason}")]
    SignatureRequired {
        /// The stage.
        stage: String,
        /// The revision.
        revision: RevisionRef,
        /// What is wrong with its signature.
        reason: String,
    },
    /// The cluster's name is bound to another Kubernetes cluster than the one offered.
    #[error(
        "cluster '{cluster}' is bound to the cluster whose kube-system namespace has UID \
         {bound}, not {offered}"
    )]
    IdentityConflict {
        /// The cluster name.
        cluster: String,
        /// The kube-system UID bound to it.
        bound: String,
        /// The one offered.
        offered: String,
    },
    /// The rollout was held by the deletion guard: only a person's approval releases it.
    #[error(
        "rollout {rollout} of stage '{stage}' is held by the deletion guard; only `flotilla approve {stage}` releases it"
    )]
    HeldByDeletionGuard {
        /// The rollout.
        rollout: u64,
        /// Its stage.
        stage: String,
    },
    /// A rollout decision made on an older state that the state it applies to no longer
    /// supports (a cluster went offline or Degraded in between, the budget is spent): refused
    /// so the controller decides again.
    #[error("decision outdated: {0}; the controller decides again")]
    Outdated(String),
    /// The command is malformed in a way apply can tell (empty name, empty wave, ...).
    #[error("invalid command: {0}")]
    Invalid(String),
}

/// Why a snapshot image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Shorter than the version header.
    #[error("state snapshot is {0} bytes, shorter than its version header")]
    Truncated(usize),
    /// Written by a newer hub.
    #[error(
        "state snapshot has version {0}, this hub reads version {SNAPSHOT_VERSION}: a newer one needs this node upgraded; an older one predates a format change and needs a fresh data dir"
    )]
    UnknownVersion(u32),
    /// Encoding or decoding failed.
    #[error("state snapshot codec: {0}")]
    Codec(#[from] postcard::Error),
}

impl State {
    /// A fresh state for a group whose first members are `members`.
    pub fn bootstrap(members: BTreeMap<NodeId, String>) -> Self {
        State {
            members,
            next_rollout_id: 1,
            ..State::default()
        }
    }

    /// Applies one committed command. On error the state is unchanged.
    pub fn apply(&mut self, command: &Command) -> Result<(), CommandError> {
        match command {
            Command::RegisterCluster { name, labels, at } => {
                fleet::register(self, name, labels, *at)
            }
            Command::RelabelCluster { name, labels, at } => fleet::relabel(self, name, labels, *at),
            Command::RemoveCluster { name, at } => fleet::remove(self, name, *at),
            Command::SetLiveness {
                cluster,
                online,
                at,
            } => fleet::set_liveness(self, cluster, *online, *at),
            Command::SetClusterApi { cluster, api } => fleet::set_api(self, cluster, api),
            Command::SetClusterCapabilities {
                cluster,
                capabilities,
                agent_version,
                at,
            } => fleet::set_capabilities(self, cluster, capabilities, agent_version, *at),
            Command::RecordFetch {
                source,
                url,
                commit,
                at,
            } => source::record_fetch(self, source, url, commit, *at),
            Command::RequestFetch {
                source,
                url,
                reason: _,
                at,
            } => source::request_fetch(self, source, url, *at),
            Command::RecordFetchError {
                source,
                url,
                error,
                at,
            } => source::record_fetch_error(self, source, url, error, *at),
            Command::RecordRender {
                revision,
                outcome,
                at,
            } => source::record_render(self, revision, outcome, *at),
            Command::AmendRender {
                revision,
                bundles,
                errors,
                index,
                staged,
                at,
            } => source::amend_render(self, revision, bundles, errors, index, *staged, *at),
            Command::StageRender {
                revision,
                attempt,
                part,
                bundles,
                errors,
                index,
                at: _,
            } => source::stage_render(self, revision, *attempt, *part, bundles, errors, index),
            Command::ForgetRevision { revision, at: _ } => source::forget(self, revision),
            Command::AssignRevision {
                clusters,
                revision,
                at,
            } => fleet::assign(self, clusters, revision, *at),
            Command::PinStage {
                stage,
                revision,
                change,
                by,
                reason,
                at,
            } => stage::pin(self, stage, revision, *change, by, reason, *at),
            Command::StartRollout {
                stage,
                to,
                waves,
                gate,
                guard,
                change,
                await_approval,
                supersede,
                by,
                reason,
                at,
            } => rollout::start(
                self,
                rollout::NewRollout {
                    stage,
                    to,
                    waves,
                    gate: *gate,
                    guard: *guard,
                    change: *change,
                    await_approval: *await_approval,
                    supersede: *supersede,
                    by,
                    reason,
                    at: *at,
                },
            ),
            Command::RolloutStep { rollout, step, at } => rollout::step(self, *rollout, step, *at),
            Command::SetRolloutStatus {
                rollout,
                action,
                by,
                reason,
                at,
            } => rollout::transition(self, *rollout, *action, by, reason, *at),
            Command::FailRollout {
                rollout,
                reason,
                by,
                at,
            } => rollout::fail(self, *rollout, reason, by, *at),
            Command::RollBack {
                stage,
                to,
                clusters,
                by,
                reason,
                at,
            } => rollout::roll_back(
                self,
                rollout::RollBack {
                    stage,
                    to,
                    clusters,
                    by,
                    reason,
                    at: *at,
                },
            ),
            Command::RecordHealth { reports } => {
                health::record(self, reports);
                Ok(())
            }
            Command::CreateToken {
                name,
                id,
                secret_hash,
                bindings,
                expires,
                by,
                at,
            } => access::create_token(self, name, id, secret_hash, bindings, *expires, by, *at),
            Command::RevokeToken { id, at } => access::revoke_token(self, id, *at),
            Command::IssueBootstrapToken {
                cluster,
                token_hash,
                expires,
                at,
            } => access::issue_bootstrap(self, cluster, token_hash, *expires, *at),
            Command::ConsumeBootstrapToken {
                token_hash,
                request,
                at,
            } => access::consume_bootstrap(self, token_hash, request, *at),
            Command::RecordAudit { event } => {
                self.audit.push(event.clone());
                Ok(())
            }
            Command::RecordSignature {
                revision,
                signature,
                at: _,
            } => signature::record(self, revision, signature),
            Command::RecordCertificate {
                cluster,
                serial,
                not_after,
                at,
            } => pki::record_certificate(self, cluster, serial, *not_after, *at),
            Command::AbandonRollout {
                rollout,
                reason,
                by,
                at,
            } => rollout::abandon(self, *rollout, reason, by, *at),
            Command::BindClusterIdentity {
                cluster,
                kube_system_uid,
                by,
                at,
            } => identity::bind(self, cluster, kube_system_uid, by, *at),
            Command::RecordIdentityConflict {
                cluster,
                kube_system_uid,
                at,
            } => identity::record_conflict(self, cluster, kube_system_uid, *at),
            Command::ResetClusterIdentity {
                cluster,
                kube_system_uid,
                by,
                at,
            } => identity::reset(self, cluster, kube_system_uid.as_deref(), by, *at),
            Command::AckNotices { receiver, through } => notice::done(self, receiver, *through),
        }
    }

    /// Records a membership change applied by raft (not a command: conf changes are raft's own
    /// entries, but the addresses they carry are replicated state).
    pub fn apply_member_change(&mut self, id: NodeId, address: Option<String>) {
        match address {
            Some(address) => {
                self.members.insert(id, address);
            }
            None => {
                self.members.remove(&id);
            }
        }
    }

    /// The canonical encoding, the same bytes on every replica with the same state.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, SnapshotError> {
        Ok(postcard::to_stdvec(self)?)
    }

    /// blake3 of the canonical encoding, hex: equal on replicas exactly when their states are.
    pub fn hash(&self) -> Result<String, SnapshotError> {
        Ok(blake3::hash(&self.canonical_bytes()?).to_hex().to_string())
    }

    /// The snapshot image: version header and canonical encoding.
    pub fn to_snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        Ok(postcard::to_extend(
            self,
            SNAPSHOT_VERSION.to_le_bytes().to_vec(),
        )?)
    }

    /// Restores a state from a snapshot image.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let (header, body) = bytes
            .split_first_chunk::<4>()
            .ok_or(SnapshotError::Truncated(bytes.len()))?;
        match u32::from_le_bytes(*header) {
            SNAPSHOT_VERSION => Ok(postcard::from_bytes(body)?),
            other => Err(SnapshotError::UnknownVersion(other)),
        }
    }

    /// Every blob the state references (rendered revisions and staged render parts): what each
    /// node's content store must hold.
    pub fn referenced_blobs(&self) -> impl Iterator<Item = &BlobHash> {
        self.blobs
            .keys()
            .chain(self.pending_renders.values().flat_map(|p| p.blobs.keys()))
    }

    /// Whether the state references the blob (see [`State::referenced_blobs`]).
    pub fn references_blob(&self, hash: &BlobHash) -> bool {
        self.blobs.contains_key(hash)
            || self
                .pending_renders
                .values()
                .any(|p| p.blobs.contains_key(hash))
    }

    /// The bundles a cluster must hold: bundle name → blob hash, from its assigned revision.
    pub fn desired_bundles(&self, cluster: &str) -> BTreeMap<String, BlobHash> {
        self.clusters
            .get(cluster)
            .and_then(|c| c.assigned.as_ref())
            .and_then(|rev| self.revisions.get(rev))
            .and_then(|rev| rev.bundles_for(cluster))
            .cloned()
            .unwrap_or_default()
    }
}
