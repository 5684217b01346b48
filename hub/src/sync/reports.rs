//! Agent reports into raft: each stream folds its agent's events into the latest state of
//! every bundle ([`BundleReports`]); the node's [`ReportBatcher`] proposes, every batch
//! interval, one `RecordHealth` with the bundles whose state differs from what the replicated
//! state already records. Time alone is not a change, so a steady fleet writes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use flotilla_core::{ContentHash, Health};
use flotilla_proto::v1 as proto;
use flotilla_proto::v1::report::Event;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::Shared;
use crate::state::health::{
    ApplyFailure, DriftKind, DriftNote, HealthKey, HealthRecord, HealthReport,
};
use crate::state::{Command, State, Timestamp};

/// Most reports in one `RecordHealth`, so a burst becomes several modest raft entries.
const MAX_BATCH: usize = 1000;

/// Longest human message recorded per bundle.
const MAX_MESSAGE_CHARS: usize = 2000;

/// The latest known state of each bundle of one cluster, as its agent reports it.
pub(super) struct BundleReports {
    cluster: String,
    bundles: BTreeMap<String, Latest>,
}

#[derive(Debug, Clone, Default)]
struct Latest {
    applied: Option<ContentHash>,
    health: Option<Health>,
    unhealthy: Vec<String>,
    failed: Option<ApplyFailure>,
    drifted: Vec<String>,
    last_drift: Option<DriftNote>,
    drift_corrections: u64,
    added: Vec<String>,
    at: Timestamp,
}

impl Latest {
    fn from_record(record: &HealthRecord) -> Self {
        Latest {
            applied: record.applied,
            health: Some(record.health),
            // The message is a rendering of unhealthy objects (after the apply errors, which
            // `failed` holds); the next health or apply event replaces it whole.
            unhealthy: match record.message.strip_prefix(&failure_text(&record.failed)) {
                Some("") => Vec::new(),
                Some(rest) => vec![rest.trim_start_matches("; ").to_owned()],
                None => vec![record.message.clone()],
            },
            failed: record.failed.clone(),
            drifted: record.drifted.clone(),
            last_drift: record.drift_log.last().cloned(),
            drift_corrections: record.drift_corrections,
            added: record.added.clone(),
            at: record.at,
        }
    }

    fn message(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let failure = failure_text(&self.failed);
        if !failure.is_empty() {
            parts.push(failure);
        }
        parts.extend(self.unhealthy.iter().cloned());
        let mut message = parts.join("; ");
        if message.chars().count() > MAX_MESSAGE_CHARS {
            message = message.chars().take(MAX_MESSAGE_CHARS).collect();
            message.push('…');
        }
        message
    }
}

/// How a failed apply reads at the start of a bundle's message; empty when none failed.
fn failure_text(failed: &Option<ApplyFailure>) -> String {
    match failed {
        Some(failure) if !failure.errors.is_empty() => {
            format!("apply failed: {}", failure.errors.join("; "))
        }
        _ => String::new(),
    }
}

fn object_lines(messages: &[proto::ObjectMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| match (m.object.is_empty(), m.message.is_empty()) {
            (true, _) => m.message.clone(),
            (false, true) => m.object.clone(),
            (false, false) => format!("{}: {}", m.object, m.message),
        })
        .collect()
}

/// Why a report was not taken.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReportError {
    /// A field does not parse.
    #[error("report for bundle '{bundle}': {problem}")]
    Malformed {
        /// The bundle named.
        bundle: String,
        /// What is wrong.
        problem: String,
    },
}

impl BundleReports {
    /// The cluster whose reports these are.
    pub(super) fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Starts from what the replicated state records for `cluster`.
    pub(super) fn new(cluster: &str, state: &State) -> Self {
        let from = HealthKey {
            cluster: cluster.to_owned(),
            bundle: String::new(),
        };
        let bundles = state
            .health
            .range(from..)
            .take_while(|(key, _)| key.cluster == cluster)
            .map(|(key, record)| (key.bundle.clone(), Latest::from_record(record)))
            .collect();
        BundleReports {
            cluster: cluster.to_owned(),
            bundles,
        }
    }

    /// Folds one event in and returns the bundle's resulting state, to be recorded if it
    /// changed anything.
    pub(super) fn fold(&mut self, report: &proto::Report) -> Result<HealthReport, ReportError> {
        let malformed = |problem: String| ReportError::Malformed {
            bundle: report.bundle.clone(),
            problem,
        };
        if report.bundle.is_empty() {
            return Err(malformed("no bundle named".into()));
        }
        let hash = |text: &str| -> Result<Option<ContentHash>, ReportError> {
            match text {
                "" => Ok(None),
                text => text
                    .parse()
                    .map(Some)
                    .map_err(|e: flotilla_core::hash::InvalidContentHash| malformed(e.to_string())),
            }
        };
        let health = |text: &str| -> Result<Option<Health>, ReportError> {
            match text {
                "" => Ok(None),
                text => text
                    .parse()
                    .map(Some)
                    .map_err(|e: flotilla_core::health::UnknownHealth| malformed(e.to_string())),
            }
        };
        let latest = self.bundles.entry(report.bundle.clone()).or_default();
        let mut next = latest.clone();
        next.at = Timestamp(u64::try_from(report.at_ms).unwrap_or(0));
        match &report.event {
            None => return Err(malformed("no event".into())),
            Some(Event::Apply(result)) if result.ok => {
                let applied = hash(&report.content_hash)?;
                if applied != next.applied {
                    // The health known so far was judged for other content. The agent's
                    // verdict for this content follows every apply; until it arrives the
                    // content is just applied, which is Progressing, not Unknown (nothing is
                    // unknown about it, and a healthy apply must not flicker through Unknown).
                    next.health = Some(Health::Progressing);
                    next.unhealthy = vec!["applied; its health is being judged".to_owned()];
                }
                next.applied = applied;
                // Only an apply of the content that failed answers its failure: a restarted
                // agent falling back to the last good revision has not fixed the newer one.
                if next.failed.as_ref().is_some_and(|f| f.content == applied) {
                    next.failed = None;
                }
            }
            Some(Event::Apply(result)) => {
                next.failed = Some(ApplyFailure {
                    content: hash(&report.content_hash)?,
                    errors: object_lines(&result.errors),
                    permanent: result.permanent,
                });
            }
            Some(Event::Health(h)) => {
                next.health = health(&h.health)?;
                next.unhealthy = object_lines(&h.unhealthy);
            }
            Some(Event::Drift(d)) if d.added => {
                let added = object_lines(&d.objects);
                // Seen for the first time (or changed): the bundle's drift note, and so one
                // event. The list replaces the last; its clearing is no event.
                if !added.is_empty() && added != next.added {
                    next.last_drift = Some(DriftNote {
                        objects: added.clone(),
                        kind: DriftKind::Added,
                        at: next.at,
                    });
                }
                next.added = added;
            }
            Some(Event::Drift(d)) if d.corrected => {
                next.drifted.clear();
                next.drift_corrections += 1;
                // The correction follows the detection it answers, whose detail it keeps.
                let objects = match next.last_drift.take() {
                    Some(note) if note.kind == DriftKind::Found => note.objects,
                    _ => object_lines(&d.objects),
                };
                next.last_drift = Some(DriftNote {
                    objects,
                    kind: DriftKind::Corrected,
                    at: next.at,
                });
            }
            Some(Event::Drift(d)) if d.correction_failed => {
                // Still drifted: the objects found before stay in `drifted`.
                next.last_drift = Some(DriftNote {
                    objects: object_lines(&d.objects),
                    kind: DriftKind::CorrectionFailed,
                    at: next.at,
                });
            }
            Some(Event::Drift(d)) => {
                next.drifted = d.objects.iter().map(|o| o.object.clone()).collect();
                next.last_drift = Some(DriftNote {
                    objects: object_lines(&d.objects),
                    kind: DriftKind::Found,
                    at: next.at,
                });
            }
            Some(Event::State(s)) => {
                next.applied = hash(&s.applied_hash)?;
                if let Some(h) = health(&s.health)? {
                    next.health = Some(h);
                    next.unhealthy = object_lines(&s.unhealthy);
                }
                // The errors are those of the desired content (`Report.content_hash`).
                next.failed = (!s.errors.is_empty())
                    .then(|| -> Result<ApplyFailure, ReportError> {
                        Ok(ApplyFailure {
                            content: hash(&report.content_hash)?,
                            errors: object_lines(&s.errors),
                            permanent: s.errors_permanent,
                        })
                    })
                    .transpose()?;
            }
            Some(Event::Removed(_)) => {
                next = Latest {
                    health: Some(Health::Missing),
                    unhealthy: vec!["removed from the cluster".into()],
                    drift_corrections: next.drift_corrections,
                    at: next.at,
                    ..Latest::default()
                };
            }
        }
        *latest = next;
        Ok(HealthReport {
            key: HealthKey {
                cluster: self.cluster.clone(),
                bundle: report.bundle.clone(),
            },
            applied: latest.applied,
            health: latest.health.unwrap_or(Health::Unknown),
            message: latest.message(),
            drifted: latest.drifted.clone(),
            failed: latest.failed.clone(),
            last_drift: latest.last_drift.clone(),
            drift_corrections: latest.drift_corrections,
            added: latest.added.clone(),
            at: latest.at,
        })
    }
}

/// Whether recording `report` would change what `state` holds (time alone does not count).
pub(super) fn changes(state: &State, report: &HealthReport) -> bool {
    if !state.clusters.contains_key(&report.key.cluster) {
        return false;
    }
    match state.health.get(&report.key) {
        None => true,
        Some(record) => {
            record.at <= report.at
                && (record.applied != report.applied
                    || record.health != report.health
                    || record.message != report.message
                    || record.drifted != report.drifted
                    || record.failed != report.failed
                    || report
                        .last_drift
                        .as_ref()
                        .is_some_and(|note| record.drift_log.last() != Some(note))
                    || record.drift_corrections != report.drift_corrections
                    || record.added != report.added)
        }
    }
}

/// Report changes waiting to be proposed, newest per cluster and bundle.
#[derive(Default)]
pub(super) struct ReportBatcher {
    pending: Mutex<BTreeMap<HealthKey, HealthReport>>,
    wake: Notify,
}

impl ReportBatcher {
    /// Queues a bundle's state; an older one for the same bundle is replaced.
    pub(super) fn submit(&self, report: HealthReport) {
        let mut pending = self.pending.lock();
        let newer = pending
            .get(&report.key)
            .is_none_or(|queued| queued.at <= report.at);
        if newer {
            pending.insert(report.key.clone(), report);
        }
        drop(pending);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<HealthReport> {
        std::mem::take(&mut *self.pending.lock())
            .into_values()
            .collect()
    }
}

/// Proposes queued changes until the node's sync side stops: at once when the batcher was idle,
/// then at most once per batch interval, so a lone change is recorded without delay and a burst
/// becomes one `RecordHealth` per interval. A batch that fails to commit is queued again
/// (unless newer reports replaced it meanwhile).
pub(super) async fn run(shared: Arc<Shared>) {
    let interval = shared.config.report_batch_interval;
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            () = shared.reports.wake.notified() => {}
        }
        flush(&shared).await;
        // What arrives meanwhile waits for the next batch.
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

async fn flush(shared: &Shared) {
    let queued = shared.reports.take();
    let changed: Vec<HealthReport> = {
        let state = shared.node.state();
        queued.into_iter().filter(|r| changes(&state, r)).collect()
    };
    for batch in changed.chunks(MAX_BATCH) {
        let command = Command::RecordHealth {
            reports: batch.to_vec(),
        };
        match shared.node.propose(&command).await {
            Ok(_) => shared.counters.health_batch(batch.len()),
            Err(e) => {
                tracing::warn!(error = %e, reports = batch.len(), "health batch not recorded; will retry");
                for report in batch {
                    shared.reports.submit(report.clone());
                }
            }
        }
    }
}
