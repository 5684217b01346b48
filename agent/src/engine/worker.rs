//! One bundle's task: applies its desired revision, reacts to watch observations with health
//! and drift handling, retries transient failures, and removes the bundle when asked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{BundleStatus, Handle, Phase, Shared};
use crate::apply::{Applied, ApplyContext, Failed, apply_revision};
use crate::bundle::BundleRevision;
use crate::catalog::Kind;
use crate::drift::{added_fields, describe_added, project};
use crate::health::{BundleHealth, ObjectHealth, assess, roll_up};
use crate::inventory::Inventory;
use crate::object::ObjectRef;
use crate::plan::PlannedObject;
use crate::prune::{PruneOutcome, prune};
use crate::report::{Event, ObjectMessage, Report};
use crate::state::BundleState;
use crate::watch::Observation;

mod drift;

/// What the engine asks of a bundle's task.
pub(super) enum Command {
    /// The desired revision changed: apply it.
    DesiredChanged,
    /// Prune everything the bundle owns and forget it.
    Remove,
    /// Stop, leaving the cluster as it is.
    Shutdown,
}

/// The revision being enforced: what was last applied completely.
struct Enforced {
    revision: BundleRevision,
    objects: BTreeMap<ObjectRef, EnforcedObject>,
}

struct EnforcedObject {
    planned: PlannedObject,
    /// The applied object projected onto its managed fields: what drift is measured against.
    reference: Value,
}

/// The task's state.
pub(super) struct Worker {
    shared: Arc<Shared>,
    bundles: Arc<Mutex<HashMap<String, Handle>>>,
    state: Arc<Mutex<BundleState>>,
    status: Arc<Mutex<BundleStatus>>,
    commands: mpsc::UnboundedReceiver<Command>,
    observations: mpsc::UnboundedReceiver<Observation>,
    name: String,
    inventory: Option<Inventory>,
    enforced: Option<Enforced>,
    health: BTreeMap<ObjectRef, ObjectHealth>,
    reported_health: Option<BundleHealth>,
    /// Objects an observation says may have drifted, checked when `drift_at` comes.
    suspects: BTreeSet<ObjectRef>,
    drift_at: Option<Instant>,
    /// Corrections failed in a row: the next try waits longer each time.
    drift_failures: u32,
    /// What was last reported as drift per object, so `report` mode says it once.
    reported_drift: HashMap<ObjectRef, String>,
    /// Fields other managers added, per object with any, as reported (`describe_added`).
    added: BTreeMap<ObjectRef, String>,
    /// The list last sent in `FieldsAdded`, so it is sent only when it changes.
    reported_added: Vec<ObjectMessage>,
    apply_pending: bool,
    retry_at: Option<Instant>,
    failures: u32,
}

impl Worker {
    pub(super) fn new(
        shared: Arc<Shared>,
        bundles: Arc<Mutex<HashMap<String, Handle>>>,
        state: Arc<Mutex<BundleState>>,
        status: Arc<Mutex<BundleStatus>>,
        commands: mpsc::UnboundedReceiver<Command>,
        observations: mpsc::UnboundedReceiver<Observation>,
    ) -> Worker {
        let name = state.lock().desired.name.clone();
        let apply_pending = !state.lock().removing;
        Worker {
            shared,
            bundles,
            state,
            status,
            commands,
            observations,
            name,
            inventory: None,
            enforced: None,
            health: BTreeMap::new(),
            reported_health: None,
            suspects: BTreeSet::new(),
            drift_at: None,
            drift_failures: 0,
            reported_drift: HashMap::new(),
            added: BTreeMap::new(),
            reported_added: Vec::new(),
            apply_pending,
            retry_at: None,
            failures: 0,
        }
    }
}

/// Runs the task until it is shut down or its bundle is removed.
pub(super) async fn run(mut w: Worker) {
    loop {
        if w.apply_pending && w.retry_at.is_none() {
            w.apply_pending = false;
            w.apply_desired().await;
        }
        let drift_at = w.drift_at;
        let retry_at = w.retry_at;
        tokio::select! {
            command = w.commands.recv() => match command {
                None | Some(Command::Shutdown) => return,
                Some(Command::DesiredChanged) => {
                    w.apply_pending = true;
                    w.retry_at = None;
                    w.failures = 0;
                }
                Some(Command::Remove) => {
                    if w.remove().await {
                        return;
                    }
                }
            },
            Some(observation) = w.observations.recv() => {
                w.observe(observation);
                // Take everything already queued before judging health once.
                while let Ok(observation) = w.observations.try_recv() {
                    w.observe(observation);
                }
                w.publish_health();
            }
            () = sleep_until(drift_at), if drift_at.is_some() => w.handle_drift().await,
            () = sleep_until(retry_at), if retry_at.is_some() => {
                w.retry_at = None;
                if w.state.lock().removing {
                    if w.remove().await {
                        return;
                    }
                } else {
                    w.apply_pending = true;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

impl Worker {
    fn report(&self, revision: &BundleRevision, event: Event) {
        self.shared.report(Report {
            bundle: self.name.clone(),
            revision: revision.revision.clone(),
            content_hash: revision.content_hash.clone(),
            at_ms: self.shared.clock.now().signed_millis(),
            event,
        });
    }

    fn context(&self) -> ApplyContext<'_> {
        ApplyContext {
            cluster: &self.shared.cluster,
            catalog: &self.shared.catalog,
            inventories: &self.shared.inventories,
            owners: &self.shared.owners,
            concurrency: self.shared.config.concurrency,
            establish_timeout: self.shared.config.establish_timeout,
        }
    }

    /// The bundle's inventory, read from the cluster the first time.
    async fn inventory(&mut self) -> Result<Inventory, Failed> {
        if let Some(inventory) = self.inventory.take() {
            return Ok(inventory);
        }
        self.shared
            .take_inventory(&self.name)
            .await
            .map_err(|e| Failed {
                errors: vec![ObjectMessage::bundle(e.to_string())],
                nothing_written: true,
                transient: e.is_transient(),
            })
    }

    fn set_status(&self, change: impl FnOnce(&mut BundleStatus)) {
        change(&mut self.status.lock());
    }

    async fn apply_desired(&mut self) {
        let (desired, last_applied) = {
            let state = self.state.lock();
            if state.removing {
                return;
            }
            (state.desired.clone(), state.last_applied.clone())
        };
        self.set_status(|s| {
            s.revision.clone_from(&desired.revision);
            s.content_hash.clone_from(&desired.content_hash);
            s.phase = Phase::Applying;
        });
        let failed = match self.apply(&desired).await {
            Ok(()) => return,
            Err(failed) => failed,
        };
        let retry_in = failed.transient.then(|| self.schedule_retry());
        if retry_in.is_none() && failed.nothing_written {
            // Reported as permanent (the rollout fails at once); tried again much later in
            // case what refused it was fixed outside Git. Only when nothing was written: a
            // revision refused half-way would otherwise rewrite its first tiers every time,
            // against the revision still enforced.
            self.retry_at = Some(Instant::now() + self.shared.config.permanent_retry);
        }
        let phase = if retry_in.is_some() {
            Phase::Retrying
        } else {
            Phase::Failed
        };
        self.set_status(|s| {
            s.phase = phase;
            s.errors.clone_from(&failed.errors);
        });
        self.report(
            &desired,
            Event::ApplyFailed {
                errors: failed.errors,
                nothing_written: failed.nothing_written,
                retry_in,
            },
        );
        // A restarted agent whose newest revision cannot be applied goes on enforcing the
        // last one that could, which is what the cluster holds.
        if retry_in.is_none()
            && self.enforced.is_none()
            && let Some(previous) = last_applied.filter(|p| *p != desired)
            && let Err(failed) = self.apply(&previous).await
        {
            self.report(
                &previous,
                Event::ApplyFailed {
                    errors: failed.errors,
                    nothing_written: failed.nothing_written,
                    retry_in: None,
                },
            );
        }
    }

    /// Applies one revision and, when it succeeds, enforces it.
    async fn apply(&mut self, revision: &BundleRevision) -> Result<(), Failed> {
        self.report(
            revision,
            Event::Applying {
                objects: revision.objects.len(),
            },
        );
        let mut inventory = self.inventory().await?;
        let result = apply_revision(&self.context(), revision, &mut inventory).await;
        self.inventory = Some(inventory);
        let applied = result?;
        self.enforce(revision, applied);
        Ok(())
    }

    fn schedule_retry(&mut self) -> std::time::Duration {
        let config = &self.shared.config;
        let delay = config
            .revision_retry_initial
            .saturating_mul(2u32.saturating_pow(self.failures))
            .min(config.revision_retry_max);
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(Instant::now() + delay);
        delay
    }

    fn enforce(&mut self, revision: &BundleRevision, applied: Applied) {
        self.report_pruned(revision, &applied.pruned);
        let mut objects = BTreeMap::new();
        self.added.clear();
        for planned in applied.plan.objects {
            let Some(answer) = applied.answers.get(&planned.id) else {
                continue;
            };
            self.health
                .insert(planned.id.clone(), assess(&planned.id, answer));
            // The apply's answer says who owns what now: fields the new revision sets are no
            // longer added by others.
            let added = describe_added(&added_fields(&planned.body, answer));
            if !added.is_empty() {
                self.added.insert(planned.id.clone(), added);
            }
            let reference = project(&planned.body, answer);
            objects.insert(planned.id.clone(), EnforcedObject { planned, reference });
        }
        self.health.retain(|id, _| objects.contains_key(id));
        self.suspects.retain(|id| objects.contains_key(id));
        self.reported_drift.clear();
        let mut kinds: Vec<Kind> = objects.values().map(|o| o.planned.kind.clone()).collect();
        kinds.sort_by(|a, b| {
            a.resource
                .api_version
                .cmp(&b.resource.api_version)
                .then(a.resource.kind.cmp(&b.resource.kind))
        });
        kinds.dedup();
        self.shared.watches.set_kinds(&self.name, &kinds);
        let count = objects.len();
        self.enforced = Some(Enforced {
            revision: revision.clone(),
            objects,
        });

        let is_desired = {
            let mut state = self.state.lock();
            state.last_applied = Some(revision.clone());
            if let Err(error) = self.shared.save(&state) {
                tracing::error!(bundle = %self.name, %error, "cannot persist the applied revision");
            }
            state.desired == *revision
        };
        self.set_status(|s| {
            s.applied_revision = Some(revision.revision.clone());
            s.applied_hash = Some(revision.content_hash.clone());
            if is_desired {
                s.phase = Phase::Applied;
                s.errors.clear();
            }
        });
        if applied.pruned.failed.is_empty() {
            self.failures = 0;
        } else {
            // Objects that could not be pruned stay in the inventory; try again later.
            self.schedule_retry();
        }
        self.report(
            revision,
            Event::Applied {
                applied: count,
                pruned: applied.pruned.deleted.len(),
            },
        );
        // The hub forgets a bundle's health when its applied content changes, so health is
        // published after every apply, even when the verdict is the one sent before.
        self.reported_health = None;
        self.publish_health();
        self.publish_added(revision);
    }

    /// Sends the objects with fields added by others when that list changed.
    pub(super) fn publish_added(&mut self, revision: &BundleRevision) {
        let objects: Vec<ObjectMessage> = self
            .added
            .iter()
            .map(|(id, what)| ObjectMessage::new(id, what.clone()))
            .collect();
        if objects == self.reported_added {
            return;
        }
        self.reported_added.clone_from(&objects);
        self.set_status(|s| s.added.clone_from(&objects));
        self.report(revision, Event::FieldsAdded { objects });
    }

    fn report_pruned(&self, revision: &BundleRevision, outcome: &PruneOutcome) {
        if outcome.deleted.is_empty() && outcome.kept.is_empty() && outcome.failed.is_empty() {
            return;
        }
        self.report(
            revision,
            Event::Pruned {
                objects: outcome.deleted.iter().map(ToString::to_string).collect(),
                kept: outcome
                    .kept
                    .iter()
                    .map(|(id, reason)| ObjectMessage::new(id, reason.clone()))
                    .collect(),
                failed: outcome
                    .failed
                    .iter()
                    .map(|(id, error)| ObjectMessage::new(id, error.to_string()))
                    .collect(),
            },
        );
    }

    fn publish_health(&mut self) {
        let Some(enforced) = &self.enforced else {
            return;
        };
        let health = roll_up(
            enforced
                .objects
                .keys()
                .filter_map(|id| Some((id, self.health.get(id)?))),
        );
        if self.reported_health.as_ref() == Some(&health) {
            return;
        }
        self.reported_health = Some(health.clone());
        self.set_status(|s| s.health = Some(health.clone()));
        let revision = enforced.revision.clone();
        self.report(&revision, Event::HealthChanged(health));
    }

    /// Prunes everything the bundle owns. Returns whether the task is done.
    async fn remove(&mut self) -> bool {
        self.set_status(|s| s.phase = Phase::Removing);
        let desired = self.state.lock().desired.clone();
        let mut inventory = match self.inventory().await {
            Ok(inventory) => inventory,
            Err(failed) => {
                let retry_in = self.schedule_retry();
                self.report(
                    &desired,
                    Event::ApplyFailed {
                        errors: failed.errors,
                        nothing_written: true,
                        retry_in: Some(retry_in),
                    },
                );
                return false;
            }
        };
        self.enforced = None;
        self.added.clear();
        self.reported_added.clear();
        self.set_status(|s| s.added.clear());
        self.shared.watches.set_kinds(&self.name, &[]);
        let entries = inventory.objects.values().cloned().collect();
        let outcome = prune(
            &self.shared.cluster,
            &self.shared.catalog,
            &self.name,
            entries,
            self.shared.config.concurrency,
        )
        .await;
        self.report_pruned(&desired, &outcome);
        for id in outcome
            .deleted
            .iter()
            .chain(outcome.kept.iter().map(|(id, _)| id))
        {
            inventory.objects.remove(id);
        }
        let finished = if outcome.failed.is_empty() {
            self.shared.inventories.delete(&self.name).await
        } else {
            inventory.bundle.clone_from(&self.name);
            self.shared
                .inventories
                .write(&inventory)
                .await
                .map_err(|e| match e {
                    crate::inventory::InventoryError::Api(api) => api,
                    other => crate::retry::ApiError::Unexpected(other.to_string()),
                })
        };
        self.shared.owners.set(&self.name, inventory.objects.keys());
        if !outcome.failed.is_empty() || finished.is_err() {
            let mut errors: Vec<ObjectMessage> = outcome
                .failed
                .iter()
                .map(|(id, error)| ObjectMessage::new(id, error.to_string()))
                .collect();
            if let Err(error) = finished {
                errors.push(ObjectMessage::bundle(format!("inventory: {error}")));
            }
            let retry_in = self.schedule_retry();
            self.report(
                &desired,
                Event::ApplyFailed {
                    errors,
                    nothing_written: false,
                    retry_in: Some(retry_in),
                },
            );
            self.inventory = Some(inventory);
            return false;
        }
        self.inventory = Some(Inventory::default());
        self.health.clear();
        self.reported_health = None;
        let pruned = outcome.deleted.len();
        let mut bundles = self.bundles.lock();
        let state = self.state.lock();
        if !state.removing {
            // A new revision arrived while removing: apply it from scratch.
            self.apply_pending = true;
            return false;
        }
        bundles.remove(&self.name);
        self.shared.routes.lock().remove(&self.name);
        if let Some(dir) = &self.shared.state
            && let Err(error) = dir.remove(&self.name)
        {
            tracing::error!(bundle = %self.name, %error, "cannot forget the removed bundle");
        }
        drop(state);
        drop(bundles);
        self.report(&desired, Event::Removed { pruned });
        true
    }
}
