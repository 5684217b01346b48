//! Commands: the only way the replicated state changes, and their versioned wire envelope.
//!
//! A command is encoded as a 4-byte little-endian version followed by the postcard encoding of
//! that version's `Command`. A node that reads a version newer than it understands refuses to
//! apply it (and stops applying, rather than skipping and diverging); see `DecodeError`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::access::RoleBinding;
use super::audit::AuditEvent;
use super::health::HealthReport;
use super::rollout::{DeletionLimits, Gate};
use super::source::{BlobHash, BlobIndex, RenderError, RevisionRef, Staged};
use super::stage::StageChange;
use super::{Labels, Timestamp};

/// The command encoding this build writes and the newest it reads.
pub const COMMAND_VERSION: u32 = 14;

/// A decision to record in the replicated state. Every timestamp travels in the command: apply
/// never reads a clock, so every replica computes the same state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// A cluster joins the fleet with its labels.
    RegisterCluster {
        /// Cluster name, unique in the fleet.
        name: String,
        /// Labels stages and bundles select on.
        labels: Labels,
        /// When.
        at: Timestamp,
    },
    /// A registered cluster's labels are replaced.
    RelabelCluster {
        /// Cluster name.
        name: String,
        /// The new labels (replacing all old ones).
        labels: Labels,
        /// When.
        at: Timestamp,
    },
    /// A cluster leaves the fleet; its health records and bootstrap tokens go with it.
    RemoveCluster {
        /// Cluster name.
        name: String,
        /// When.
        at: Timestamp,
    },
    /// The source controller fetched a commit.
    RecordFetch {
        /// Source name (one per repository).
        source: String,
        /// Repository URL.
        url: String,
        /// Commit id fetched.
        commit: String,
        /// When.
        at: Timestamp,
    },
    /// Someone (a webhook, an operator) asks the leader to fetch a source now instead of at
    /// its next poll.
    RequestFetch {
        /// Source name.
        source: String,
        /// Repository URL.
        url: String,
        /// Who asked and why, e.g. `webhook github push refs/heads/main`.
        reason: String,
        /// When.
        at: Timestamp,
    },
    /// Fetching a source failed.
    RecordFetchError {
        /// Source name.
        source: String,
        /// Repository URL.
        url: String,
        /// What went wrong.
        error: String,
        /// When.
        at: Timestamp,
    },
    /// A fetched revision was rendered for every cluster, or failed to render.
    RecordRender {
        /// The revision (source and commit), which must have been fetched.
        revision: RevisionRef,
        /// Result of rendering.
        outcome: RenderOutcome,
        /// When.
        at: Timestamp,
    },
    /// A rendered revision is rendered again for some clusters, because they were registered or
    /// relabelled after it rendered. Their entries are replaced; a cluster that failed keeps
    /// what it had and the error is recorded for it.
    AmendRender {
        /// The revision, which must have rendered successfully.
        revision: RevisionRef,
        /// cluster → bundle → blob hash, for the clusters that rendered.
        bundles: BTreeMap<String, BTreeMap<String, BlobHash>>,
        /// cluster → why it did not render.
        errors: BTreeMap<String, RenderError>,
        /// Blobs not yet in the state, described (their content is in the nodes' content
        /// stores, on a majority before this is proposed).
        index: BlobIndex,
        /// The parts staged before it (`StageRender`), whose entries it takes in.
        staged: Option<Staged>,
        /// When.
        at: Timestamp,
    },
    /// One part of a render too large for one entry: its entries wait, staged, for the
    /// `RecordRender` or `AmendRender` that names the attempt and takes them all in. Part 0
    /// starts an attempt (dropping parts of another); each next part must follow the last.
    StageRender {
        /// The revision.
        revision: RevisionRef,
        /// Chosen by the leader that renders; parts of one attempt share it.
        attempt: u64,
        /// 0, 1, … in order.
        part: u32,
        /// cluster → bundle → blob hash.
        bundles: BTreeMap<String, BTreeMap<String, BlobHash>>,
        /// cluster → why it did not render (amendments).
        errors: BTreeMap<String, RenderError>,
        /// Blobs this part introduces, described.
        index: BlobIndex,
        /// When.
        at: Timestamp,
    },
    /// An old revision is dropped, with every blob nothing else references.
    ForgetRevision {
        /// The revision.
        revision: RevisionRef,
        /// When.
        at: Timestamp,
    },
    /// Clusters are told to hold a revision (a rollout wave, a rollback, a first deployment).
    AssignRevision {
        /// The clusters.
        clusters: Vec<String>,
        /// The rendered revision they must hold.
        revision: RevisionRef,
        /// When.
        at: Timestamp,
    },
    /// A stage is pinned to a revision (promotion, rollback, tracking a branch head).
    PinStage {
        /// Stage name.
        stage: String,
        /// The rendered revision.
        revision: RevisionRef,
        /// Why the pin moved.
        change: StageChange,
        /// Who moved it (a user, or `controller:<name>`).
        by: String,
        /// The reason given.
        reason: String,
        /// When.
        at: Timestamp,
    },
    /// A rollout of a stage to a new revision is created: it runs at once (the stage is pinned
    /// to the target) or, for a stage with manual approval or when the deletion guard judges
    /// (as this applies) that it would delete too much, waits for `Approve`.
    StartRollout {
        /// Stage name (must be pinned already; its pin is the rollout's starting point).
        stage: String,
        /// Target revision.
        to: RevisionRef,
        /// Waves of clusters, in order.
        waves: Vec<PlannedWave>,
        /// The health gate.
        gate: Gate,
        /// The deletion guard's limits, from the stage's policy.
        guard: DeletionLimits,
        /// How the target comes to the stage: `Track`, `Promote` or `ForcePromote`.
        change: StageChange,
        /// Wait for an approval before anything happens.
        await_approval: bool,
        /// Replace a rollout still active for the stage instead of refusing.
        supersede: bool,
        /// Who asked (a user, or `controller:rollout`).
        by: String,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
    },
    /// A running rollout moves one step: clusters given the target, clusters seen healthy or
    /// no longer healthy, a wave healthy (its soak begins) or passed.
    RolloutStep {
        /// Rollout id.
        rollout: u64,
        /// The step.
        step: RolloutStep,
        /// When.
        at: Timestamp,
    },
    /// A rollout is paused, resumed or approved.
    SetRolloutStatus {
        /// Rollout id.
        rollout: u64,
        /// The transition.
        action: RolloutAction,
        /// Who asked (user or controller).
        by: String,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
    },
    /// A running rollout failed its health gate: it is paused, or rolled back (every cluster of
    /// it assigned anything but its start returns to the start, the stage is pinned back and the
    /// target is marked failed for it), as its gate says.
    FailRollout {
        /// Rollout id.
        rollout: u64,
        /// What failed.
        reason: String,
        /// Who decided (`controller:rollout`).
        by: String,
        /// When.
        at: Timestamp,
    },
    /// A stage goes back to an earlier revision at once: the active rollout (if any) ends
    /// rolled back, the stage is pinned to `to`, what it moves away from is marked failed for
    /// it, and `clusters` are assigned `to`.
    RollBack {
        /// Stage name.
        stage: String,
        /// The revision to return to.
        to: RevisionRef,
        /// Clusters to assign it (each must have bundles in it).
        clusters: Vec<String>,
        /// Who asked (user or controller).
        by: String,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
    },
    /// Health reports from agents, batched; only changes are proposed.
    RecordHealth {
        /// The reports.
        reports: Vec<HealthReport>,
    },
    /// A cluster's agent came or went.
    SetLiveness {
        /// Cluster name.
        cluster: String,
        /// Whether its agent is connected.
        online: bool,
        /// When.
        at: Timestamp,
    },
    /// A cluster's agent said whether it reaches the cluster's API server.
    SetClusterApi {
        /// Cluster name.
        cluster: String,
        /// What the agent said.
        api: super::fleet::ApiReachability,
    },
    /// A cluster's agent said what the cluster serves (its version and API group versions).
    SetClusterCapabilities {
        /// Cluster name.
        cluster: String,
        /// What the agent said.
        capabilities: flotilla_core::inventory::Capabilities,
        /// The agent's version, from its hello.
        agent_version: String,
        /// When the proposing node heard it.
        at: Timestamp,
    },
    /// An API token is created; only its hash is stored.
    CreateToken {
        /// Its name, unique among unrevoked tokens.
        name: String,
        /// Token id (public part).
        id: String,
        /// Hash of the secret part, hex.
        secret_hash: String,
        /// Roles it grants.
        bindings: Vec<RoleBinding>,
        /// When it stops working, if ever.
        expires: Option<Timestamp>,
        /// Who created it.
        by: String,
        /// When.
        at: Timestamp,
    },
    /// An API token is revoked.
    RevokeToken {
        /// Token id.
        id: String,
        /// When.
        at: Timestamp,
    },
    /// A one-time, expiring bootstrap token for a cluster's agent is issued (hash only).
    IssueBootstrapToken {
        /// Cluster the token registers.
        cluster: String,
        /// Hash of the token, hex.
        token_hash: String,
        /// Expiry.
        expires: Timestamp,
        /// When.
        at: Timestamp,
    },
    /// A bootstrap token is used; refused when unknown, expired at `at`, or used by another
    /// registration request.
    ConsumeBootstrapToken {
        /// Hash of the token presented, hex.
        token_hash: String,
        /// The registration request using it: blake3 of its CSR, hex (empty: none named, so
        /// it cannot be sent again).
        request: String,
        /// When.
        at: Timestamp,
    },
    /// An audit event (who did what, when).
    RecordAudit {
        /// The event.
        event: AuditEvent,
    },
    /// The hub issued a cluster's agent a certificate (at registration or renewal); its serial
    /// is revoked when the cluster is removed.
    RecordCertificate {
        /// The cluster it names.
        cluster: String,
        /// Its serial.
        serial: flotilla_pki::Serial,
        /// When it expires.
        not_after: Timestamp,
        /// When it was issued.
        at: Timestamp,
    },
    /// The signature of a fetched commit, as git stores it, recorded before its revision is
    /// rendered so stages that `requireSignedBy` keys can verify it when it would enter them.
    RecordSignature {
        /// The revision (which must have been fetched).
        revision: RevisionRef,
        /// The signature and the payload it signs.
        signature: super::signature::CommitSignature,
        /// When.
        at: Timestamp,
    },
    /// An active rollout whose stage left `flotilla.yaml` ends abandoned: no policy drives it
    /// any more. A stage that had moved is pinned back to the rollout's start, so a stage
    /// declared again later moves on by a gated rollout, never by assigning the abandoned
    /// target to every cluster at once; clusters keep what they hold.
    AbandonRollout {
        /// Rollout id.
        rollout: u64,
        /// Why.
        reason: String,
        /// Who decided (`controller:rollout`).
        by: String,
        /// When.
        at: Timestamp,
    },
    /// A cluster's name is bound to the Kubernetes cluster an agent reported (its kube-system
    /// namespace's UID), unless it is bound already: refused when bound to another.
    BindClusterIdentity {
        /// Cluster name.
        cluster: String,
        /// `metadata.uid` of the reported cluster's `kube-system` namespace.
        kube_system_uid: String,
        /// The agent that reported it (`agent:cluster NAME`).
        by: String,
        /// When.
        at: Timestamp,
    },
    /// An agent reporting another cluster than the one bound to a name was refused.
    RecordIdentityConflict {
        /// Cluster name.
        cluster: String,
        /// The kube-system UID it reported.
        kube_system_uid: String,
        /// When.
        at: Timestamp,
    },
    /// An admin forgets the identity bound to a cluster's name (the cluster was rebuilt), or
    /// binds the one given; any recorded conflict is cleared.
    ResetClusterIdentity {
        /// Cluster name.
        cluster: String,
        /// The kube-system UID to bind now; none: the next agent's hello binds its own.
        kube_system_uid: Option<String>,
        /// Who asked.
        by: String,
        /// When.
        at: Timestamp,
    },
    /// The notify controller is done with a receiver's notices up to `through` (delivered,
    /// given up on, or not for it).
    AckNotices {
        /// The receiver's configured name.
        receiver: String,
        /// The last notice it is done with.
        through: u64,
    },
}

/// What rendering a revision produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RenderOutcome {
    /// Rendered: per cluster, per bundle, the blob holding its manifests.
    Rendered {
        /// cluster → bundle → blob hash.
        bundles: BTreeMap<String, BTreeMap<String, BlobHash>>,
        /// Blobs not yet in the state, described (content-addressed, so describing one again
        /// is harmless; the content is in the nodes' content stores).
        index: BlobIndex,
        /// The revision's `flotilla.yaml` text: stages and their policies travel with the
        /// revision, so any node can read them without the repository.
        spec: String,
        /// Per chart bundle, the chart it rendered from (source, version, digest).
        #[serde(default)]
        charts: BTreeMap<String, super::source::ChartRecord>,
        /// The parts staged before it (`StageRender`), whose entries it takes in.
        staged: Option<Staged>,
    },
    /// Rendering failed; the revision never reaches a cluster.
    Failed {
        /// Where and why.
        error: RenderError,
    },
}

/// One wave of a new rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedWave {
    /// Name shown in status.
    pub name: String,
    /// Its clusters.
    pub clusters: Vec<String>,
    /// How long it soaks once healthy, in milliseconds.
    pub soak_ms: u64,
}

/// A step of a running rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutStep {
    /// Clusters of the current wave are given the target.
    Assign {
        /// The current wave.
        wave: usize,
        /// Clusters of it not given the target yet.
        clusters: Vec<String>,
    },
    /// Clusters given the target report it Applied and Healthy.
    Healthy {
        /// The clusters.
        clusters: Vec<String>,
    },
    /// Clusters seen healthy at the target are not any more.
    Unhealthy {
        /// The clusters.
        clusters: Vec<String>,
    },
    /// Every cluster of the current wave is healthy at the target: its soak begins.
    WaveHealthy {
        /// The current wave.
        wave: usize,
    },
    /// The current wave soaked healthy: the next one may begin (or the rollout completes).
    WaveDone {
        /// The current wave.
        wave: usize,
    },
}

impl RolloutStep {
    /// A short name for errors.
    pub fn name(&self) -> &'static str {
        match self {
            RolloutStep::Assign { .. } => "assign clusters",
            RolloutStep::Healthy { .. } => "mark clusters healthy",
            RolloutStep::Unhealthy { .. } => "mark clusters unhealthy",
            RolloutStep::WaveHealthy { .. } => "start a soak",
            RolloutStep::WaveDone { .. } => "pass a wave",
        }
    }
}

/// A rollout status transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutAction {
    /// Stop giving clusters the target until resumed.
    Pause,
    /// Continue a paused rollout.
    Resume,
    /// A person lets a rollout awaiting approval run (whether the stage asked for approval or
    /// the deletion guard held it); the stage is pinned to its target.
    Approve,
    /// The stage's policy no longer asks for approval, so its waiting rollout runs; refused for
    /// a rollout the deletion guard held, which only a person releases.
    ApproveByPolicy,
}

impl RolloutAction {
    /// The verb, for errors and audit events.
    pub fn verb(self) -> &'static str {
        match self {
            RolloutAction::Pause => "pause",
            RolloutAction::Resume => "resume",
            RolloutAction::Approve | RolloutAction::ApproveByPolicy => "approve",
        }
    }
}

/// Why a command's bytes could not be turned into a command.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the version header.
    #[error("command is {0} bytes, shorter than its 4-byte version header")]
    Truncated(usize),
    /// Written by a newer hub.
    #[error(
        "command has version {found}, this hub reads version {COMMAND_VERSION}: a newer one needs this node upgraded; an older one predates a format change and needs a fresh data dir"
    )]
    UnknownVersion {
        /// The version found.
        found: u32,
    },
    /// The body does not decode as this version's command.
    #[error("command version {version} does not decode: {source}")]
    Malformed {
        /// The version in the header.
        version: u32,
        /// The decoder's error.
        source: postcard::Error,
    },
}

/// Why a command could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode command: {0}")]
pub struct EncodeError(#[from] postcard::Error);

impl Command {
    /// Encodes the command with the current version header.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(postcard::to_extend(
            self,
            COMMAND_VERSION.to_le_bytes().to_vec(),
        )?)
    }

    /// Decodes a command, refusing versions newer than this build understands.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (header, body) = bytes
            .split_first_chunk::<4>()
            .ok_or(DecodeError::Truncated(bytes.len()))?;
        let version = u32::from_le_bytes(*header);
        match version {
            COMMAND_VERSION => postcard::from_bytes(body)
                .map_err(|source| DecodeError::Malformed { version, source }),
            found => Err(DecodeError::UnknownVersion { found }),
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::RegisterCluster { .. } => "register_cluster",
            Command::RelabelCluster { .. } => "relabel_cluster",
            Command::RemoveCluster { .. } => "remove_cluster",
            Command::RecordFetch { .. } => "record_fetch",
            Command::RequestFetch { .. } => "request_fetch",
            Command::RecordFetchError { .. } => "record_fetch_error",
            Command::RecordRender { .. } => "record_render",
            Command::AmendRender { .. } => "amend_render",
            Command::StageRender { .. } => "stage_render",
            Command::ForgetRevision { .. } => "forget_revision",
            Command::AssignRevision { .. } => "assign_revision",
            Command::PinStage { .. } => "pin_stage",
            Command::StartRollout { .. } => "start_rollout",
            Command::RolloutStep { .. } => "rollout_step",
            Command::SetRolloutStatus { .. } => "set_rollout_status",
            Command::FailRollout { .. } => "fail_rollout",
            Command::RollBack { .. } => "roll_back",
            Command::RecordHealth { .. } => "record_health",
            Command::SetLiveness { .. } => "set_liveness",
            Command::SetClusterApi { .. } => "set_cluster_api",
            Command::SetClusterCapabilities { .. } => "set_cluster_capabilities",
            Command::CreateToken { .. } => "create_token",
            Command::RevokeToken { .. } => "revoke_token",
            Command::IssueBootstrapToken { .. } => "issue_bootstrap_token",
            Command::ConsumeBootstrapToken { .. } => "consume_bootstrap_token",
            Command::RecordAudit { .. } => "record_audit",
            Command::RecordSignature { .. } => "record_signature",
            Command::RecordCertificate { .. } => "record_certificate",
            Command::AbandonRollout { .. } => "abandon_rollout",
            Command::BindClusterIdentity { .. } => "bind_cluster_identity",
            Command::RecordIdentityConflict { .. } => "record_identity_conflict",
            Command::ResetClusterIdentity { .. } => "reset_cluster_identity",
            Command::AckNotices { .. } => "ack_notices",
        }
    }
}
