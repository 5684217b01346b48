//! The fleet at a glance, computed from one replica's state: per stage and cluster, for every
//! bundle, the desired and the applied revision, health and drift; liveness; rollouts; the
//! latest revision and its error; recent events. The Admin API and the dashboard both serve it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::state::audit::Outcome;
use crate::state::health::{HealthRecord, SyncState, current_health, records_of, sync_state};
use crate::state::identity::IdentityConflict;
use crate::state::rollout::RolloutStatus;
use crate::state::rollout::pipeline;
use crate::state::source::{BlobHash, RenderError, Revision, RevisionRef, RevisionStatus};
use crate::state::stage::StageChange;
use crate::state::{Labels, State, Timestamp};

mod detail;
mod query;

pub use detail::{
    BundleDetail, BundleOnCluster, ClusterDetail, StageDetail, Timeline, TimelineError,
    bundle_detail, bundle_problem, cluster_detail, resolve_commit, stage_detail, timeline,
};
pub use query::{ClusterPage, ClusterQuery, Scope, Sort};

/// Events kept in a status.
pub const EVENT_LIMIT: usize = 50;

/// The whole fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetStatus {
    /// The node that computed it.
    pub node: u64,
    /// The leader that node knows (0: none).
    pub leader: u64,
    /// The state index it reflects.
    pub applied_index: u64,
    /// The followed source.
    pub source: Option<SourceStatus>,
    /// The newest revision, whatever its status.
    pub latest_revision: Option<RevisionSummary>,
    /// Stages of the current `flotilla.yaml`, then any pinned stage it no longer declares.
    pub stages: Vec<StageStatus>,
    /// Every registered cluster, by name.
    pub clusters: Vec<ClusterStatus>,
    /// Bundles on every cluster, counted by sync state and by health.
    pub counts: Counts,
    /// Rollouts, newest first.
    pub rollouts: Vec<RolloutSummary>,
    /// Recent events, newest first.
    pub events: Vec<Event>,
    /// Which clusters `clusters` holds when a query chose them ([`FleetStatus::select`]); none
    /// when it holds every cluster. Stages, counts, rollouts and events are the whole fleet's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_page: Option<ClusterPage>,
}

/// The followed source.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// Name in the state.
    pub name: String,
    /// Repository URL.
    pub url: String,
    /// Branch followed.
    pub branch: String,
    /// Head at the last fetch.
    pub head: Option<String>,
    /// When the last successful fetch was recorded.
    pub fetched_at: Option<Timestamp>,
    /// The last fetch error, if the last fetch failed.
    pub last_error: Option<String>,
}

/// One revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionSummary {
    /// Source name.
    pub source: String,
    /// Commit id.
    pub commit: String,
    /// Order of arrival.
    pub seq: u64,
    /// When fetched.
    pub fetched_at: Timestamp,
    /// `fetched`, `rendered` or `failed`.
    pub status: &'static str,
    /// When rendered or failed.
    pub rendered_at: Option<Timestamp>,
    /// Why it failed.
    pub error: Option<RenderError>,
    /// Stages pinned to it.
    pub pinned_by: Vec<String>,
    /// Clusters it is rendered for.
    pub clusters: usize,
    /// Clusters added later for which it did not render.
    pub cluster_errors: BTreeMap<String, RenderError>,
    /// Stages that require signatures it lacks, each with why (`prod: the commit is not
    /// signed; ...`).
    pub signature_refusals: Vec<String>,
    /// Per chart bundle, the chart it rendered from.
    pub charts: BTreeMap<String, crate::state::source::ChartRecord>,
}

/// One stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageStatus {
    /// Name.
    pub name: String,
    /// Commit it is pinned to.
    pub pinned_revision: Option<String>,
    /// When the pin last moved.
    pub pinned_at: Option<Timestamp>,
    /// `track BRANCH` or `promoteFrom STAGE` (empty when the current spec lacks the stage).
    pub source: String,
    /// Its clusters, by name (not in the dashboard's JSON, which pages clusters: at 10,000
    /// they would ride along with every status).
    #[serde(skip)]
    pub clusters: Vec<String>,
    /// How many clusters it has.
    pub cluster_count: usize,
    /// Why the revision that would come next cannot enter it (its signature), if so.
    pub blocked: Option<String>,
    /// Bundles on its clusters, counted by sync state and by health.
    pub counts: Counts,
    /// Where it stands.
    pub phase: StagePhase,
    /// Why, in a sentence (the rollout's wave, who paused it and why, why it rolled back).
    pub phase_reason: Option<String>,
    /// Its active rollout, else its newest.
    pub rollout: Option<u64>,
    /// A newer revision it would take but has not started (behind its source).
    pub waiting_revision: Option<String>,
    /// What an operator runs to move it on, when it needs one.
    pub next: Option<String>,
}

/// Where a stage stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StagePhase {
    /// Nothing to do: no rollout active (a newer revision may be waiting, see `next`).
    Idle,
    /// A rollout is moving through its waves.
    Rolling,
    /// A rollout waits for `flotilla approve` (manual approval, or held by the deletion guard).
    AwaitingApproval,
    /// An operator paused its rollout.
    Paused,
    /// Its rollout failed the health gate and stopped; a newer commit replaces it.
    PausedByFailure,
    /// It returned to an earlier revision (by its failure action or by hand).
    RolledBack,
    /// The revision that would come next may not enter it (its signature).
    Blocked,
}

/// Bundles (one per cluster and bundle) counted by sync state and by health; states with none
/// are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// By sync state.
    pub sync: BTreeMap<SyncState, usize>,
    /// By health.
    pub health: BTreeMap<String, usize>,
}

impl Counts {
    /// The bundles of `clusters`, counted.
    pub fn of<'a>(clusters: impl IntoIterator<Item = &'a ClusterStatus>) -> Counts {
        Counts::of_bundles(clusters.into_iter().flat_map(|c| &c.bundles))
    }

    /// `bundles`, counted.
    pub fn of_bundles<'a>(bundles: impl IntoIterator<Item = &'a BundleStatus>) -> Counts {
        let mut counts = Counts::default();
        for bundle in bundles {
            *counts.sync.entry(bundle.sync_state).or_default() += 1;
            *counts.health.entry(bundle.health.clone()).or_default() += 1;
        }
        counts
    }
}

/// One cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Name.
    pub name: String,
    /// The stage that selects it, if one does.
    pub stage: Option<String>,
    /// Labels.
    pub labels: Labels,
    /// Whether its agent is connected.
    pub online: bool,
    /// Whether its agent reaches the cluster's API server; none before the agent said, and
    /// while the agent is offline (what it said then is not current).
    pub api_reachable: Option<bool>,
    /// Since when it does (or does not).
    pub api_since: Option<Timestamp>,
    /// While unreachable: why.
    pub api_error: Option<String>,
    /// The Kubernetes version its agent last read from the cluster; none before it said.
    pub kube_version: Option<String>,
    /// When the hub last heard of it: its newest report or liveness change.
    pub last_seen: Option<Timestamp>,
    /// Commit it is assigned.
    pub assigned_revision: Option<String>,
    /// Why its stage's revision did not render for it.
    pub render_error: Option<RenderError>,
    /// Bundles desired or still reported, by name.
    pub bundles: Vec<BundleStatus>,
    /// The kube-system UID bound to its name, once its agent said hello.
    pub kube_system_uid: Option<String>,
    /// Agents of another Kubernetes cluster refused for its name, until an admin resets it.
    pub identity_conflict: Option<IdentityConflictStatus>,
}

/// Agents talking to another Kubernetes cluster were refused for a cluster's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityConflictStatus {
    /// The kube-system UID they reported.
    pub kube_system_uid: String,
    /// When the first of them was recorded.
    pub first_at: Timestamp,
    /// When the latest was (recorded at most once a minute).
    pub last_at: Timestamp,
    /// What an operator does about it.
    pub message: String,
}

impl IdentityConflictStatus {
    /// The conflict recorded for `cluster`, bound to `bound`, with what to do about it.
    pub fn of(cluster: &str, bound: Option<&str>, conflict: &IdentityConflict) -> Self {
        IdentityConflictStatus {
            kube_system_uid: conflict.kube_system_uid.clone(),
            first_at: conflict.first_at,
            last_at: conflict.last_at,
            message: format!(
                "agents talking to the Kubernetes cluster with kube-system UID {} are refused \
                 for '{cluster}', which is bound to UID {}: fix those agents (copied \
                 credentials, a wrong kubeconfig context?); if '{cluster}' was rebuilt, run \
                 `flotilla cluster reset-identity {cluster}`",
                conflict.kube_system_uid,
                bound.unwrap_or("(none)")
            ),
        }
    }
}

/// One bundle on one cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleStatus {
    /// Bundle name.
    pub name: String,
    /// Commit of the desired content; none when the bundle is no longer desired.
    pub desired_revision: Option<String>,
    /// Hash of the desired content.
    pub desired_hash: Option<BlobHash>,
    /// Commit of the applied content, when known.
    pub applied_revision: Option<String>,
    /// Hash of the applied content.
    pub applied_hash: Option<BlobHash>,
    /// Whether the cluster holds the desired content (`Synced`, `Applying`, `OutOfSync`,
    /// `ApplyFailed`, `Unknown`).
    pub sync_state: SyncState,
    /// Reported health (`Unknown` before the first report).
    pub health: String,
    /// Objects drifted and not corrected.
    pub drifted: Vec<String>,
    /// Fields other managers added to the bundle's objects, one `object: fields added by
    /// manager; …` line per object: reported, never corrected.
    pub added: Vec<String>,
    /// Detail from the agent, followed by the lines of `added`.
    pub message: String,
    /// When the agent observed it.
    pub updated_at: Option<Timestamp>,
}

/// One rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSummary {
    /// Id.
    pub id: u64,
    /// Stage.
    pub stage: String,
    /// Commit it started from.
    pub from_revision: Option<String>,
    /// Commit it rolls out.
    pub to_revision: String,
    /// Status name.
    pub status: String,
    /// Waves started.
    pub waves_started: usize,
    /// Waves in all.
    pub waves: usize,
    /// When it began to run (at once, or when approved).
    pub started_at: Option<Timestamp>,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Why the deletion guard held it for an approval, if it did (kept once approved).
    pub deletion_hold: Option<String>,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// When.
    pub at: Timestamp,
    /// `revision`, `stage`, `cluster`, `drift`, `rollout` or `audit`.
    pub kind: &'static str,
    /// What it concerns.
    pub subject: String,
    /// What happened.
    pub message: String,
}

/// The source the hub follows, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceView {
    /// Its name in the replicated state (revisions are `name@commit`).
    pub name: String,
    /// Where it is fetched from.
    pub url: String,
    /// The branch followed.
    pub branch: String,
}

/// Computes the fleet status from a replica.
pub fn fleet_status(
    state: &State,
    source: Option<&SourceView>,
    node: u64,
    leader: Option<u64>,
    applied_index: u64,
) -> FleetStatus {
    let source_name = source.map(|s| s.name.as_str()).unwrap_or_default();
    let spec = current_spec(state, source);
    let stage_of = stage_namer(spec.as_ref());
    let clusters: Vec<ClusterStatus> = state
        .clusters
        .keys()
        .filter_map(|name| cluster_status(state, name, &stage_of))
        .collect();
    FleetStatus {
        node,
        leader: leader.unwrap_or(0),
        applied_index,
        source: source.map(|config| source_status(state, config)),
        latest_revision: latest_revision(state, source_name),
        stages: stages(state, spec.as_ref(), source, &clusters),
        counts: Counts::of(&clusters),
        clusters,
        rollouts: rollouts(state),
        events: events(state),
        cluster_page: None,
    }
}

/// The `flotilla.yaml` of the followed source's newest rendered revision, if any.
fn current_spec(state: &State, source: Option<&SourceView>) -> Option<flotilla_core::FleetSpec> {
    let name = source.map(|s| s.name.as_str()).unwrap_or_default();
    pipeline::current(state, name).map(|(_, spec)| spec)
}

/// Names the stage that selects a cluster with these labels, under `spec`.
fn stage_namer(spec: Option<&flotilla_core::FleetSpec>) -> impl Fn(&Labels) -> Option<String> {
    move |labels| {
        spec.and_then(|spec| spec.stage_for(labels).ok().flatten())
            .map(|s| s.name.clone())
    }
}

/// The stages of `spec` in pipeline order, then any pinned stage it no longer declares.
fn stages_in_order(state: &State, spec: Option<&flotilla_core::FleetSpec>) -> Vec<String> {
    let mut names: Vec<String> = spec
        .map(|s| s.stages.iter().map(|st| st.name.clone()).collect())
        .unwrap_or_default();
    for name in state.stages.keys() {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

fn source_status(state: &State, config: &SourceView) -> SourceStatus {
    let known = state.sources.get(&config.name);
    SourceStatus {
        name: config.name.clone(),
        url: config.url.clone(),
        branch: config.branch.clone(),
        head: known.and_then(|s| s.head.clone()),
        fetched_at: known.and_then(|s| s.fetched_at),
        last_error: known.and_then(|s| s.last_error.clone()),
    }
}

/// Every revision of `source` (all sources when empty), newest first.
pub fn revisions(state: &State, source: &str) -> Vec<RevisionSummary> {
    let mut list: Vec<RevisionSummary> = state
        .revisions
        .iter()
        .filter(|(r, _)| source.is_empty() || r.source == source)
        .map(|(r, rev)| revision_summary(state, r, rev))
        .collect();
    list.sort_by_key(|r| std::cmp::Reverse((r.fetched_at, r.seq)));
    list
}

fn latest_revision(state: &State, source: &str) -> Option<RevisionSummary> {
    state
        .revisions
        .iter()
        .filter(|(r, _)| r.source == source)
        .max_by_key(|(_, rev)| rev.seq)
        .map(|(r, rev)| revision_summary(state, r, rev))
}

/// A revision as listed.
pub fn revision_summary(state: &State, r: &RevisionRef, rev: &Revision) -> RevisionSummary {
    let (status, rendered_at, error, clusters, cluster_errors) = match &rev.status {
        RevisionStatus::Fetched => ("fetched", None, None, 0, BTreeMap::new()),
        RevisionStatus::Rendered {
            bundles,
            cluster_errors,
            at,
            ..
        } => (
            "rendered",
            Some(*at),
            None,
            bundles.len(),
            cluster_errors.clone(),
        ),
        RevisionStatus::Failed { error, at } => {
            ("failed", Some(*at), Some(error.clone()), 0, BTreeMap::new())
        }
    };
    let charts = match &rev.status {
        RevisionStatus::Rendered { charts, .. } => charts.clone(),
        _ => BTreeMap::new(),
    };
    RevisionSummary {
        source: r.source.clone(),
        commit: r.commit.clone(),
        seq: rev.seq,
        fetched_at: rev.fetched_at,
        status,
        rendered_at,
        error,
        pinned_by: state
            .stages
            .iter()
            .filter(|(_, s)| s.pinned.as_ref() == Some(r))
            .map(|(name, _)| name.clone())
            .collect(),
        clusters,
        cluster_errors,
        signature_refusals: match rev.status {
            RevisionStatus::Rendered { .. } => state
                .stages
                .keys()
                .filter_map(|stage| {
                    let why = crate::state::signature::check(state, stage, r).err()?;
                    Some(format!("{stage}: {why}"))
                })
                .collect(),
            _ => Vec::new(),
        },
        charts,
    }
}

fn cluster_status(
    state: &State,
    name: &str,
    stage_of: &impl Fn(&Labels) -> Option<String>,
) -> Option<ClusterStatus> {
    let cluster = state.clusters.get(name)?;
    let stage = stage_of(&cluster.labels);
    let assigned = cluster
        .assigned
        .as_ref()
        .and_then(|r| state.revisions.get(r).map(|rev| (r, rev)));
    let desired: BTreeMap<String, BlobHash> = state.desired_bundles(name);
    let reported: BTreeMap<&str, _> = records_of(&state.health, name).collect();
    let names: BTreeSet<&str> = desired
        .keys()
        .map(String::as_str)
        .chain(reported.keys().copied())
        .collect();
    let bundles = names
        .into_iter()
        .map(|bundle| {
            let desired_hash = desired.get(bundle).cloned();
            let record = reported.get(bundle);
            let sync_state =
                sync_state(desired_hash.as_ref(), record.copied(), cluster.reporting());
            let applied_hash = record.and_then(|r| r.applied);
            let applied_revision = applied_hash
                .as_ref()
                .and_then(|hash| revision_holding(state, name, bundle, hash, &cluster.assigned));
            BundleStatus {
                name: bundle.to_owned(),
                desired_revision: desired_hash
                    .as_ref()
                    .and(cluster.assigned.as_ref())
                    .map(|r| r.commit.clone()),
                desired_hash,
                applied_revision,
                applied_hash,
                sync_state,
                health: current_health(cluster, record.copied()).as_str().to_owned(),
                drifted: record.map(|r| r.drifted.clone()).unwrap_or_default(),
                added: record.map(|r| r.added.clone()).unwrap_or_default(),
                message: record
                    .map(|r| stale_note(cluster, &bundle_message(r), r))
                    .unwrap_or_default(),
                updated_at: record.map(|r| r.at),
            }
        })
        .collect();
    let last_report = reported.values().map(|r| r.at).max();
    let last_seen = [last_report, cluster.liveness_changed_at]
        .into_iter()
        .flatten()
        .max();
    let current_api = cluster.api.as_ref().filter(|_| cluster.online);
    let render_error = stage
        .as_ref()
        .and_then(|stage| state.stages.get(stage)?.pinned.as_ref())
        .and_then(|pinned| state.revisions.get(pinned)?.error_for(name).cloned());
    Some(ClusterStatus {
        name: name.to_owned(),
        stage,
        labels: cluster.labels.clone(),
        online: cluster.online,
        api_reachable: current_api.map(|api| api.reachable),
        api_since: current_api.map(|api| api.since),
        api_error: current_api
            .filter(|api| !api.reachable)
            .map(|api| api.error.clone()),
        kube_version: cluster
            .capabilities
            .as_ref()
            .map(|c| c.read.kube_version.clone()),
        last_seen,
        assigned_revision: assigned.map(|(r, _)| r.commit.clone()),
        render_error,
        bundles,
        kube_system_uid: cluster.identity.as_ref().map(|b| b.kube_system_uid.clone()),
        identity_conflict: cluster.identity_conflict.as_ref().map(|conflict| {
            let bound = cluster
                .identity
                .as_ref()
                .map(|b| b.kube_system_uid.as_str());
            IdentityConflictStatus::of(name, bound, conflict)
        }),
    })
}

/// The commit whose render of `bundle` for `cluster` is `hash`: the assigned revision if it
/// matches, else the newest revision that does.
fn revision_holding(
    state: &State,
    cluster: &str,
    bundle: &str,
    hash: &BlobHash,
    assigned: &Option<RevisionRef>,
) -> Option<String> {
    let holds = |rev: &Revision| rev.bundles_for(cluster).and_then(|b| b.get(bundle)) == Some(hash);
    if let Some(r) = assigned
        && state.revisions.get(r).is_some_and(holds)
    {
        return Some(r.commit.clone());
    }
    state
        .revisions
        .iter()
        .filter(|(_, rev)| holds(rev))
        .max_by_key(|(_, rev)| rev.seq)
        .map(|(r, _)| r.commit.clone())
}

fn stages(
    state: &State,
    spec: Option<&flotilla_core::FleetSpec>,
    source: Option<&SourceView>,
    clusters: &[ClusterStatus],
) -> Vec<StageStatus> {
    stages_in_order(state, spec)
        .into_iter()
        .map(|name| {
            let pinned = state.stages.get(&name);
            let declared = spec.and_then(|s| s.stage(&name));
            let members = || {
                clusters
                    .iter()
                    .filter(|c| c.stage.as_deref() == Some(name.as_str()))
            };
            let blocked = declared
                .zip(source)
                .and_then(|(stage, source)| signature_blocked(state, stage, source));
            let candidate = declared.zip(source).and_then(|(stage, source)| {
                crate::state::rollout::promotion::candidate(
                    state,
                    stage,
                    &source.name,
                    &source.branch,
                )
            });
            let progress = stage_progress(state, &name, candidate.map(|c| c.revision), &blocked);
            StageStatus {
                pinned_revision: pinned
                    .and_then(|s| s.pinned.as_ref())
                    .map(|r| r.commit.clone()),
                pinned_at: pinned.and_then(|s| s.history.last()).map(|h| h.at),
                source: declared.map(describe_source).unwrap_or_default(),
                clusters: members().map(|c| c.name.clone()).collect(),
                cluster_count: members().count(),
                counts: Counts::of(members()),
                blocked: blocked.clone(),
                phase: progress.phase,
                phase_reason: progress.reason,
                rollout: progress.rollout,
                waiting_revision: progress.waiting,
                next: progress.next,
                name,
            }
        })
        .collect()
}

/// A stage's phase, with why, its rollout, a revision waiting and what to run.
struct StageProgress {
    phase: StagePhase,
    reason: Option<String>,
    rollout: Option<u64>,
    waiting: Option<String>,
    next: Option<String>,
}

fn stage_progress(
    state: &State,
    stage: &str,
    candidate: Option<RevisionRef>,
    blocked: &Option<String>,
) -> StageProgress {
    let pinned = state.stages.get(stage).and_then(|s| s.pinned.as_ref());
    let newest = state.newest_rollout(stage);
    let waiting = candidate
        .filter(|c| Some(c) != pinned)
        .filter(|c| newest.is_none_or(|(_, r)| !(r.is_active() && r.to == *c)))
        .map(|c| c.commit);
    let last_pin = state.stages.get(stage).and_then(|s| s.history.last());
    // A rollback by hand pins the stage without a rollout of its own; the failure action's
    // rollback is its rollout's status.
    let rolled_back_by_hand = last_pin.filter(|pin| {
        pin.change == StageChange::Rollback
            && pin.rollout.is_none()
            && newest.is_none_or(|(_, r)| !r.is_active() && pin.at >= r.updated_at)
    });
    let promote = |waiting: &Option<String>| {
        waiting.as_ref().map(|commit| {
            format!(
                "{} waits: `flotilla promote {stage} {}`",
                pipeline::short(commit),
                pipeline::short(commit)
            )
        })
    };
    let (phase, reason, next) = match newest {
        Some((_, rollout)) if rollout.is_active() => match &rollout.status {
            RolloutStatus::AwaitingApproval => (
                StagePhase::AwaitingApproval,
                Some(match &rollout.deletion_hold {
                    Some(hold) => format!("held by the deletion guard: {}", hold.summary()),
                    None => format!("{} waits for approval", pipeline::short(&rollout.to.commit)),
                }),
                Some(format!("flotilla approve {stage}")),
            ),
            RolloutStatus::Paused { reason, .. } if rollout.status.paused_by_failure() => (
                StagePhase::PausedByFailure,
                Some(reason.clone()),
                Some(format!(
                    "push a fix (a newer commit replaces this rollout) or `flotilla rollback \
                     {stage}`; `flotilla resume {stage}` retries the wave, but an apply the API \
                     server refused stays failed until its agent tries it again (every 5 min), \
                     so resume only once its cause outside Git is fixed"
                )),
            ),
            RolloutStatus::Paused { by, reason } => (
                StagePhase::Paused,
                Some(format!("paused by {by}: {reason}")),
                Some(format!("flotilla resume {stage}")),
            ),
            _ => (
                StagePhase::Rolling,
                Some(format!(
                    "{}: wave {} of {}",
                    pipeline::short(&rollout.to.commit),
                    (rollout.current + 1).min(rollout.waves.len()),
                    rollout.waves.len()
                )),
                None,
            ),
        },
        _ if let Some(pin) = rolled_back_by_hand => (
            StagePhase::RolledBack,
            Some(format!("by {}: {}", pin.by, pin.reason)),
            promote(&waiting).or_else(|| {
                Some(format!(
                    "`flotilla promote {stage}` takes it forward again once something newer passes"
                ))
            }),
        ),
        Some((_, rollout)) if let RolloutStatus::RolledBack { reason } = &rollout.status => (
            StagePhase::RolledBack,
            Some(reason.clone()),
            promote(&waiting).or_else(|| {
                Some(format!(
                    "push a fix: {} is not promoted to {stage} again",
                    pipeline::short(&rollout.to.commit)
                ))
            }),
        ),
        _ if blocked.is_some() => (
            StagePhase::Blocked,
            blocked.clone(),
            Some("sign the commit with a key the stage trusts".to_owned()),
        ),
        _ => (StagePhase::Idle, None, promote(&waiting)),
    };
    StageProgress {
        phase,
        reason,
        rollout: newest.map(|(id, _)| id),
        waiting,
        next,
    }
}

/// A bundle's message; while its report is not current, prefixed with why and what it said.
fn stale_note(
    cluster: &crate::state::fleet::Cluster,
    message: &str,
    record: &HealthRecord,
) -> String {
    if cluster.reporting() {
        return message.to_owned();
    }
    let why = if cluster.online {
        "the agent cannot reach the cluster's API"
    } else {
        "the agent is offline"
    };
    let last = format!(
        "{why}; last reported {} at {}",
        record.health.as_str(),
        record.at.rfc3339()
    );
    if message.is_empty() {
        last
    } else {
        format!("{last}: {message}")
    }
}

/// Why the stage's next candidate may not enter it for want of a valid signature, if so.
fn signature_blocked(
    state: &State,
    stage: &flotilla_core::Stage,
    source: &SourceView,
) -> Option<String> {
    let candidate =
        crate::state::rollout::promotion::candidate(state, stage, &source.name, &source.branch)?;
    let why = crate::state::signature::check(state, &stage.name, &candidate.revision).err()?;
    Some(format!(
        "{} cannot enter: {why}",
        pipeline::short(&candidate.revision.commit)
    ))
}

fn describe_source(stage: &flotilla_core::Stage) -> String {
    match &stage.source {
        flotilla_core::spec::StageSource::Track { branch } => format!("track {branch}"),
        flotilla_core::spec::StageSource::PromoteFrom { stage } => format!("promoteFrom {stage}"),
    }
}

fn rollouts(state: &State) -> Vec<RolloutSummary> {
    state
        .rollouts
        .iter()
        .rev()
        .map(|(id, r)| RolloutSummary {
            id: *id,
            stage: r.stage.clone(),
            from_revision: r.from.as_ref().map(|f| f.commit.clone()),
            to_revision: r.to.commit.clone(),
            status: r.status.key().to_owned(),
            waves_started: r.waves.iter().filter(|w| w.started_at.is_some()).count(),
            waves: r.waves.len(),
            started_at: r.started_at,
            updated_at: r.updated_at,
            deletion_hold: r.deletion_hold.as_ref().map(|hold| hold.summary()),
        })
        .collect()
}

/// Recent events, merged from what the state records with times: revisions fetched, rendered
/// or failed; stage pins; cluster registrations and liveness changes; rollouts; audit events.
fn events(state: &State) -> Vec<Event> {
    let mut events = Vec::new();
    for (r, rev) in &state.revisions {
        let subject = format!("revision/{}", pipeline::short(&r.commit));
        events.push(Event {
            at: rev.fetched_at,
            kind: "revision",
            subject: subject.clone(),
            message: format!("fetched from {}", r.source),
        });
        match &rev.status {
            RevisionStatus::Fetched => {}
            RevisionStatus::Rendered { bundles, at, .. } => events.push(Event {
                at: *at,
                kind: "revision",
                subject,
                message: format!("rendered for {} clusters", bundles.len()),
            }),
            RevisionStatus::Failed { error, at } => events.push(Event {
                at: *at,
                kind: "revision",
                subject,
                message: format!("failed: {}", describe_error(error)),
            }),
        }
    }
    for (name, stage) in &state.stages {
        for pin in stage.history.iter().rev().take(EVENT_LIMIT) {
            let verb = match pin.change {
                StageChange::Track => "tracked",
                StageChange::Promote => "promoted to",
                StageChange::ForcePromote => "force-promoted to",
                StageChange::Rollback => "rolled back to",
            };
            events.push(Event {
                at: pin.at,
                kind: "stage",
                subject: format!("stage/{name}"),
                message: format!(
                    "{verb} {} by {}: {}",
                    pipeline::short(&pin.revision.commit),
                    pin.by,
                    pin.reason
                ),
            });
        }
    }
    for (name, cluster) in &state.clusters {
        events.push(Event {
            at: cluster.registered_at,
            kind: "cluster",
            subject: format!("cluster/{name}"),
            message: "registered".into(),
        });
        if let Some(at) = cluster.liveness_changed_at {
            events.push(Event {
                at,
                kind: "cluster",
                subject: format!("cluster/{name}"),
                message: if cluster.online { "online" } else { "offline" }.into(),
            });
        }
    }
    for (key, record) in &state.health {
        for drift in &record.drift_log {
            events.push(drift_event(&key.cluster, &key.bundle, drift));
        }
    }
    for (id, rollout) in &state.rollouts {
        events.push(Event {
            at: rollout.updated_at,
            kind: "rollout",
            subject: format!("rollout/{id}"),
            message: format!(
                "stage {} to {}: {}",
                rollout.stage,
                pipeline::short(&rollout.to.commit),
                rollout.status.name()
            ),
        });
    }
    events.extend(
        state
            .audit
            .newest_first()
            .take(EVENT_LIMIT)
            .filter_map(|(_, event)| audit_event(event)),
    );
    events.sort_by(|a, b| b.cmp(a));
    events.truncate(EVENT_LIMIT);
    events
}

/// A drift note of a cluster's bundle as an event.
fn drift_event(cluster: &str, bundle: &str, drift: &crate::state::health::DriftNote) -> Event {
    Event {
        at: drift.at,
        kind: "drift",
        subject: format!("cluster/{cluster}"),
        message: format!(
            "bundle {bundle}: {}: {}",
            drift.kind.describe(),
            drift.objects.join("; ")
        ),
    }
}

/// An audit event as an event; none for a stage's pin moving, which its pin's event says with
/// who and why (once is enough).
fn audit_event(event: &crate::state::audit::AuditEvent) -> Option<Event> {
    let outcome = match &event.outcome {
        Outcome::Succeeded => {
            let pinned = matches!(
                event.action.as_str(),
                "track" | "promote" | "force-promote" | "rollback"
            );
            if pinned && event.target.starts_with("stage/") {
                return None;
            }
            String::new()
        }
        Outcome::Denied(why) => format!(" — denied: {why}"),
        Outcome::Failed(why) => format!(" — refused: {why}"),
    };
    let detail = match event.detail.as_str() {
        "" => String::new(),
        detail => format!(": {detail}"),
    };
    let repeated = match event.count {
        0 | 1 => String::new(),
        n => format!(" ({n} times)"),
    };
    Some(Event {
        at: event.at,
        kind: "audit",
        subject: event.target.clone(),
        message: format!(
            "{} by {}{detail}{outcome}{repeated}",
            event.action, event.actor
        ),
    })
}

/// The agent's message with the fields others added after it: an OutOfSync bundle says why.
fn bundle_message(record: &HealthRecord) -> String {
    std::iter::once(record.message.as_str())
        .chain(record.added.iter().map(String::as_str))
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `file:line: message`, or the message alone for problems of the whole commit.
pub fn describe_error(error: &RenderError) -> String {
    error.describe()
}
