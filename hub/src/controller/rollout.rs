//! The rollout controller, in its simplest form: a stage that tracks the hub's branch is pinned to
//! each new head that rendered, and all its clusters are assigned that revision at once.
//!
//! - The pipeline (which stages exist, which clusters each selects, where each takes revisions
//!   from) is read from the newest good revision's `flotilla.yaml`: the head when it rendered,
//!   else the newest rendered revision. A failed head changes nothing.
//! - On the very first good revision every stage is pinned to it, `promoteFrom` stages too:
//!   nothing runs yet, so there is nothing to promote from.
//! - Afterwards `promoteFrom` stages keep their pin (promotion is an operator's or a later
//!   controller's decision); a stage declared later starts at its upstream stage's pin.
//! - A stage tracking another branch than the hub's is never pinned by tracking.
//! - Every cluster of a pinned stage is assigned the stage's revision once the revision has
//!   bundles for it (a cluster registered later waits for the render controller's amendment).
//!   A cluster no stage selects keeps what it was assigned.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::spec::{FleetSpec, StageSource};
use futures::future::BoxFuture;

use crate::controller::source::SourceConfig;
use crate::controller::{Controller, ControllerContext, Wake};
use crate::pipeline::{self, current_revision, head_if_rendered, short};
use crate::state::source::RevisionRef;
use crate::state::stage::StageChange;
use crate::state::{Command, State, Timestamp};

/// How often the controller looks again when nothing changed.
const IDLE_RECHECK: Duration = Duration::from_secs(5);

/// Pins tracking stages to new heads and assigns their clusters.
pub struct RolloutController {
    source: SourceConfig,
}

impl RolloutController {
    /// A controller following `source`'s branch.
    pub fn new(source: SourceConfig) -> Self {
        RolloutController { source }
    }
}

impl Controller for RolloutController {
    fn name(&self) -> &'static str {
        "rollout"
    }

    fn run(&self, context: ControllerContext) -> BoxFuture<'static, ()> {
        let run = Run {
            source: self.source.clone(),
            specs: HashMap::new(),
            context,
        };
        Box::pin(run.run())
    }
}

struct Run {
    source: SourceConfig,
    /// Parsed `flotilla.yaml` of revisions, by revision.
    specs: HashMap<RevisionRef, Option<Arc<FleetSpec>>>,
    context: ControllerContext,
}

impl Run {
    async fn run(mut self) {
        let mut applied = self.context.node.watch_applied();
        loop {
            let commands = {
                let state = self.context.node.state();
                let now = self.context.clock.now();
                plan(&state, &self.source, &mut self.specs, now)
            };
            for command in commands {
                if let Err(e) = self.context.node.propose(&command).await {
                    tracing::warn!(command = command.kind(), error = %e, "rollout step not recorded");
                    break;
                }
            }
            if self.context.wait(&mut applied, IDLE_RECHECK).await == Wake::Stop {
                return;
            }
        }
    }
}

/// The commands that bring pins and assignments in line with the newest good revision.
fn plan(
    state: &State,
    source: &SourceConfig,
    specs: &mut HashMap<RevisionRef, Option<Arc<FleetSpec>>>,
    at: Timestamp,
) -> Vec<Command> {
    let Some(current) = current_revision(state, &source.name) else {
        return Vec::new();
    };
    let Some(spec) = spec_of(state, &current, specs) else {
        return Vec::new();
    };
    let head = head_if_rendered(state, &source.name);
    let actor = ControllerContext::actor("rollout");
    let nothing_pinned = state.stages.values().all(|s| s.pinned.is_none());
    let mut pins: BTreeMap<String, RevisionRef> = state
        .stages
        .iter()
        .filter_map(|(name, stage)| stage.pinned.clone().map(|p| (name.clone(), p)))
        .collect();
    let mut commands = Vec::new();
    let mut pin = |pins: &mut BTreeMap<String, RevisionRef>,
                   stage: &str,
                   revision: &RevisionRef,
                   change: StageChange,
                   reason: String| {
        pins.insert(stage.to_owned(), revision.clone());
        commands.push(Command::PinStage {
            stage: stage.to_owned(),
            revision: revision.clone(),
            change,
            by: actor.clone(),
            reason,
            at,
        });
    };
    if let (true, Some(head)) = (nothing_pinned, &head) {
        for stage in &spec.stages {
            let change = match stage.source {
                StageSource::Track { .. } => StageChange::Track,
                StageSource::PromoteFrom { .. } => StageChange::Promote,
            };
            pin(
                &mut pins,
                &stage.name,
                head,
                change,
                format!(
                    "first good revision {}: nothing runs yet",
                    short(&head.commit)
                ),
            );
        }
    }
    for stage in &spec.stages {
        if let (StageSource::Track { branch }, Some(head)) = (&stage.source, &head)
            && *branch == source.branch
            && pins.get(&stage.name) != Some(head)
        {
            pin(
                &mut pins,
                &stage.name,
                head,
                StageChange::Track,
                format!("branch `{branch}` moved to {}", short(&head.commit)),
            );
        }
    }
    // A stage declared after the first revision starts where its upstream stage is; chains
    // resolve over successive passes of this loop.
    for _ in 0..spec.stages.len() {
        for stage in &spec.stages {
            if let StageSource::PromoteFrom { stage: upstream } = &stage.source
                && !pins.contains_key(&stage.name)
                && let Some(revision) = pins.get(upstream).cloned()
            {
                pin(
                    &mut pins,
                    &stage.name,
                    &revision,
                    StageChange::Promote,
                    format!("new stage starts where `{upstream}` is"),
                );
            }
        }
    }
    let mut assignments: BTreeMap<RevisionRef, Vec<String>> = BTreeMap::new();
    for (name, cluster) in &state.clusters {
        let Ok(Some(stage)) = spec.stage_for(&cluster.labels) else {
            continue;
        };
        let Some(desired) = pins.get(&stage.name) else {
            continue;
        };
        let has_bundles = state
            .revisions
            .get(desired)
            .is_some_and(|r| r.bundles_for(name).is_some());
        if cluster.assigned.as_ref() != Some(desired) && has_bundles {
            assignments
                .entry(desired.clone())
                .or_default()
                .push(name.clone());
        }
    }
    for (revision, clusters) in assignments {
        commands.push(Command::AssignRevision {
            clusters,
            revision,
            at,
        });
    }
    commands
}

fn spec_of(
    state: &State,
    revision: &RevisionRef,
    specs: &mut HashMap<RevisionRef, Option<Arc<FleetSpec>>>,
) -> Option<Arc<FleetSpec>> {
    specs
        .entry(revision.clone())
        .or_insert_with(|| pipeline::spec_of(state, revision).map(Arc::new))
        .clone()
}

#[cfg(test)]
mod tests;
