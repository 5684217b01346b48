//! Prometheus metrics of one hub node, served at `/metrics` on the HTTP listener.
//!
//! Counters and the fetch histogram are this process's own (the leader's controllers count what
//! they do); fleet and raft gauges are read from the node's replica, its fleet status and raft
//! status at scrape time (`scraped.rs`), so every node reports them and they can never drift
//! from the state. Names follow Prometheus' conventions: prefix `flotilla_`, counters end in
//! `_total`, durations in `_seconds`; the process's own use is `process_*`, as every client
//! library names it.

use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use crate::config::MetricsConfig;
use crate::config::metric_label_name as label_name;
use crate::node::{NodeHandle, Role};
use crate::state::Timestamp;
use crate::state::health::{Health, SyncState, cluster_sync_states, current_health};
use crate::status::{FleetStatus, StagePhase};

mod scraped;

use scraped::{Kind, Sampled, Scraped};

/// This node's agent streams, as the sync service counts them.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamCounts {
    /// Streams live now.
    pub live: u64,
    /// Streams accepted since the process started (a reconnect is one more).
    pub opened: u64,
    /// Streams refused at the hello.
    pub refused: u64,
    /// Streams ended because the agent stopped sending.
    pub timed_out: u64,
    /// Whole bundles sent.
    pub bundles_sent: u64,
    /// Compressed bundle bytes sent.
    pub bundle_bytes_sent: u64,
    /// Report events received.
    pub reports_received: u64,
}

impl Metrics {
    fn pending_notices(&self, state: &crate::state::State) -> Sampled {
        let mut pending = Sampled::new(
            "notifications_pending",
            "Notices recorded that a receiver is not done with yet (delivered, given up on, or \
             not for it): it grows while a receiver fails",
            Kind::Gauge,
        );
        let last = state.notices.last();
        for receiver in &self.receivers {
            let done = state.notices.done.get(receiver).copied().unwrap_or(last);
            pending.sample(&[("receiver", receiver)], last.saturating_sub(done) as f64);
        }
        pending
    }
}

/// Per stage, its newest rollout's waves: seconds from each wave's start to its end (until now
/// while the rollout runs, until its last change once it ended); waves not started are absent.
fn wave_durations(state: &crate::state::State, now: Timestamp) -> Sampled {
    let mut family = Sampled::new(
        "rollout_wave_duration_seconds",
        "Per stage, each started wave of its newest rollout: seconds from the wave's start to \
         its end, or until now while it runs",
        Kind::Gauge,
    );
    let mut newest = BTreeMap::new();
    for rollout in state.rollouts.values() {
        newest.insert(rollout.stage.as_str(), rollout);
    }
    for (stage, rollout) in newest {
        for wave in &rollout.waves {
            let Some(start) = wave.started_at else {
                continue;
            };
            let end = match wave.done_at {
                Some(done) => done,
                None if rollout.is_active() => now,
                None => rollout.updated_at,
            };
            let seconds = end.0.saturating_sub(start.0) as f64 / 1000.0;
            family.sample(&[("stage", stage), ("wave", &wave.name)], seconds);
        }
    }
    family
}

/// Label set of a metric family: `(name, value)` pairs.
type LabelPairs = Vec<(String, String)>;

/// The hub's metrics.
pub struct Metrics {
    registry: Registry,
    /// Revisions rendered successfully by this node.
    pub revisions_rendered: Counter,
    /// Revisions whose fetch or render failed on this node.
    pub render_errors: Counter,
    /// Seconds each fetch of the source took, successful or not.
    pub fetch_duration: Histogram,
    /// Seconds each recorded render of a revision took, for every cluster (successful or
    /// not; preempted renders are not recorded).
    pub render_duration: Histogram,
    /// Fetches that failed.
    pub fetch_errors: Counter,
    /// Webhooks accepted.
    pub webhooks: Counter,
    /// Webhook deliveries ignored as duplicates of one acted on recently.
    pub webhook_duplicates: Counter,
    /// Agent calls this node refused, by reason.
    pub agent_refusals: Family<LabelPairs, Counter>,
    /// Agent hellos and registrations this node refused because the agent talks to another
    /// Kubernetes cluster than the one bound to the name, by cluster name.
    pub agent_identity_conflicts: Family<LabelPairs, Counter>,
    clusters: Gauge,
    clusters_online: Gauge,
    bundles: Family<LabelPairs, Gauge>,
    bundles_sync: Family<LabelPairs, Gauge>,
    clusters_api_unreachable: Gauge,
    drift_corrections: Gauge,
    raft_term: Gauge,
    raft_commit: Gauge,
    raft_applied: Gauge,
    raft_is_leader: Gauge,
    raft_disk_full: Gauge,
    node_certificate_expiry: Gauge,
    /// Leader changes this process saw (its node's view of who leads moved).
    pub leader_changes: Counter,
    /// Seconds from proposing a command on this node until it applied here (or failed).
    pub proposal_duration: Histogram,
    /// Notices this node (as leader) finished with, by receiver and result: `delivered`,
    /// `failed` (refused, or given up on after its tries), `dropped` (lost unsent: the
    /// receiver fell too far behind).
    pub notifications: Family<LabelPairs, Counter>,
    /// Attempts at sending a notice, by receiver and result: `delivered`, `retry`, `refused`.
    pub notification_attempts: Family<LabelPairs, Counter>,
    scraped: std::sync::Arc<Scraped>,
    process: std::sync::Arc<Scraped>,
    process_registry: Registry,
    config: MetricsConfig,
    receivers: Vec<String>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics, registered, with the default [`MetricsConfig`].
    pub fn new() -> Self {
        Self::configured(MetricsConfig::default())
    }

    /// Fresh metrics, registered.
    pub fn configured(config: MetricsConfig) -> Self {
        let mut registry = Registry::with_prefix("flotilla");
        let revisions_rendered = Counter::default();
        let render_errors = Counter::default();
        let fetch_duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let render_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let fetch_errors = Counter::default();
        let webhooks = Counter::default();
        let webhook_duplicates = Counter::default();
        let agent_refusals = Family::<LabelPairs, Counter>::default();
        let agent_identity_conflicts = Family::<LabelPairs, Counter>::default();
        let clusters = Gauge::default();
        let clusters_online = Gauge::default();
        let bundles = Family::<LabelPairs, Gauge>::default();
        let bundles_sync = Family::<LabelPairs, Gauge>::default();
        let clusters_api_unreachable = Gauge::default();
        let drift_corrections = Gauge::default();
        let raft_term = Gauge::default();
        let raft_commit = Gauge::default();
        let raft_applied = Gauge::default();
        let raft_is_leader = Gauge::default();
        let leader_changes = Counter::default();
        let proposal_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "raft_proposal_duration_seconds",
            "Time from proposing a command on this node until it applied here (or failed): \
             the write latency every controller, agent report and Admin API call waits",
            proposal_duration.clone(),
        );
        let notifications = Family::<LabelPairs, Counter>::default();
        let notification_attempts = Family::<LabelPairs, Counter>::default();
        registry.register(
            "notifications",
            "Notices this node finished with as leader, by receiver and result: delivered, \
             failed (refused, or given up on after its tries), dropped (lost unsent: the \
             receiver fell more than 1000 notices behind)",
            notifications.clone(),
        );
        registry.register(
            "notification_attempts",
            "Attempts at sending a notice, by receiver and result: delivered, retry, refused",
            notification_attempts.clone(),
        );
        let build_info = Family::<LabelPairs, Gauge>::default();
        build_info
            .get_or_create(&vec![(
                "version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            )])
            .set(1);
        registry.register(
            "build_info",
            "1, labelled with the version of this hub's build",
            build_info,
        );
        registry.register(
            "raft_leader_changes",
            "Times this node saw the group's leader change",
            leader_changes.clone(),
        );
        let scraped = std::sync::Arc::new(Scraped::default());
        registry.register_collector(Box::new(scraped.clone()));
        let mut process_registry = Registry::default();
        let process = std::sync::Arc::new(Scraped::default());
        process_registry.register_collector(Box::new(process.clone()));
        let raft_disk_full = Gauge::default();
        let node_certificate_expiry = Gauge::default();
        registry.register(
            "revisions_rendered",
            "Revisions rendered successfully by this node",
            revisions_rendered.clone(),
        );
        registry.register(
            "render_errors",
            "Revisions whose render failed on this node",
            render_errors.clone(),
        );
        registry.register(
            "fetch_duration_seconds",
            "Time taken by each fetch of the source",
            fetch_duration.clone(),
        );
        registry.register(
            "render_duration_seconds",
            "Time taken by each render of a revision for every cluster, recorded",
            render_duration.clone(),
        );
        registry.register(
            "fetch_errors",
            "Fetches of the source that failed",
            fetch_errors.clone(),
        );
        registry.register(
            "webhooks",
            "Webhooks accepted by this node",
            webhooks.clone(),
        );
        registry.register(
            "webhook_duplicates",
            "Webhook deliveries this node ignored as duplicates of one it acted on in the last \
             10 minutes",
            webhook_duplicates.clone(),
        );
        registry.register(
            "agent_refusals",
            "Agent streams and registrations this node refused, by reason",
            agent_refusals.clone(),
        );
        registry.register(
            "agent_identity_conflicts",
            "Agent hellos and registrations this node refused because the agent talks to \
             another Kubernetes cluster (kube-system UID) than the one bound to the cluster name",
            agent_identity_conflicts.clone(),
        );
        registry.register("clusters", "Registered clusters", clusters.clone());
        registry.register(
            "clusters_online",
            "Registered clusters whose agent is connected",
            clusters_online.clone(),
        );
        registry.register(
            "bundles",
            "Bundles on clusters by reported health",
            bundles.clone(),
        );
        registry.register(
            "drift_corrections",
            "Drift corrections agents made, summed over the bundles the hub knows (a removed \
             cluster's count leaves the sum)",
            drift_corrections.clone(),
        );
        registry.register(
            "clusters_api_unreachable",
            "Clusters whose agent is connected but cannot reach the cluster's API server",
            clusters_api_unreachable.clone(),
        );
        registry.register(
            "bundles_sync",
            "Bundles desired on or reported by clusters, by sync state (Synced, Applying, \
             OutOfSync, ApplyFailed, Unknown)",
            bundles_sync.clone(),
        );
        registry.register("raft_term", "Current raft term", raft_term.clone());
        registry.register(
            "raft_commit_index",
            "Raft commit index",
            raft_commit.clone(),
        );
        registry.register(
            "raft_applied_index",
            "Raft applied index",
            raft_applied.clone(),
        );
        registry.register(
            "raft_is_leader",
            "1 when this node leads the group",
            raft_is_leader.clone(),
        );
        registry.register(
            "raft_disk_full",
            "1 while this node's disk is full: it refuses writes until space is freed, and the \
             group goes on without it",
            raft_disk_full.clone(),
        );
        registry.register(
            "node_certificate_expiry_timestamp_seconds",
            "When this node's current TLS certificate expires (Unix seconds; 0 without TLS); it \
             is renewed with a third of its lifetime left",
            node_certificate_expiry.clone(),
        );
        Metrics {
            registry,
            revisions_rendered,
            render_errors,
            fetch_duration,
            render_duration,
            fetch_errors,
            webhooks,
            webhook_duplicates,
            agent_refusals,
            agent_identity_conflicts,
            clusters,
            clusters_online,
            bundles,
            bundles_sync,
            clusters_api_unreachable,
            drift_corrections,
            raft_term,
            raft_commit,
            raft_applied,
            raft_is_leader,
            raft_disk_full,
            node_certificate_expiry,
            leader_changes,
            proposal_duration,
            notifications,
            notification_attempts,
            scraped,
            process,
            process_registry,
            config,
            receivers: Vec::new(),
        }
    }

    /// These metrics, also showing how far behind each of these notification receivers is.
    pub fn with_receivers(mut self, receivers: Vec<String>) -> Self {
        // Every series exists from the start at 0, so the first failure is an increase.
        for receiver in &receivers {
            let labels = |result: &str| {
                vec![
                    ("receiver".to_owned(), receiver.clone()),
                    ("result".to_owned(), result.to_owned()),
                ]
            };
            for result in ["delivered", "failed", "dropped"] {
                self.notifications.get_or_create(&labels(result)).inc_by(0);
            }
            for result in ["delivered", "retry", "refused"] {
                self.notification_attempts
                    .get_or_create(&labels(result))
                    .inc_by(0);
            }
        }
        self.receivers = receivers;
        self
    }

    /// Refreshes the gauges from the node, `fleet` (its status now) and `streams`, and encodes
    /// everything in the text exposition format.
    pub async fn scrape(
        &self,
        node: &NodeHandle,
        fleet: Option<&FleetStatus>,
        streams: StreamCounts,
        now: Timestamp,
    ) -> Result<String, fmt::Error> {
        let mut families = Vec::new();
        if let Ok(status) = node.status().await {
            self.raft_term.set(status.term as i64);
            self.raft_commit.set(status.commit as i64);
            self.raft_applied.set(status.applied as i64);
            self.raft_is_leader
                .set(i64::from(status.role == Role::Leader));
            self.raft_disk_full
                .set(i64::from(status.disk_full.is_some()));
            families.push(Sampled::single(
                "raft_voters",
                "Voters of the group as this node's raft sees them: every one should be scraped",
                Kind::Gauge,
                status.voters.len() as f64,
            ));
            let mut lag = Sampled::new(
                "raft_follower_lag_entries",
                "On the leader: log entries each other voter is known to be behind (last index \
                 minus its match index)",
                Kind::Gauge,
            );
            for (peer, matched) in &status.matched {
                let behind = status.last_index.saturating_sub(*matched);
                lag.sample(&[("peer", &peer.to_string())], behind as f64);
            }
            families.push(lag);
        }
        if let Some(fleet) = fleet {
            families.extend(fleet_families(fleet, now, &self.config));
        }
        families.extend(stream_families(streams));
        self.process.set(process_families());
        let expiry = node.security().tls().map_or(0, |tls| {
            let not_after = tls.credentials().not_after;
            not_after
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
        self.node_certificate_expiry.set(expiry);
        let mut by_health: BTreeMap<Health, i64> = Health::ALL.iter().map(|h| (*h, 0)).collect();
        let mut by_sync: BTreeMap<SyncState, i64> =
            SyncState::ALL.iter().map(|s| (*s, 0)).collect();
        {
            // One read of the replica for everything scraped from it.
            let state = node.state();
            if !self.receivers.is_empty() {
                families.push(self.pending_notices(&state));
            }
            families.push(wave_durations(&state, now));
            // With the fleet status (computed once per applied index for every reader), the
            // cluster and sync counts are read from it; without one, from the replica.
            match fleet {
                Some(fleet) => {
                    let online = fleet.clusters.iter().filter(|c| c.online);
                    self.clusters.set(fleet.clusters.len() as i64);
                    self.clusters_online.set(online.clone().count() as i64);
                    self.clusters_api_unreachable
                        .set(online.filter(|c| c.api_reachable == Some(false)).count() as i64);
                    for (sync, count) in &fleet.counts.sync {
                        by_sync.insert(*sync, i64::try_from(*count).unwrap_or(i64::MAX));
                    }
                }
                None => {
                    self.clusters.set(state.clusters.len() as i64);
                    self.clusters_online
                        .set(state.clusters.values().filter(|c| c.online).count() as i64);
                    self.clusters_api_unreachable.set(
                        state
                            .clusters
                            .values()
                            .filter(|c| c.online && !c.reporting())
                            .count() as i64,
                    );
                    for cluster in state.clusters.keys() {
                        for (_, sync) in cluster_sync_states(&state, cluster) {
                            *by_sync.entry(sync).or_default() += 1;
                        }
                    }
                }
            }
            let mut corrections = 0u64;
            for (key, record) in &state.health {
                if let Some(cluster) = state.clusters.get(&key.cluster) {
                    *by_health
                        .entry(current_health(cluster, Some(record)))
                        .or_default() += 1;
                    corrections = corrections.saturating_add(record.drift_corrections);
                }
            }
            self.drift_corrections
                .set(i64::try_from(corrections).unwrap_or(i64::MAX));
        }
        self.scraped.set(families);
        for (sync, count) in by_sync {
            self.bundles_sync
                .get_or_create(&vec![("sync_state".to_owned(), sync.as_str().to_owned())])
                .set(count);
        }
        for (health, count) in by_health {
            self.bundles
                .get_or_create(&vec![("health".to_owned(), health.as_str().to_owned())])
                .set(count);
        }
        let mut text = String::new();
        encode_registry(&mut text, &self.registry)?;
        encode_registry(&mut text, &self.process_registry)?;
        encode_eof(&mut text)?;
        Ok(text)
    }
}

/// Seconds between two timestamps (0 when `to` is not after `from`).
fn seconds(from: Timestamp, to: Timestamp) -> f64 {
    to.0.saturating_sub(from.0) as f64 / 1000.0
}

/// Every stage phase, as `flotilla_stage_phase` names them.
const PHASES: [StagePhase; 7] = [
    StagePhase::Idle,
    StagePhase::Rolling,
    StagePhase::AwaitingApproval,
    StagePhase::Paused,
    StagePhase::PausedByFailure,
    StagePhase::RolledBack,
    StagePhase::Blocked,
];

/// The families read from the fleet status: per stage and per cluster.
fn fleet_families(fleet: &FleetStatus, now: Timestamp, config: &MetricsConfig) -> Vec<Sampled> {
    let mut bundles = Sampled::new(
        "stage_bundles",
        "Bundles on the clusters of each stage (`-`: clusters no stage selects), by sync state \
         and health; combinations with none are left out",
        Kind::Gauge,
    );
    let mut counted: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for cluster in &fleet.clusters {
        let stage = cluster.stage.as_deref().unwrap_or("-");
        for bundle in &cluster.bundles {
            *counted
                .entry((stage, bundle.sync_state.as_str(), bundle.health.as_str()))
                .or_default() += 1;
        }
    }
    for ((stage, sync, health), n) in counted {
        bundles.sample(
            &[("stage", stage), ("sync_state", sync), ("health", health)],
            n as f64,
        );
    }
    let mut clusters = Sampled::new("stage_clusters", "Clusters each stage selects", Kind::Gauge);
    let mut phase = Sampled::new(
        "stage_phase",
        "1 for the phase each stage is in, 0 for the others (Idle, Rolling, AwaitingApproval, \
         Paused, PausedByFailure, RolledBack, Blocked)",
        Kind::Gauge,
    );
    for stage in &fleet.stages {
        clusters.sample(&[("stage", &stage.name)], stage.cluster_count as f64);
        for candidate in PHASES {
            let name = format!("{candidate:?}");
            phase.sample(
                &[("stage", &stage.name), ("phase", &name)],
                f64::from(u8::from(candidate == stage.phase)),
            );
        }
    }
    // The newest rollout of each stage (the list is newest first): how long it has run, and
    // each wave it started.
    let mut rollout = Sampled::new(
        "stage_rollout_duration_seconds",
        "How long each stage's newest rollout ran: from its start (or approval) until its \
         last change once it ended, until now while it runs",
        Kind::Gauge,
    );
    let mut seen = std::collections::BTreeSet::new();
    for r in &fleet.rollouts {
        if !seen.insert(r.stage.as_str()) {
            continue;
        }
        let active = matches!(r.status.as_str(), "running" | "paused" | "awaitingApproval");
        let end = if active { now } else { r.updated_at };
        // Label values in Prometheus' own style: `rolled_back`, `awaiting_approval`.
        let status: String = r
            .status
            .chars()
            .flat_map(|c| match c.is_ascii_uppercase() {
                true => vec!['_', c.to_ascii_lowercase()],
                false => vec![c],
            })
            .collect();
        rollout.sample(
            &[("stage", &r.stage), ("status", &status)],
            seconds(r.started_at.unwrap_or(r.updated_at), end),
        );
    }
    let mut families = vec![bundles, clusters, phase, rollout];
    if config.cluster_info {
        families.extend(per_cluster(fleet, config));
    }
    families
}

/// Per cluster: `flotilla_cluster_info` (stable labels: stage and the configured cluster
/// labels) and gauges of what changes (agent, API, bundles), so a rollout changes values, not
/// series.
fn per_cluster(fleet: &FleetStatus, config: &MetricsConfig) -> Vec<Sampled> {
    let mut info = Sampled::new(
        "cluster_info",
        "1 per registered cluster, labelled with its stage (`-`: none) and the cluster labels \
         the hub is configured to copy (`label_<key>`)",
        Kind::Gauge,
    );
    let mut online = Sampled::new(
        "cluster_agent_online",
        "1 while the cluster's agent is connected to a hub node",
        Kind::Gauge,
    );
    let mut api = Sampled::new(
        "cluster_api_reachable",
        "1 while the cluster's agent reaches its API server, 0 while it does not; absent \
         while not known (the agent offline, or it has not said)",
        Kind::Gauge,
    );
    let mut not_synced = Sampled::new(
        "cluster_bundles_not_synced",
        "Bundles of the cluster whose sync state is not Synced (Applying, OutOfSync, \
         ApplyFailed, Unknown)",
        Kind::Gauge,
    );
    let mut not_healthy = Sampled::new(
        "cluster_bundles_not_healthy",
        "Bundles of the cluster whose health is neither Healthy nor Suspended",
        Kind::Gauge,
    );
    for cluster in &fleet.clusters {
        let name = cluster.name.as_str();
        let mut labels: Vec<(String, String)> = vec![
            ("cluster".into(), name.to_owned()),
            (
                "stage".into(),
                cluster.stage.clone().unwrap_or_else(|| "-".into()),
            ),
        ];
        for key in &config.cluster_labels {
            labels.push((
                format!("label_{}", label_name(key)),
                cluster.labels.get(key).cloned().unwrap_or_default(),
            ));
        }
        info.sample_owned(labels, 1.0);
        online.sample(&[("cluster", name)], f64::from(u8::from(cluster.online)));
        if let Some(reachable) = cluster.api_reachable {
            api.sample(&[("cluster", name)], f64::from(u8::from(reachable)));
        }
        let unsynced = cluster
            .bundles
            .iter()
            .filter(|b| b.sync_state != SyncState::Synced)
            .count();
        not_synced.sample(&[("cluster", name)], unsynced as f64);
        let unhealthy = cluster
            .bundles
            .iter()
            .filter(|b| !matches!(b.health.as_str(), "Healthy" | "Suspended"))
            .count();
        not_healthy.sample(&[("cluster", name)], unhealthy as f64);
    }
    vec![info, online, api, not_synced, not_healthy]
}

/// This node's agent streams.
fn stream_families(streams: StreamCounts) -> Vec<Sampled> {
    vec![
        Sampled::single(
            "agent_streams",
            "Agent streams this node serves now",
            Kind::Gauge,
            streams.live as f64,
        ),
        Sampled::single(
            "agent_streams_opened",
            "Agent streams this node accepted (each reconnect is one more)",
            Kind::Counter,
            streams.opened as f64,
        ),
        Sampled::single(
            "agent_streams_refused",
            "Agent streams this node refused at the hello",
            Kind::Counter,
            streams.refused as f64,
        ),
        Sampled::single(
            "agent_streams_timed_out",
            "Agent streams this node ended because the agent stopped sending",
            Kind::Counter,
            streams.timed_out as f64,
        ),
        Sampled::single(
            "bundles_sent",
            "Whole bundles this node sent to agents",
            Kind::Counter,
            streams.bundles_sent as f64,
        ),
        Sampled::single(
            "bundle_bytes_sent",
            "Compressed bundle bytes this node sent to agents",
            Kind::Counter,
            streams.bundle_bytes_sent as f64,
        ),
        Sampled::single(
            "agent_reports_received",
            "Report events this node received from agents",
            Kind::Counter,
            streams.reports_received as f64,
        ),
    ]
}

/// `process_*`, as Prometheus' client libraries name them; none where `/proc` is missing.
fn process_families() -> Vec<Sampled> {
    let Some(p) = flotilla_core::process::ProcessStats::read() else {
        return Vec::new();
    };
    vec![
        Sampled::single(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            Kind::Counter,
            p.cpu_seconds,
        ),
        Sampled::single(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            Kind::Gauge,
            p.resident_bytes as f64,
        ),
        Sampled::single(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            Kind::Gauge,
            p.virtual_bytes as f64,
        ),
        Sampled::single(
            "process_open_fds",
            "Number of open file descriptors",
            Kind::Gauge,
            p.open_fds as f64,
        ),
        Sampled::single(
            "process_max_fds",
            "Maximum number of open file descriptors",
            Kind::Gauge,
            p.max_fds as f64,
        ),
        Sampled::single(
            "process_threads",
            "Number of OS threads in the process",
            Kind::Gauge,
            p.threads as f64,
        ),
        Sampled::single(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            Kind::Gauge,
            p.start_time_seconds,
        ),
    ]
}
