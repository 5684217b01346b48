//! Health reported by agents, per cluster and bundle.

use serde::{Deserialize, Serialize};

use super::notice::NoticeKind;
use super::source::BlobHash;
use super::{State, Timestamp};

pub use flotilla_core::{Health, SyncState};

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
    /// The last apply's failure, while no apply succeeded since.
    pub failed: Option<ApplyFailure>,
    /// The last drift the agent found, and whether it corrected it.
    pub last_drift: Option<DriftNote>,
    /// Drift corrections the agent made since the bundle was first reported.
    pub drift_corrections: u64,
    /// Fields other managers added to the bundle's objects (additive drift, never corrected):
    /// `object: fields added by manager; …`, one line per object; empty when none.
    pub added: Vec<String>,
    /// When the agent observed it.
    pub at: Timestamp,
}

/// How many drift notes a bundle's record keeps, newest last.
pub const DRIFT_LOG_LEN: usize = 10;

/// What an agent did about drift it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriftKind {
    /// Managed fields changed or objects deleted, not (yet) corrected.
    Found,
    /// Re-applied (`drift: correct`).
    Corrected,
    /// Re-applying failed; `objects` holds the API's errors. Still drifted.
    CorrectionFailed,
    /// Fields other managers added (reported, never removed).
    Added,
}

impl DriftKind {
    /// How events word it.
    pub fn describe(self) -> &'static str {
        match self {
            DriftKind::Found => "drift found",
            DriftKind::Corrected => "drift corrected",
            DriftKind::CorrectionFailed => "drift correction failed",
            DriftKind::Added => "fields added in the cluster (reported, not removed)",
        }
    }
}

/// Drift the agent found: each object with the fields changed and who changed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftNote {
    /// `object: fields (by manager)`, `object: deleted`, or the correction's errors.
    pub objects: Vec<String>,
    /// What it is and what the agent did.
    pub kind: DriftKind,
    /// When it found (or corrected) it.
    pub at: Timestamp,
}

/// An apply that failed: of which content, and each failing object with the API's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyFailure {
    /// The content the agent tried to apply.
    pub content: Option<BlobHash>,
    /// `object: message`, one per failing object.
    pub errors: Vec<String>,
    /// Whether the API server refused it, so waiting cannot fix it: the rollout fails at once
    /// (the agent retries it only rarely, in case the cause outside Git is fixed).
    pub permanent: bool,
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
    /// The last apply's failure, while no apply succeeded since.
    pub failed: Option<ApplyFailure>,
    /// The newest drift notes, oldest first, at most [`DRIFT_LOG_LEN`]: each is an event.
    pub drift_log: Vec<DriftNote>,
    /// Drift corrections the agent made since the bundle was first reported.
    pub drift_corrections: u64,
    /// Fields other managers added to the bundle's objects (additive drift, never corrected):
    /// `object: fields added by manager; …`, one line per object; empty when none.
    pub added: Vec<String>,
    /// When observed.
    pub at: Timestamp,
}

/// The health to show for a bundle of `cluster`: its agent's last report while that report is
/// current, `Unknown` while the agent is offline or cannot reach its cluster's API (the
/// workload may have changed since; the last report is kept and shown as such).
pub fn current_health(cluster: &super::fleet::Cluster, record: Option<&HealthRecord>) -> Health {
    match record {
        Some(record) if cluster.reporting() => record.health,
        _ => Health::Unknown,
    }
}

/// Whether a cluster holds what it should of a bundle: `desired` is the content its assigned
/// revision wants (none when the bundle is no longer desired there), `record` the agent's last
/// report, `online` whether what the agent reports is current (it streams and reaches the
/// cluster's API: [`super::fleet::Cluster::reporting`]); when it is not, the state is Unknown.
pub fn sync_state(
    desired: Option<&BlobHash>,
    record: Option<&HealthRecord>,
    online: bool,
) -> SyncState {
    let Some(record) = record else {
        return match (desired, online) {
            (Some(_), true) => SyncState::Applying,
            _ => SyncState::Unknown,
        };
    };
    if !online {
        return SyncState::Unknown;
    }
    if let Some(failed) = &record.failed
        && failed.content.as_ref() == desired
        && desired.is_some()
    {
        return SyncState::ApplyFailed;
    }
    if record.applied.as_ref() != desired {
        return SyncState::Applying;
    }
    // Fields someone added are not what Git says either, though Flotilla leaves them.
    if !record.drifted.is_empty() || !record.added.is_empty() {
        return SyncState::OutOfSync;
    }
    SyncState::Synced
}

/// The health records of `cluster`'s bundles, by bundle name.
pub fn records_of<'a>(
    health: &'a std::collections::BTreeMap<HealthKey, HealthRecord>,
    cluster: &'a str,
) -> impl Iterator<Item = (&'a str, &'a HealthRecord)> + 'a {
    let from = HealthKey {
        cluster: cluster.to_owned(),
        bundle: String::new(),
    };
    health
        .range(from..)
        .take_while(move |(key, _)| key.cluster == cluster)
        .map(|(key, record)| (key.bundle.as_str(), record))
}

/// The sync state of every bundle desired on `cluster` or reported by its agent.
pub fn cluster_sync_states(state: &State, cluster: &str) -> Vec<(String, SyncState)> {
    let Some(registered) = state.clusters.get(cluster) else {
        return Vec::new();
    };
    let desired = state.desired_bundles(cluster);
    let reported: std::collections::BTreeMap<&str, &HealthRecord> =
        records_of(&state.health, cluster).collect();
    let names: std::collections::BTreeSet<&str> = desired
        .keys()
        .map(String::as_str)
        .chain(reported.keys().copied())
        .collect();
    names
        .into_iter()
        .map(|bundle| {
            let sync = sync_state(
                desired.get(bundle),
                reported.get(bundle).copied(),
                registered.reporting(),
            );
            (bundle.to_owned(), sync)
        })
        .collect()
}

/// Records a batch. Reports for clusters no longer registered are dropped (the cluster was
/// removed while the report travelled), and a report older than the recorded one never
/// overwrites it (batches from two hub nodes may commit out of order).
pub(super) fn record(state: &mut State, reports: &[HealthReport]) {
    // Each cluster the batch reports on, with its newest report's time: how far its newest
    // revision got is judged once all of the batch is recorded.
    let mut observed: std::collections::BTreeMap<&str, Timestamp> = Default::default();
    for report in reports {
        if !state.clusters.contains_key(&report.key.cluster) {
            continue;
        }
        let newer = state
            .health
            .get(&report.key)
            .is_none_or(|old| old.at <= report.at);
        if newer {
            let mut drift_log = state
                .health
                .get(&report.key)
                .map(|old| old.drift_log.clone())
                .unwrap_or_default();
            if let Some(note) = &report.last_drift
                && drift_log.last() != Some(note)
            {
                // The same finding again (a correction that keeps failing) updates its time
                // instead of pushing the others out of the log.
                if let Some(last) = drift_log
                    .last_mut()
                    .filter(|last| last.kind == note.kind && last.objects == note.objects)
                {
                    last.at = note.at;
                } else {
                    // A new finding: a correction of the same objects again (another
                    // controller fighting Flotilla) updates the time above, not the notices.
                    if note.kind == DriftKind::Corrected {
                        let about = super::notice::About {
                            cluster: Some(report.key.cluster.clone()),
                            ..Default::default()
                        };
                        let message = format!(
                            "bundle {}: re-applied {}",
                            report.key.bundle,
                            note.objects.join(", ")
                        );
                        state
                            .notices
                            .push(NoticeKind::DriftCorrected, note.at, about, &message);
                    }
                    drift_log.push(note.clone());
                }
                let excess = drift_log.len().saturating_sub(DRIFT_LOG_LEN);
                drift_log.drain(..excess);
            }
            state.health.insert(
                report.key.clone(),
                HealthRecord {
                    applied: report.applied,
                    health: report.health,
                    message: report.message.clone(),
                    drifted: report.drifted.clone(),
                    failed: report.failed.clone(),
                    drift_log,
                    drift_corrections: report.drift_corrections,
                    added: report.added.clone(),
                    at: report.at,
                },
            );
            let newest = observed.entry(&report.key.cluster).or_insert(report.at);
            *newest = (*newest).max(report.at);
        }
    }
    for (cluster, at) in observed {
        super::delivery::observe(state, cluster, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(byte: u8) -> BlobHash {
        flotilla_core::ContentHash::of(&[byte])
    }

    fn record(applied: Option<BlobHash>) -> HealthRecord {
        HealthRecord {
            applied,
            health: Health::Healthy,
            message: String::new(),
            drifted: Vec::new(),
            failed: None,
            drift_log: Vec::new(),
            drift_corrections: 0,
            added: Vec::new(),
            at: Timestamp(1),
        }
    }

    #[test]
    fn sync_state_says_whether_the_cluster_holds_the_desired_content() {
        let (old, new) = (hash(1), hash(2));
        let synced = record(Some(new));
        assert_eq!(
            sync_state(Some(&new), Some(&synced), true),
            SyncState::Synced
        );
        // Offline, what the agent last said is not trusted.
        assert_eq!(
            sync_state(Some(&new), Some(&synced), false),
            SyncState::Unknown
        );
        assert_eq!(sync_state(Some(&new), None, true), SyncState::Applying);
        assert_eq!(sync_state(Some(&new), None, false), SyncState::Unknown);
        let behind = record(Some(old));
        assert_eq!(
            sync_state(Some(&new), Some(&behind), true),
            SyncState::Applying
        );
        // A removed bundle whose objects are still there is being removed.
        assert_eq!(sync_state(None, Some(&behind), true), SyncState::Applying);
        assert_eq!(
            sync_state(None, Some(&record(None)), true),
            SyncState::Synced
        );
        let failed = HealthRecord {
            failed: Some(ApplyFailure {
                content: Some(new),
                errors: vec!["apps/v1/Deployment web/web: spec.replicas: Invalid".into()],
                permanent: true,
            }),
            ..behind.clone()
        };
        assert_eq!(
            sync_state(Some(&new), Some(&failed), true),
            SyncState::ApplyFailed
        );
        // A failure of older content says nothing about the newer desired content.
        let newer = hash(3);
        assert_eq!(
            sync_state(Some(&newer), Some(&failed), true),
            SyncState::Applying
        );
        let drifted = HealthRecord {
            drifted: vec!["v1/ConfigMap web/settings".into()],
            ..synced.clone()
        };
        assert_eq!(
            sync_state(Some(&new), Some(&drifted), true),
            SyncState::OutOfSync
        );
        // A label someone added is out of sync too, though never corrected.
        let added = HealthRecord {
            added: vec![
                "v1/ConfigMap web/settings: metadata.labels.team added by kubectl-label".into(),
            ],
            ..synced
        };
        assert_eq!(
            sync_state(Some(&new), Some(&added), true),
            SyncState::OutOfSync
        );
    }
}
