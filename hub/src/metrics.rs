//! Prometheus metrics of one hub node, served at `/metrics` on the HTTP listener.
//!
//! Counters and the fetch histogram are this process's own (the leader's controllers count what
//! they do); fleet and raft gauges are read from the node's replica and raft status at scrape
//! time, so every node reports them and they can never drift from the state.

use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::node::{NodeHandle, Role};
use crate::state::health::{Health, SyncState, cluster_sync_states, current_health};

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
    raft_leader: Gauge,
    raft_disk_full: Gauge,
    node_certificate_expiry: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("flotilla");
        let revisions_rendered = Counter::default();
        let render_errors = Counter::default();
        let fetch_duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
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
        let raft_leader = Gauge::default();
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
            "raft_leader",
            "1 when this node leads the group",
            raft_leader.clone(),
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
            raft_leader,
            raft_disk_full,
            node_certificate_expiry,
        }
    }

    /// Refreshes the gauges from the node and encodes everything in the text exposition format.
    pub async fn scrape(&self, node: &NodeHandle) -> Result<String, fmt::Error> {
        if let Ok(status) = node.status().await {
            self.raft_term.set(status.term as i64);
            self.raft_commit.set(status.commit as i64);
            self.raft_applied.set(status.applied as i64);
            self.raft_leader.set(i64::from(status.role == Role::Leader));
            self.raft_disk_full
                .set(i64::from(status.disk_full.is_some()));
        }
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
            let state = node.state();
            self.clusters.set(state.clusters.len() as i64);
            self.clusters_online
                .set(state.clusters.values().filter(|c| c.online).count() as i64);
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
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
