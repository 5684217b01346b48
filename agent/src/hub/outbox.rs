//! Reports on their way to the hub: engine events queued while no stream is open (bounded,
//! dropping the oldest), the conversion to protocol messages, and the state snapshot sent when
//! a stream opens.

use std::collections::VecDeque;

use flotilla_proto::v1 as proto;
use flotilla_proto::v1::report::Event as Wire;

use crate::engine::{BundleStatus, Phase};
use crate::report::{Event, Report};

/// Most report events kept while no hub is reachable. Older ones are dropped: the snapshot
/// sent on reconnect tells the hub where every bundle stands anyway.
pub(crate) const OUTBOX_LIMIT: usize = 1024;

/// Most reports in one message.
pub(crate) const MAX_REPORTS_PER_MESSAGE: usize = 256;

/// Report events not yet sent.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queued: VecDeque<proto::Report>,
}

impl Outbox {
    /// Queues an engine event; returns how many old events were dropped to make room.
    pub(crate) fn push(&mut self, report: &Report) -> usize {
        let Some(wire) = to_wire(report) else {
            return 0;
        };
        self.queued.push_back(wire);
        let mut dropped = 0;
        while self.queued.len() > OUTBOX_LIMIT {
            self.queued.pop_front();
            dropped += 1;
        }
        dropped
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Takes up to one message's worth of reports.
    pub(crate) fn take_batch(&mut self) -> Vec<proto::Report> {
        let n = self.queued.len().min(MAX_REPORTS_PER_MESSAGE);
        self.queued.drain(..n).collect()
    }
}

/// The protocol message for an engine event, or `None` for events the hub does not record.
pub(crate) fn to_wire(report: &Report) -> Option<proto::Report> {
    match &report.event {
        // A removal is not an apply: the hub must not take the removed revision as applied.
        Event::Removed { pruned } => Some(proto::Report {
            bundle: report.bundle.clone(),
            revision: report.revision.clone(),
            content_hash: report.content_hash.clone(),
            at_ms: report.at_ms,
            event: Some(Wire::Removed(proto::BundleRemoved {
                pruned: u32::try_from(*pruned).unwrap_or(u32::MAX),
            })),
            cluster: String::new(),
        }),
        _ => report.to_proto(),
    }
}

/// Where every bundle stands, as reports: what a hub node needs when a stream opens, since it
/// missed whatever happened while the agent was connected elsewhere or not at all.
pub(crate) fn snapshot(status: &[BundleStatus], at_ms: i64) -> Vec<proto::Report> {
    status
        .iter()
        .filter(|s| s.phase != Phase::Removing)
        .flat_map(|s| {
            let (health, unhealthy) = match &s.health {
                Some(h) => (
                    h.health.to_string(),
                    h.unhealthy
                        .iter()
                        .map(|(object, oh)| proto::ObjectMessage {
                            object: object.to_string(),
                            message: format!("{}: {}", oh.health, oh.message),
                        })
                        .collect(),
                ),
                None => (String::new(), Vec::new()),
            };
            let state = proto::Report {
                bundle: s.name.clone(),
                revision: s.revision.clone(),
                content_hash: s.content_hash.clone(),
                at_ms,
                event: Some(Wire::State(proto::BundleState {
                    applied_hash: s.applied_hash.clone().unwrap_or_default(),
                    health,
                    unhealthy,
                    errors: s
                        .errors
                        .iter()
                        .map(|e| proto::ObjectMessage {
                            object: e.object.clone(),
                            message: e.message.clone(),
                        })
                        .collect(),
                    errors_permanent: s.phase == Phase::Failed,
                })),
                cluster: String::new(),
            };
            // The fields others added are sent whole, even when none are left, so the hub
            // forgets what cleared while it was not listening.
            let added = s.applied_hash.is_some().then(|| proto::Report {
                bundle: s.name.clone(),
                revision: s.revision.clone(),
                content_hash: s.content_hash.clone(),
                at_ms,
                event: Some(Wire::Drift(proto::DriftReport {
                    objects: s
                        .added
                        .iter()
                        .map(|m| proto::ObjectMessage {
                            object: m.object.clone(),
                            message: m.message.clone(),
                        })
                        .collect(),
                    corrected: false,
                    added: true,
                    correction_failed: false,
                })),
                cluster: String::new(),
            });
            std::iter::once(state).chain(added)
        })
        .collect()
}
