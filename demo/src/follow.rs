//! Watching the fleet from inside the demo: waiting until the first revision is rolled out
//! everywhere, then printing one line per thing that happens (revisions fetched, rendered or
//! failed, stages moving, clusters coming and going, bundles changing health or revision).
//!
//! Everything is read from the hub's own replica, the state `flotilla status` shows.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flotilla_hub::controller::source::SourceConfig;
use flotilla_hub::server::Hub;
use flotilla_hub::state::rollout::pipeline::short;
use flotilla_hub::status::{self, Event, FleetStatus};

use super::progress::Progress;

/// How the first rollout went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Readiness {
    /// Every cluster online, every bundle applied at its desired revision and Healthy.
    Ready,
    /// Not (yet) so: what is missing.
    NotYet(String),
}

/// Where the first rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    /// No revision yet.
    Fetching,
    /// A revision is being rendered.
    Rendering(String),
    /// The newest revision failed to render.
    Failed(String),
    /// Bundles are being applied.
    RollingOut {
        /// Bundles applied at their desired revision and Healthy.
        healthy: usize,
        /// Bundles desired.
        bundles: usize,
        /// Clusters whose agent is connected.
        online: usize,
        /// Clusters registered.
        clusters: usize,
    },
    /// Done.
    Ready,
}

impl Phase {
    /// The phase of `status` for a fleet of `expected` clusters.
    pub(super) fn of(status: &FleetStatus, expected: usize) -> Phase {
        let Some(revision) = &status.latest_revision else {
            return Phase::Fetching;
        };
        match revision.status {
            "fetched" => return Phase::Rendering(short(&revision.commit).to_owned()),
            "failed" => {
                let error = revision
                    .error
                    .as_ref()
                    .map(status::describe_error)
                    .unwrap_or_default();
                return Phase::Failed(error);
            }
            _ => {}
        }
        let bundles = status.clusters.iter().flat_map(|c| &c.bundles);
        let (mut healthy, mut total) = (0, 0);
        for bundle in bundles {
            total += 1;
            let applied =
                bundle.desired_hash.is_some() && bundle.applied_hash == bundle.desired_hash;
            if applied && bundle.health == "Healthy" {
                healthy += 1;
            }
        }
        let online = status.clusters.iter().filter(|c| c.online).count();
        let clusters = status.clusters.len();
        if clusters >= expected && online == clusters && total > 0 && healthy == total {
            Phase::Ready
        } else {
            Phase::RollingOut {
                healthy,
                bundles: total,
                online,
                clusters,
            }
        }
    }

    /// The phase as a progress detail.
    fn describe(&self) -> String {
        match self {
            Phase::Fetching => "fetching the repository".to_owned(),
            Phase::Rendering(commit) => format!("rendering revision {commit}"),
            Phase::Failed(error) => format!("the newest revision failed: {error}"),
            Phase::RollingOut {
                healthy,
                bundles,
                online,
                clusters,
            } => format!(
                "{online}/{clusters} agents connected, {healthy}/{bundles} bundles applied and Healthy"
            ),
            Phase::Ready => "every bundle applied and Healthy".to_owned(),
        }
    }
}

/// The fleet status of the hub's replica.
fn snapshot(hub: &Hub, source: &SourceConfig) -> FleetStatus {
    let node = hub.node();
    let leader = node.leadership().leader;
    let state = node.state();
    status::fleet_status(
        &state,
        Some(&source.view()),
        node.id(),
        leader,
        state.applied(),
    )
}

/// Waits until every bundle of every cluster is applied and Healthy, showing progress, or
/// until `timeout`.
pub(super) async fn until_ready(
    hub: &Hub,
    source: &SourceConfig,
    clusters: usize,
    progress: &Progress,
    timeout: Duration,
) -> Readiness {
    progress.step("Rolling out the first revision");
    let deadline = tokio::time::Instant::now() + timeout;
    let mut applied = hub.node().watch_applied();
    loop {
        let phase = Phase::of(&snapshot(hub, source), clusters);
        match &phase {
            Phase::Ready => return Readiness::Ready,
            Phase::Failed(error) => {
                return Readiness::NotYet(format!("the first revision failed to render: {error}"));
            }
            _ => progress.detail(&phase.describe()),
        }
        // Liveness and health are replicated, so every change moves the applied index; the
        // timer only bounds the wait.
        let changed = tokio::time::timeout_at(deadline, applied.changed()).await;
        match changed {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Readiness::NotYet("the hub stopped".to_owned()),
            Err(_) => {
                return Readiness::NotYet(format!(
                    "after {}s not everything is rolled out ({}); `flotilla status` shows what \
                     is missing",
                    timeout.as_secs(),
                    phase.describe()
                ));
            }
        }
    }
}

/// Prints one line per change of the fleet, until the hub stops.
pub(super) async fn events(hub: &Hub, source: &SourceConfig) {
    let mut applied = hub.node().watch_applied();
    let mut seen = Seen::new(&snapshot(hub, source));
    while applied.changed().await.is_ok() {
        let now = chrono::Local::now().format("%H:%M:%S");
        for line in seen.update(&snapshot(hub, source)) {
            println!("{now}  {line}");
        }
    }
}

/// What has been printed already.
pub(super) struct Seen {
    events: BTreeSet<Event>,
    /// Per (cluster, bundle): health and applied revision.
    bundles: BTreeMap<(String, String), (String, Option<String>)>,
}

impl Seen {
    /// Everything in `status` counts as seen.
    pub(super) fn new(status: &FleetStatus) -> Seen {
        Seen {
            events: status.events.iter().cloned().collect(),
            bundles: bundles(status),
        }
    }

    /// Lines for what changed since the last status, oldest event first.
    pub(super) fn update(&mut self, status: &FleetStatus) -> Vec<String> {
        let mut lines = Vec::new();
        let mut new: Vec<&Event> = status
            .events
            .iter()
            .filter(|e| !self.events.contains(*e))
            .collect();
        new.sort();
        for event in new {
            lines.push(format!("{:<24} {}", event.subject, event.message));
        }
        // The status lists only recent events: what left the list will not come back.
        self.events = status.events.iter().cloned().collect();

        let now = bundles(status);
        for (key, (health, revision)) in &now {
            let before = self.bundles.get(key);
            if before == Some(&(health.clone(), revision.clone())) {
                continue;
            }
            let at = revision
                .as_deref()
                .map(|r| format!(" at {}", short(r)))
                .unwrap_or_default();
            let change = match before {
                Some((old, _)) if old != health => format!("{old} → {health}"),
                _ => health.clone(),
            };
            lines.push(format!(
                "{:<24} {change}{at}",
                format!("{}/{}", key.0, key.1)
            ));
        }
        self.bundles = now;
        lines
    }
}

fn bundles(status: &FleetStatus) -> BTreeMap<(String, String), (String, Option<String>)> {
    status
        .clusters
        .iter()
        .flat_map(|cluster| {
            cluster.bundles.iter().map(|bundle| {
                (
                    (cluster.name.clone(), bundle.name.clone()),
                    (bundle.health.clone(), bundle.applied_revision.clone()),
                )
            })
        })
        .collect()
}
