//! Health reported by agents, per cluster and bundle.

use serde::{Deserialize, Serialize};

use super::source::BlobHash;
use super::{State, Timestamp};

pub use flotilla_core::Health;

/// Which bundle on which cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HealthKey {
    /// Cluster name.
    pub cluster: String,
    /// Bundle name.
    pub bundle: String,
}

/// One agent report, as proposed in a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// Which bundle on which cluster.
    pub key: HealthKey,
    /// Hash of the bundle content the agent has applied.
    pub applied: Option<BlobHash>,
    /// Rolled-up health.
    pub health: Health,
    /// The first unhealthy objects and their messages, for people.
    pub message: String,
    /// Objects changed or deleted by someone else and not (yet) corrected; empty when in sync.
    pub drifted: Vec<String>,
    /// When the agent observed it.
    pub at: Timestamp,
}

/// The latest report for a bundle on a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthRecord {
    /// Hash of the applied content.
    pub applied: Option<BlobHash>,
    /// Rolled-up health.
    pub health: Health,
    /// Human detail.
    pub message: String,
    /// Objects drifted and not corrected; empty when in sync.
    pub drifted: Vec<String>,
    /// When observed.
    pub at: Timestamp,
}

/// Records a batch. Reports for clusters no longer registered are dropped (the cluster was
/// removed while the report travelled), and a report older than the recorded one never
/// overwrites it (batches from two hub nodes may commit out of order).
pub(super) fn record(state: &mut State, reports: &[HealthReport]) {
    for report in reports {
        if !state.clusters.contains_key(&report.key.cluster) {
            continue;
        }
        let newer = state
            .health
            .get(&report.key)
            .is_none_or(|old| old.at <= report.at);
        if newer {
            state.health.insert(
                report.key.clone(),
                HealthRecord {
                    applied: report.applied,
                    health: report.health,
                    message: report.message.clone(),
                    drifted: report.drifted.clone(),
                    at: report.at,
                },
            );
        }
    }
}
