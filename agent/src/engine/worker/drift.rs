//! The drift half of a bundle's task: watch observations update health and raise suspicion,
//! and suspected objects are confirmed against the live object before drift is corrected or
//! reported.

use futures::{StreamExt, stream};
use serde_json::Value;
use tokio::time::Instant;

use super::Worker;
use crate::bundle::{BundleRevision, DriftMode};
use crate::drift::{added_fields, changed_fields, describe_added, other_manager, project};
use crate::health::{ObjectHealth, assess};
use crate::object::ObjectRef;
use crate::plan::PlannedObject;
use crate::report::{Event, ObjectMessage};
use crate::watch::Observation;

impl Worker {
    pub(super) fn observe(&mut self, observation: Observation) {
        let Some(enforced) = &self.enforced else {
            return;
        };
        match observation {
            Observation::Live(id, live) => {
                let Some(object) = enforced.objects.get(&id) else {
                    return;
                };
                let drifted = project(&object.planned.body, &live) != object.reference;
                // Whether fields added by others appeared, changed or went: confirmed by a
                // read like drift, since this event may predate Flotilla's own apply.
                let added = describe_added(&added_fields(&object.planned.body, &live));
                let added_changed = self
                    .added
                    .get(&id)
                    .map_or(!added.is_empty(), |a| *a != added);
                self.health.insert(id.clone(), assess(&id, &live));
                if drifted || added_changed {
                    self.suspect(id);
                } else {
                    self.suspects.remove(&id);
                    self.reported_drift.remove(&id);
                }
            }
            Observation::Gone(id) => {
                if enforced.objects.contains_key(&id) {
                    self.health.insert(id.clone(), ObjectHealth::missing());
                    self.suspect(id);
                }
            }
            Observation::Listed {
                group,
                kind,
                present,
            } => {
                let absent: Vec<ObjectRef> = enforced
                    .objects
                    .keys()
                    .filter(|id| id.group == group && id.kind == kind && !present.contains(*id))
                    .cloned()
                    .collect();
                // Absent from a list may only mean the list predates the apply: confirm first.
                for id in absent {
                    self.suspect(id);
                }
            }
        }
    }

    fn suspect(&mut self, id: ObjectRef) {
        self.suspects.insert(id);
        if self.drift_at.is_none() {
            self.drift_at = Some(Instant::now() + self.shared.config.drift_debounce);
        }
    }

    /// Confirms suspected drift against the live objects, then corrects or reports it.
    pub(super) async fn handle_drift(&mut self) {
        self.drift_at = None;
        let suspects = std::mem::take(&mut self.suspects);
        let Some(enforced) = &self.enforced else {
            return;
        };
        let cluster = &self.shared.cluster;
        let calls: Vec<_> = suspects
            .into_iter()
            .filter_map(|id| {
                let object = enforced.objects.get(&id)?;
                Some(async move {
                    let live = cluster.get(&object.planned.kind, &id).await;
                    (id, live)
                })
            })
            .collect();
        let checks: Vec<(ObjectRef, Result<Option<Value>, _>)> = stream::iter(calls)
            .buffer_unordered(self.shared.config.concurrency.max(1))
            .collect()
            .await;
        let mut drifted: Vec<(ObjectRef, String)> = Vec::new();
        let mut unchecked = Vec::new();
        for (id, live) in checks {
            let Some(object) = enforced.objects.get(&id) else {
                continue;
            };
            match live {
                Ok(None) => {
                    self.health.insert(id.clone(), ObjectHealth::missing());
                    self.added.remove(&id);
                    drifted.push((id, "deleted".into()));
                }
                Ok(Some(live)) => {
                    self.health.insert(id.clone(), assess(&id, &live));
                    // Additive drift is recorded to be reported, never corrected: it does not
                    // join `drifted`, so it never causes a re-apply.
                    let added = describe_added(&added_fields(&object.planned.body, &live));
                    if added.is_empty() {
                        self.added.remove(&id);
                    } else {
                        self.added.insert(id.clone(), added);
                    }
                    let changed =
                        changed_fields(&object.reference, &project(&object.planned.body, &live));
                    if !changed.is_empty() {
                        let by = other_manager(&live)
                            .map(|manager| format!(" (by {manager})"))
                            .unwrap_or_default();
                        drifted.push((id, format!("{}{by}", changed.join(", "))));
                    }
                }
                Err(error) => {
                    tracing::warn!(bundle = %self.name, object = %id, %error, "cannot check drift");
                    unchecked.push(id);
                }
            }
        }
        let revision = enforced.revision.clone();
        for id in unchecked {
            self.suspect(id);
        }
        drifted.sort();
        if !drifted.is_empty() {
            match revision.drift {
                DriftMode::Report => self.report_drift(&revision, drifted),
                DriftMode::Correct => self.correct_drift(&revision, drifted).await,
            }
        }
        // In both modes, and never re-applied: see `crate::drift::added_fields`.
        self.publish_added(&revision);
        self.publish_health();
    }

    fn report_drift(&mut self, revision: &BundleRevision, drifted: Vec<(ObjectRef, String)>) {
        let mut fresh = Vec::new();
        for (id, what) in drifted {
            if self.reported_drift.get(&id) != Some(&what) {
                fresh.push(ObjectMessage::new(&id, what.clone()));
                self.reported_drift.insert(id, what);
            }
        }
        if !fresh.is_empty() {
            self.report(revision, Event::DriftDetected { objects: fresh });
        }
    }

    async fn correct_drift(
        &mut self,
        revision: &BundleRevision,
        drifted: Vec<(ObjectRef, String)>,
    ) {
        self.report(
            revision,
            Event::DriftDetected {
                objects: drifted
                    .iter()
                    .map(|(id, what)| ObjectMessage::new(id, what.clone()))
                    .collect(),
            },
        );
        let Some(enforced) = &self.enforced else {
            return;
        };
        let objects: Vec<&PlannedObject> = drifted
            .iter()
            .filter_map(|(id, _)| enforced.objects.get(id).map(|o| &o.planned))
            .collect();
        let (answers, failures) = self.shared.cluster.apply(&objects, false).await;
        let mut corrected = Vec::with_capacity(answers.len());
        if let Some(enforced) = self.enforced.as_mut() {
            for (id, answer) in answers {
                if let Some(object) = enforced.objects.get_mut(&id) {
                    object.reference = project(&object.planned.body, &answer);
                    self.health.insert(id.clone(), assess(&id, &answer));
                    corrected.push(id.to_string());
                }
            }
        }
        corrected.sort();
        if failures.is_empty() {
            self.drift_failures = 0;
        }
        if !corrected.is_empty() {
            self.report(revision, Event::DriftCorrected { objects: corrected });
        }
        if !failures.is_empty() {
            let errors = failures
                .iter()
                .map(|(id, error)| ObjectMessage::new(id, error.to_string()))
                .collect();
            self.report(revision, Event::DriftCorrectionFailed { errors });
            // Tried again with a doubling delay (up to the permanent-failure retry), so a
            // refusal that persists — an admission webhook, a quota — is not re-sent and
            // re-reported every debounce.
            self.drift_failures = self.drift_failures.saturating_add(1);
            let config = &self.shared.config;
            let delay = config
                .drift_debounce
                .saturating_mul(2u32.saturating_pow(self.drift_failures))
                .min(config.permanent_retry);
            for (id, _) in failures {
                self.suspects.insert(id);
            }
            let at = Instant::now() + delay;
            self.drift_at = Some(self.drift_at.map_or(at, |due| due.max(at)));
        }
    }
}
