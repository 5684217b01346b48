//! Detail views: one cluster (its objects, the revisions it was given, its events), one stage
//! (its place in the pipeline, its rollout's waves, its pins) and one commit's timeline across
//! the fleet (which clusters got it, when each applied it and became Healthy, which failed and
//! why). The dashboard's detail pages read them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    BundleStatus, ClusterStatus, EVENT_LIMIT, Event, FleetStatus, RevisionSummary, SourceView,
    StageStatus, audit_event, cluster_status, current_spec, drift_event, revision_summary,
    stage_namer, stages_in_order,
};
use crate::state::delivery::Delivery;
use crate::state::health::{HealthRecord, SyncState, records_of};
use crate::state::rollout::{Rollout, RolloutStatus, pipeline};
use crate::state::source::ObjectKey;
use crate::state::stage::StageChange;
use crate::state::{State, Timestamp};

/// One cluster in detail.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDetail {
    /// What the fleet status says of it.
    #[serde(flatten)]
    pub status: ClusterStatus,
    /// The version of its agent, as the agent last said; none before it said.
    pub agent_version: Option<String>,
    /// When it was registered.
    pub registered_at: Timestamp,
    /// When its assigned revision was given.
    pub assigned_at: Option<Timestamp>,
    /// Every object its bundles hold, with its state.
    pub objects: Vec<ObjectStatus>,
    /// The revisions it was given, newest first, each with how far it got.
    pub deliveries: Vec<DeliveryView>,
    /// What happened to it, newest first.
    pub events: Vec<Event>,
}

/// One object of a bundle on a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// Its bundle.
    pub bundle: String,
    /// `group/Kind namespace/name` (no group for the core group), as the agent names it.
    pub object: String,
    /// `Synced`, `Applying`, `OutOfSync` (drifted, or fields added by others), `ApplyFailed`
    /// or `Unknown` (the agent's reports are not current).
    pub sync_state: SyncState,
    /// `Healthy`, the health the agent named it with, or `Unknown`: while the bundle is not
    /// applied, its reports are not current, or the agent named five unhealthy objects and
    /// not this one (it names at most five).
    pub health: String,
    /// What the agent said of it: the API server's refusal, the drift, why it is unhealthy.
    pub message: String,
}

/// One revision given to one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// The commit.
    pub commit: String,
    /// When the hub gave it.
    pub given_at: Timestamp,
    /// When the agent had applied every bundle of it.
    pub applied_at: Option<Timestamp>,
    /// When every bundle of it was first Healthy.
    pub healthy_at: Option<Timestamp>,
    /// The last problem before it was Healthy.
    pub problem: Option<String>,
    /// When that problem was reported.
    pub problem_at: Option<Timestamp>,
    /// The commit given after it, if one was.
    pub replaced_by: Option<String>,
    /// When.
    pub replaced_at: Option<Timestamp>,
}

/// One bundle across the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleDetail {
    /// The bundle.
    pub bundle: String,
    /// Clusters holding it that the query selects (before the limit).
    pub matched: usize,
    /// Those shown: problems first, then by name.
    pub clusters: Vec<BundleOnCluster>,
}

/// One bundle on one cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleOnCluster {
    /// The cluster.
    pub cluster: String,
    /// Its stage.
    pub stage: Option<String>,
    /// The bundle's state there, as the fleet status says.
    #[serde(flatten)]
    pub status: BundleStatus,
    /// Every object of the bundle there, with its state.
    pub objects: Vec<ObjectStatus>,
}

/// Whether a bundle on a cluster needs attention: not Synced, or neither Healthy nor
/// Suspended (as `--problems` everywhere).
pub fn bundle_problem(bundle: &BundleStatus) -> bool {
    bundle.sync_state != SyncState::Synced
        || !matches!(bundle.health.as_str(), "Healthy" | "Suspended")
}

/// `bundle` on the clusters of `fleet` that `select` lets through, problems first then by name,
/// at most `limit`, each with its objects (read from `state`).
pub fn bundle_detail(
    state: &State,
    fleet: &FleetStatus,
    bundle: &str,
    select: &dyn Fn(&ClusterStatus, &BundleStatus) -> bool,
    limit: usize,
) -> BundleDetail {
    let mut holding: Vec<(&ClusterStatus, &BundleStatus)> = fleet
        .clusters
        .iter()
        .filter_map(|c| Some((c, c.bundles.iter().find(|b| b.name == bundle)?)))
        .filter(|(c, b)| select(c, b))
        .collect();
    holding.sort_by(|(a, x), (b, y)| {
        (!bundle_problem(x), &a.name).cmp(&(!bundle_problem(y), &b.name))
    });
    let matched = holding.len();
    let clusters = holding
        .into_iter()
        .take(limit)
        .map(|(cluster, status)| BundleOnCluster {
            cluster: cluster.name.clone(),
            stage: cluster.stage.clone(),
            status: status.clone(),
            // Only this bundle's objects, from the status already computed: no spec parse,
            // events or deliveries per cluster.
            objects: objects_of(state, &cluster.name, std::iter::once(status)),
        })
        .collect();
    BundleDetail {
        bundle: bundle.to_owned(),
        matched,
        clusters,
    }
}

/// How many of the agent's unhealthy objects a bundle's message names at most (the agent's
/// `UNHEALTHY_LISTED`).
const UNHEALTHY_LISTED: usize = 5;

/// Deliveries of a cluster, newest first, each with what replaced it.
fn deliveries(list: &[Delivery]) -> Vec<DeliveryView> {
    list.iter()
        .enumerate()
        .rev()
        .map(|(i, d)| {
            let next = list.get(i + 1);
            DeliveryView {
                commit: d.commit.clone(),
                given_at: d.given_at,
                applied_at: d.applied_at,
                healthy_at: d.healthy_at,
                problem: d.problem.as_ref().map(|p| p.message.clone()),
                problem_at: d.problem.as_ref().map(|p| p.at),
                replaced_by: next.map(|n| n.commit.clone()),
                replaced_at: next.map(|n| n.given_at),
            }
        })
        .collect()
}

/// `name` in detail, from a replica; none when it is not registered.
pub fn cluster_detail(
    state: &State,
    source: Option<&SourceView>,
    name: &str,
) -> Option<ClusterDetail> {
    let cluster = state.clusters.get(name)?;
    let spec = current_spec(state, source);
    let status = cluster_status(state, name, &stage_namer(spec.as_ref()))?;
    let objects = objects_of(state, name, status.bundles.iter());
    Some(ClusterDetail {
        agent_version: cluster
            .capabilities
            .as_ref()
            .map(|c| c.agent_version.clone()),
        registered_at: cluster.registered_at,
        assigned_at: cluster.assigned_at,
        objects,
        deliveries: deliveries(&cluster.deliveries),
        events: cluster_events(state, name),
        status,
    })
}

/// Every object of `bundles` on cluster `name`, with its state.
fn objects_of<'a>(
    state: &State,
    name: &str,
    bundles: impl Iterator<Item = &'a BundleStatus>,
) -> Vec<ObjectStatus> {
    let reported: BTreeMap<&str, &HealthRecord> = records_of(&state.health, name).collect();
    let desired = state.desired_bundles(name);
    let mut objects = Vec::new();
    for bundle in bundles {
        let Some(hash) = desired.get(&bundle.name) else {
            continue;
        };
        let keys = state
            .blobs
            .get(hash)
            .and_then(|blob| state.object_sets.get(&blob.objects));
        let names: Vec<String> = keys.into_iter().flatten().map(object_name).collect();
        let record = reported.get(bundle.name.as_str()).copied();
        objects.extend(bundle_objects(bundle, record, &names));
    }
    objects
}

/// How the agent names an object.
fn object_name((group, kind, namespace, name): &ObjectKey) -> String {
    let group = if group.is_empty() {
        String::new()
    } else {
        format!("{group}/")
    };
    match namespace {
        Some(namespace) => format!("{group}{kind} {namespace}/{name}"),
        None => format!("{group}{kind} {name}"),
    }
}

/// The state of each object of a bundle, read from its record: the apply's errors, the drift
/// and the unhealthy objects each name their object first (`object: …`).
fn bundle_objects(
    bundle: &super::BundleStatus,
    record: Option<&HealthRecord>,
    names: &[String],
) -> Vec<ObjectStatus> {
    // A line names its object first: `object: what`, or the object alone.
    let said = |lines: &[String], object: &str| -> Option<String> {
        lines.iter().find_map(|line| {
            let rest = line.strip_prefix(object)?;
            if rest.is_empty() {
                Some(String::new())
            } else {
                rest.strip_prefix(": ").map(str::to_owned)
            }
        })
    };
    // What the newest drift note says of an object: the fields changed and by whom.
    let drift_of = |object: &str| -> String {
        record
            .into_iter()
            .flat_map(|r| r.drift_log.iter().rev())
            .filter(|note| note.kind == crate::state::health::DriftKind::Found)
            .find_map(|note| said(&note.objects, object).filter(|what| !what.is_empty()))
            .unwrap_or_default()
    };
    let failed: &[String] = match record.and_then(|r| r.failed.as_ref()) {
        Some(failed) if failed.content == bundle.desired_hash => &failed.errors,
        _ => &[],
    };
    let unhealthy = record
        .map(|r| unhealthy_lines(&r.message, names))
        .unwrap_or_default();
    // A message cut short (the hub keeps 2,000 characters) may have lost some objects' lines.
    let complete = record.is_some_and(|r| !r.message.ends_with('…'));
    let current = bundle.sync_state != SyncState::Unknown;
    let applied = bundle.applied_hash.is_some() && bundle.applied_hash == bundle.desired_hash;
    names
        .iter()
        .map(|object| {
            if !current {
                // What the agent said last is not current: the bundle's message says so.
                return ObjectStatus {
                    bundle: bundle.name.clone(),
                    object: object.clone(),
                    sync_state: SyncState::Unknown,
                    health: "Unknown".to_owned(),
                    message: String::new(),
                };
            }
            let mut message = Vec::new();
            let mut sync = match bundle.sync_state {
                SyncState::Applying | SyncState::ApplyFailed => SyncState::Applying,
                _ => SyncState::Synced,
            };
            if let Some(error) = said(failed, object) {
                sync = SyncState::ApplyFailed;
                message.push(format!("apply failed: {error}"));
            }
            let drifted = record.map(|r| r.drifted.as_slice()).unwrap_or_default();
            if said(drifted, object).is_some() {
                sync = SyncState::OutOfSync;
                match drift_of(object) {
                    what if what.is_empty() => message.push("drifted".to_owned()),
                    what => message.push(format!("drifted: {what}")),
                }
            }
            let added = record.map(|r| r.added.as_slice()).unwrap_or_default();
            if let Some(fields) = said(added, object) {
                if sync == SyncState::Synced {
                    sync = SyncState::OutOfSync;
                }
                message.push(if fields.is_empty() {
                    "fields added in the cluster".to_owned()
                } else {
                    fields
                });
            }
            let health = match unhealthy.get(object.as_str()) {
                Some((health, why)) => {
                    message.push(why.clone());
                    health.clone()
                }
                // The bundle is Healthy: so is every object of it.
                None if applied && bundle.health == "Healthy" => "Healthy".to_owned(),
                // The agent names every unhealthy object up to five: an applied object it did
                // not name, in a whole message naming one to four, is Healthy.
                None if applied && complete && (1..UNHEALTHY_LISTED).contains(&unhealthy.len()) => {
                    "Healthy".to_owned()
                }
                _ => "Unknown".to_owned(),
            };
            ObjectStatus {
                bundle: bundle.name.clone(),
                object: object.clone(),
                sync_state: sync,
                health,
                message: message.join("; "),
            }
        })
        .collect()
}

/// The unhealthy objects a bundle's message names (`object: Health: why`, joined by `; `), by
/// object: its health and why.
fn unhealthy_lines<'a>(message: &str, names: &'a [String]) -> BTreeMap<&'a str, (String, String)> {
    // Where each named object's line starts: at the start or after `; `.
    let mut starts: Vec<(usize, &str)> = Vec::new();
    for name in names {
        let needle = format!("{name}: ");
        for (at, _) in message.match_indices(&needle) {
            if at == 0 || message[..at].ends_with("; ") {
                starts.push((at, name.as_str()));
            }
        }
    }
    starts.sort();
    let mut lines = BTreeMap::new();
    for (i, (at, name)) in starts.iter().enumerate() {
        let end = starts
            .get(i + 1)
            .map_or(message.len(), |(next, _)| next.saturating_sub(2));
        let line =
            message[at + name.len() + 2..end.max(at + name.len() + 2)].trim_end_matches("; ");
        // Apply errors name their objects too; only lines that open with a health are health.
        let Some((health, why)) = line.split_once(": ") else {
            continue;
        };
        if health.parse::<crate::state::health::Health>().is_ok() {
            lines
                .entry(*name)
                .or_insert((health.to_owned(), why.to_owned()));
        }
    }
    lines
}

/// What happened to one cluster, newest first: registration, liveness, API reachability, the
/// revisions it was given and how far each got, drift, and audit events about it.
fn cluster_events(state: &State, name: &str) -> Vec<Event> {
    let Some(cluster) = state.clusters.get(name) else {
        return Vec::new();
    };
    let subject = format!("cluster/{name}");
    let event = |at, kind, message: String| Event {
        at,
        kind,
        subject: subject.clone(),
        message,
    };
    let mut events = vec![event(cluster.registered_at, "cluster", "registered".into())];
    if let Some(at) = cluster.liveness_changed_at {
        let word = if cluster.online {
            "agent online"
        } else {
            "agent offline"
        };
        events.push(event(at, "cluster", word.into()));
    }
    if let Some(api) = &cluster.api {
        let message = if api.reachable {
            "the agent reaches the cluster's API".to_owned()
        } else {
            format!("the agent cannot reach the cluster's API: {}", api.error)
        };
        events.push(event(api.since, "cluster", message));
    }
    for d in &cluster.deliveries {
        let commit = pipeline::short(&d.commit);
        events.push(event(d.given_at, "revision", format!("given {commit}")));
        if let Some(at) = d.applied_at {
            events.push(event(at, "revision", format!("applied {commit}")));
        }
        if let Some(at) = d.healthy_at {
            events.push(event(at, "revision", format!("{commit} Healthy")));
        }
        if let Some(problem) = &d.problem {
            events.push(event(
                problem.at,
                "revision",
                format!("{commit}: {}", problem.message),
            ));
        }
    }
    for (bundle, record) in records_of(&state.health, name) {
        events.extend(
            record
                .drift_log
                .iter()
                .map(|d| drift_event(name, bundle, d)),
        );
    }
    events.extend(
        state
            .audit
            .newest_first()
            .filter(|(_, e)| e.target == subject)
            .take(EVENT_LIMIT)
            .filter_map(|(_, e)| audit_event(e)),
    );
    events.sort_by(|a, b| b.cmp(a));
    events.truncate(EVENT_LIMIT);
    events
}

/// One stage in detail.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageDetail {
    /// What the fleet status says of it.
    #[serde(flatten)]
    pub status: StageStatus,
    /// The stages in pipeline order (it among them).
    pub pipeline: Vec<String>,
    /// Its active rollout, else its newest.
    pub rollout_detail: Option<RolloutDetail>,
    /// Its pins, newest first (at most 20).
    pub pins: Vec<PinView>,
}

/// A rollout with its waves.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutDetail {
    /// Id.
    pub id: u64,
    /// The commit its stage returns to on rollback.
    pub from_revision: Option<String>,
    /// The commit it rolls out.
    pub to_revision: String,
    /// Status name.
    pub status: String,
    /// Why it is paused or rolled back, when it is.
    pub status_reason: Option<String>,
    /// Who asked for it, and why.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it began to run.
    pub started_at: Option<Timestamp>,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Its waves in order.
    pub waves: Vec<WaveDetail>,
    /// Why the deletion guard held it, if it did.
    pub deletion_hold: Option<String>,
}

/// One wave's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveDetail {
    /// Name.
    pub name: String,
    /// Its clusters.
    pub clusters: usize,
    /// Of those, how many were given the target.
    pub given: usize,
    /// Of those, how many are Healthy at it.
    pub healthy: usize,
    /// When its first cluster was given the target.
    pub started_at: Option<Timestamp>,
    /// When all of it was Healthy: its soak began.
    pub healthy_at: Option<Timestamp>,
    /// How long it soaks, in milliseconds.
    pub soak_ms: u64,
    /// When its soak ends, while it soaks.
    pub soak_ends_at: Option<Timestamp>,
    /// When it passed.
    pub done_at: Option<Timestamp>,
}

/// A stage's pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PinView {
    /// The commit.
    pub revision: String,
    /// `track`, `promote`, `forcePromote` or `rollback`.
    pub change: &'static str,
    /// Who.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Timestamp,
    /// The rollout that carries it.
    pub rollout: Option<u64>,
}

impl PinView {
    fn of(pin: &crate::state::stage::PinRecord) -> PinView {
        PinView {
            revision: pin.revision.commit.clone(),
            change: change_name(pin.change),
            by: pin.by.clone(),
            reason: pin.reason.clone(),
            at: pin.at,
            rollout: pin.rollout,
        }
    }
}

/// How a pin's change is named in outputs ([`StageChange::key`]).
pub(crate) fn change_name(change: StageChange) -> &'static str {
    change.key()
}

/// `name` in detail, from a replica and the status computed from it; none when `status` has
/// no stage of that name.
pub fn stage_detail(state: &State, status: &FleetStatus, name: &str) -> Option<StageDetail> {
    let pipeline = status.stages.iter().map(|s| s.name.clone()).collect();
    let status = status.stages.iter().find(|s| s.name == name)?.clone();
    let rollout_detail = status
        .rollout
        .and_then(|id| Some((id, state.rollouts.get(&id)?)))
        .map(|(id, rollout)| rollout_detail(id, rollout));
    let pins = state
        .stages
        .get(name)
        .map(|stage| {
            stage
                .history
                .iter()
                .rev()
                .take(20)
                .map(PinView::of)
                .collect()
        })
        .unwrap_or_default();
    Some(StageDetail {
        status,
        pipeline,
        rollout_detail,
        pins,
    })
}

fn rollout_detail(id: u64, rollout: &Rollout) -> RolloutDetail {
    let waves = rollout
        .waves
        .iter()
        .enumerate()
        .map(|(i, wave)| {
            let progress = || rollout.clusters.values().filter(move |p| p.wave == i);
            let soaking = wave.done_at.is_none()
                && rollout.current == i
                && rollout.status == RolloutStatus::Running;
            WaveDetail {
                name: wave.name.clone(),
                clusters: wave.clusters.len(),
                given: progress().count(),
                healthy: progress().filter(|p| p.healthy_since.is_some()).count(),
                started_at: wave.started_at,
                healthy_at: wave.healthy_at,
                soak_ms: wave.soak_ms,
                soak_ends_at: wave
                    .healthy_at
                    .filter(|_| soaking)
                    .map(|at| Timestamp(at.0.saturating_add(wave.soak_ms))),
                done_at: wave.done_at,
            }
        })
        .collect();
    let status_reason = match &rollout.status {
        RolloutStatus::Paused { by, reason } => Some(format!("by {by}: {reason}")),
        RolloutStatus::RolledBack { reason } => Some(reason.clone()),
        RolloutStatus::Superseded { by } => Some(format!("by rollout {by}")),
        RolloutStatus::Abandoned { .. } => Some("its stage left flotilla.yaml".to_owned()),
        _ => None,
    };
    RolloutDetail {
        id,
        from_revision: rollout.from.as_ref().map(|f| f.commit.clone()),
        to_revision: rollout.to.commit.clone(),
        status: rollout.status.key().to_owned(),
        status_reason,
        by: rollout.by.clone(),
        reason: rollout.reason.clone(),
        created_at: rollout.created_at,
        started_at: rollout.started_at,
        updated_at: rollout.updated_at,
        waves,
        deletion_hold: rollout.deletion_hold.as_ref().map(|hold| hold.summary()),
    }
}

/// One commit across the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    /// The whole commit id.
    pub commit: String,
    /// The revision, while the hub keeps it.
    pub revision: Option<RevisionSummary>,
    /// Every stage (pipeline order) with what it did with the commit.
    pub stages: Vec<TimelineStage>,
    /// The clusters given the commit, counted.
    pub counts: DeliveryCounts,
    /// The clusters given it (a page: `offset`, `limit`), by stage in pipeline order, then by
    /// when they were given it.
    pub clusters: Vec<TimelineCluster>,
    /// Clusters given it in all (on the visible stages).
    pub matched: usize,
    /// Clusters skipped before those shown.
    pub offset: usize,
    /// The offset of the next page; none on the last.
    pub next_offset: Option<usize>,
}

/// What a stage did with a commit.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineStage {
    /// Its name.
    pub name: String,
    /// Its pins to the commit, oldest first.
    pub pins: Vec<PinView>,
    /// Its rollouts to the commit, oldest first.
    pub rollouts: Vec<RolloutDetail>,
    /// Its clusters given the commit, counted.
    pub counts: DeliveryCounts,
    /// Whether the stage holds the commit now.
    pub pinned: bool,
}

/// Clusters given a commit, by how far they got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryCounts {
    /// Given it.
    pub given: usize,
    /// Applied every bundle of it.
    pub applied: usize,
    /// Healthy at it.
    pub healthy: usize,
    /// Not Healthy at it, with a problem recorded.
    pub failed: usize,
}

impl DeliveryCounts {
    fn add(&mut self, d: &Delivery) {
        self.given += 1;
        self.applied += usize::from(d.applied_at.is_some());
        self.healthy += usize::from(d.healthy_at.is_some());
        self.failed += usize::from(d.healthy_at.is_none() && d.problem.is_some());
    }
}

/// One cluster given a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineCluster {
    /// Name.
    pub name: String,
    /// The stage that selects it now.
    pub stage: Option<String>,
    /// How far the commit got there.
    #[serde(flatten)]
    pub delivery: DeliveryView,
}

/// Why a timeline cannot be shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimelineError {
    /// No commit the hub knows starts so.
    #[error("no revision the hub knows starts with `{0}`")]
    Unknown(String),
    /// Several do.
    #[error("`{0}` names several revisions: {1}; give more of the commit id")]
    Ambiguous(String, String),
    /// Too short or not hexadecimal.
    #[error("`{0}` is not a commit id: give at least 4 hexadecimal digits")]
    Malformed(String),
}

/// The whole commit id a prefix names among the revisions the hub keeps and the commits
/// clusters were given.
pub fn resolve_commit(state: &State, prefix: &str) -> Result<String, TimelineError> {
    let prefix = prefix.to_ascii_lowercase();
    if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(TimelineError::Malformed(prefix));
    }
    let mut found: Vec<&str> = state
        .revisions
        .keys()
        .map(|r| r.commit.as_str())
        .chain(
            state
                .clusters
                .values()
                .flat_map(|c| c.deliveries.iter().map(|d| d.commit.as_str())),
        )
        .filter(|commit| commit.starts_with(&prefix))
        .collect();
    found.sort_unstable();
    found.dedup();
    match found.as_slice() {
        [] => Err(TimelineError::Unknown(prefix)),
        [one] => Ok((*one).to_owned()),
        many => Err(TimelineError::Ambiguous(
            prefix,
            many.iter()
                .map(|c| pipeline::short(c))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// `commit` (whole) across the stages `visible` lets through, with one page of its clusters.
pub fn timeline(
    state: &State,
    source: Option<&SourceView>,
    commit: &str,
    visible: impl Fn(Option<&str>) -> bool,
    offset: usize,
    limit: Option<usize>,
) -> Timeline {
    let spec = current_spec(state, source);
    let stage_of = stage_namer(spec.as_ref());
    let order: Vec<String> = stages_in_order(state, spec.as_ref());
    let position = |stage: &Option<String>| {
        stage
            .as_ref()
            .and_then(|s| order.iter().position(|o| o == s))
            .unwrap_or(order.len())
    };
    let mut clusters: Vec<TimelineCluster> = Vec::new();
    let mut counts = DeliveryCounts::default();
    let mut per_stage: BTreeMap<String, DeliveryCounts> = BTreeMap::new();
    for (name, cluster) in &state.clusters {
        // The newest: a commit given again (after a rollback) is shown as it went last.
        let Some(i) = cluster.deliveries.iter().rposition(|d| d.commit == commit) else {
            continue;
        };
        let stage = stage_of(&cluster.labels);
        if !visible(stage.as_deref()) {
            continue;
        }
        let delivery = &cluster.deliveries[i];
        counts.add(delivery);
        if let Some(stage) = &stage {
            per_stage.entry(stage.clone()).or_default().add(delivery);
        }
        let view = deliveries(&cluster.deliveries[i..])
            .pop()
            .expect("the delivery itself");
        clusters.push(TimelineCluster {
            name: name.clone(),
            stage,
            delivery: view,
        });
    }
    clusters.sort_by(|a, b| {
        (position(&a.stage), a.delivery.given_at, &a.name).cmp(&(
            position(&b.stage),
            b.delivery.given_at,
            &b.name,
        ))
    });
    let matched = clusters.len();
    let offset = offset.min(matched);
    let end = limit.map_or(matched, |l| offset.saturating_add(l).min(matched));
    clusters.truncate(end);
    let clusters = clusters.split_off(offset);
    let stages = order
        .iter()
        .filter(|name| visible(Some(name)))
        .map(|name| {
            let record = state.stages.get(name);
            let pins = record
                .map(|s| {
                    s.history
                        .iter()
                        .filter(|p| p.revision.commit == commit)
                        .map(PinView::of)
                        .collect()
                })
                .unwrap_or_default();
            let rollouts = state
                .rollouts
                .iter()
                .filter(|(_, r)| &r.stage == name && r.to.commit == commit)
                .map(|(id, r)| rollout_detail(*id, r))
                .collect();
            TimelineStage {
                name: name.clone(),
                pins,
                rollouts,
                counts: per_stage.get(name).copied().unwrap_or_default(),
                pinned: record
                    .and_then(|s| s.pinned.as_ref())
                    .is_some_and(|p| p.commit == commit),
            }
        })
        .collect();
    let revision = state
        .revisions
        .iter()
        .find(|(r, _)| r.commit == commit)
        .map(|(r, rev)| {
            let mut summary = revision_summary(state, r, rev);
            // Only what the caller's stages and their clusters hold.
            summary.pinned_by.retain(|s| visible(Some(s)));
            summary.signature_refusals.retain(|refusal| {
                refusal
                    .split_once(':')
                    .is_some_and(|(stage, _)| visible(Some(stage)))
            });
            summary.cluster_errors.retain(|cluster, _| {
                let stage = state
                    .clusters
                    .get(cluster)
                    .and_then(|c| stage_of(&c.labels));
                visible(stage.as_deref())
            });
            summary
        });
    Timeline {
        commit: commit.to_owned(),
        revision,
        stages,
        counts,
        matched,
        offset,
        next_offset: (end < matched).then_some(end),
        clusters,
    }
}

#[cfg(test)]
mod tests;
