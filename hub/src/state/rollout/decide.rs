//! One pass of the rollout controller, as a pure function of the replicated state and the
//! time: [`decide`] returns the commands that move every stage on, and when to look again.
//!
//! Each pass is [`decide`], a pure function of the replicated state and the time, whose
//! decisions are proposed as commands; nothing is remembered between passes but a cache of
//! parsed `flotilla.yaml`s. So a new leader, reading the same state, carries on exactly where
//! the old one stopped: no wave skipped, no cluster given a revision not promoted to it.
//!
//! - The pipeline (stages, their selectors, sources and policies) is read from the newest good
//!   revision's `flotilla.yaml` (`pipeline.rs`); a stage's content is the revision it is pinned
//!   to. On the very first good revision every stage is pinned to it and every cluster assigned
//!   it at once (nothing runs yet, so there is nothing to gate); a stage declared later starts
//!   where its upstream stage is.
//! - A stage's candidate (see `state::rollout::promotion::candidate`) is the head of the branch it
//!   tracks, or the newest revision its upstream stage passed. A candidate starts a rollout:
//!   at once with `approval: auto`, awaiting `flotilla approve` with `approval: manual` or when
//!   the deletion guard holds it (judged as `StartRollout` applies, `state::rollout::guard`;
//!   such a hold is never approved by policy, only by a person). While a
//!   rollout runs, a newer candidate waits for it to end (`supersede: afterRollout`, the
//!   default) or replaces it (`supersede: immediate`, on stages with automatic approval); a
//!   rollout paused by its own failure is replaced by a newer candidate on stages with automatic
//!   approval.
//! - A running rollout is driven by its judgement (`state::rollout::gate`): record clusters
//!   becoming healthy or unhealthy, fail it (Degraded, a health timeout, blocked too long),
//!   give the next batch of the current wave the target within `maxUnavailable`, begin the
//!   wave's soak once every cluster of it settled, pass the wave once the soak ran out.
//! - Clusters are assigned only revisions that have bundles for them: a stage without an active
//!   rollout gets its pin everywhere (clusters registered or moved into it later); during a
//!   rollout, a cluster that joined the stage and holds nothing gets the rollout's start.
//! - An active rollout whose stage the current `flotilla.yaml` no longer declares ends
//!   abandoned, its stage pinned back to the rollout's start; its clusters keep what they hold
//!   (a stage declared again moves on by a new, gated rollout).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::FleetSpec;
use flotilla_core::spec::{Approval, Stage as StageSpec, StageSource, Supersede};

use super::gate::{StageScope, judge};
use super::pipeline::{self, current_revision, head_if_rendered, short};
use super::promotion::{self, Start, stage_clusters};
use super::{Rollout, RolloutStatus};
use crate::state::signature;
use crate::state::source::RevisionRef;
use crate::state::stage::StageChange;
use crate::state::{Command, RolloutAction, RolloutStep, State, Timestamp};

/// How long a cluster must stay Healthy at a rollout's target before it counts as done: one
/// report flickering Healthy (say, health judged before a new revision's objects changed)
/// proves nothing.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Who the decisions' commands are recorded as.
const ACTOR: &str = "controller:rollout";

/// The source whose pipeline is driven: its name in the state and the branch it follows.
#[derive(Debug, Clone, Copy)]
pub struct Followed<'a> {
    /// The source's name (revisions are `name@commit`).
    pub name: &'a str,
    /// The branch it follows.
    pub branch: &'a str,
}

fn actor() -> String {
    ACTOR.to_owned()
}

/// Parsed `flotilla.yaml` of revisions, by revision: parsing is the only thing a pass would
/// otherwise repeat, and a revision's text never changes.
#[derive(Default)]
pub struct SpecCache {
    specs: HashMap<RevisionRef, Option<Arc<FleetSpec>>>,
}

impl SpecCache {
    fn get(&mut self, state: &State, revision: &RevisionRef) -> Option<Arc<FleetSpec>> {
        self.specs
            .entry(revision.clone())
            .or_insert_with(|| pipeline::spec_of(state, revision).map(Arc::new))
            .clone()
    }
}

/// What one pass decided.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    /// Commands to propose, in order; each is checked again when it applies.
    pub commands: Vec<Command>,
    /// When the decision changes by time alone.
    pub wake_at: Option<Timestamp>,
}

impl Decision {
    fn wake(&mut self, at: Option<Timestamp>) {
        if let Some(at) = at {
            self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
        }
    }
}

/// One pass: what every stage needs now, from the state and the time alone.
pub fn decide(
    state: &State,
    source: Followed<'_>,
    specs: &mut SpecCache,
    now: Timestamp,
    settle_ms: u64,
) -> Decision {
    let mut decision = Decision::default();
    let Some(current) = current_revision(state, source.name) else {
        return decision;
    };
    let Some(spec) = specs.get(state, &current) else {
        return decision;
    };
    if state.stages.values().all(|s| s.pinned.is_none()) {
        decision.commands = bootstrap(state, source, &spec, now);
        return decision;
    }
    decision
        .commands
        .extend(pin_new_stages(state, source, &spec, now));
    for stage in &spec.stages {
        if state
            .stages
            .get(&stage.name)
            .and_then(|s| s.pinned.as_ref())
            .is_none()
        {
            continue;
        }
        let clusters = stage_clusters(state, &spec, &stage.name);
        let mut stage_decision = Decision::default();
        promote(state, source, &spec, stage, now, &mut stage_decision);
        let starts = !stage_decision.commands.is_empty();
        if !starts
            && let Some((id, rollout)) = state.active_rollout(&stage.name)
            && rollout.status == RolloutStatus::Running
        {
            let scope = StageScope {
                clusters: &clusters,
                allow_empty: stage.allow_empty,
            };
            let judgement = judge(state, rollout, scope, now, settle_ms);
            stage_decision.wake(judgement.wake_at);
            stage_decision
                .commands
                .extend(drive(id, rollout, judgement, now));
        }
        // A rollout starting changes what the stage's clusters may be given: assignments
        // wait for the next pass, which sees it.
        if !starts {
            stage_decision
                .commands
                .extend(assignments(state, &stage.name, &clusters, now));
        }
        decision.wake(stage_decision.wake_at);
        decision.commands.extend(stage_decision.commands);
    }
    decision
        .commands
        .extend(abandon_undeclared(state, &spec, &current, now));
    decision
}

/// Active rollouts of stages the current `flotilla.yaml` no longer declares: nothing would
/// drive them, so they end abandoned (their stages pinned back to where they started).
fn abandon_undeclared(
    state: &State,
    spec: &FleetSpec,
    current: &RevisionRef,
    now: Timestamp,
) -> Vec<Command> {
    state
        .rollouts
        .iter()
        .filter(|(_, r)| r.is_active())
        .filter(|(_, r)| spec.stages.iter().all(|s| s.name != r.stage))
        .map(|(id, r)| Command::AbandonRollout {
            rollout: *id,
            reason: format!(
                "stage `{}` is not declared in flotilla.yaml at {}",
                r.stage,
                short(&current.commit)
            ),
            by: actor(),
            at: now,
        })
        .collect()
}

/// The first good revision: every stage pinned to it and every cluster of a stage assigned it
/// at once.
fn bootstrap(
    state: &State,
    source: Followed<'_>,
    spec: &FleetSpec,
    now: Timestamp,
) -> Vec<Command> {
    let Some(head) = head_if_rendered(state, source.name) else {
        return Vec::new();
    };
    // A stage requiring signatures the first revision lacks gets no pin, and its clusters
    // nothing, until a signed revision comes.
    let signed = |stage: &str| signature::check(state, stage, &head).is_ok();
    let mut commands: Vec<Command> = spec
        .stages
        .iter()
        .filter(|stage| signed(&stage.name))
        .map(|stage| Command::PinStage {
            stage: stage.name.clone(),
            revision: head.clone(),
            change: match stage.source {
                StageSource::Track { .. } => StageChange::Track,
                StageSource::PromoteFrom { .. } => StageChange::Promote,
            },
            by: actor(),
            reason: format!(
                "first good revision {}: nothing runs yet",
                short(&head.commit)
            ),
            at: now,
        })
        .collect();
    // A cluster no stage selects keeps what it has (here: nothing).
    let clusters: Vec<String> = state
        .clusters
        .iter()
        .filter(|(_, c)| matches!(spec.stage_for(&c.labels), Ok(Some(s)) if signed(&s.name)))
        .filter(|(name, _)| {
            state
                .revisions
                .get(&head)
                .is_some_and(|r| r.bundles_for(name).is_some())
        })
        .map(|(name, _)| name.clone())
        .collect();
    if !clusters.is_empty() {
        commands.push(Command::AssignRevision {
            clusters,
            revision: head,
            at: now,
        });
    }
    commands
}

/// A stage declared after the first revision starts where its upstream stage is (a tracking
/// stage, at the head); chains resolve over successive passes.
fn pin_new_stages(
    state: &State,
    source: Followed<'_>,
    spec: &FleetSpec,
    now: Timestamp,
) -> Vec<Command> {
    let pinned = |name: &str| state.stages.get(name).and_then(|s| s.pinned.clone());
    spec.stages
        .iter()
        .filter(|stage| pinned(&stage.name).is_none())
        .filter_map(|stage| {
            let (revision, change, reason) = match &stage.source {
                StageSource::PromoteFrom { stage: upstream } => (
                    pinned(upstream)?,
                    StageChange::Promote,
                    format!("new stage starts where `{upstream}` is"),
                ),
                StageSource::Track { branch } if *branch == source.branch => (
                    head_if_rendered(state, source.name)?,
                    StageChange::Track,
                    format!("new stage starts at the head of `{branch}`"),
                ),
                StageSource::Track { .. } => return None,
            };
            if signature::check(state, &stage.name, &revision).is_err() {
                return None;
            }
            Some(Command::PinStage {
                stage: stage.name.clone(),
                revision,
                change,
                by: actor(),
                reason,
                at: now,
            })
        })
        .collect()
}

/// Starts (or replaces) the stage's rollout when its candidate differs from where it is going.
fn promote(
    state: &State,
    source: Followed<'_>,
    spec: &FleetSpec,
    stage: &StageSpec,
    now: Timestamp,
    decision: &mut Decision,
) {
    let Some(candidate) = promotion::candidate(state, stage, source.name, source.branch) else {
        return;
    };
    // An unsigned or wrongly signed candidate never enters a stage that requires signatures;
    // status shows why (the state would refuse the rollout anyway).
    if signature::check(state, &stage.name, &candidate.revision).is_err() {
        return;
    }
    let manual = stage.rollout.approval == Approval::Manual;
    let active = state.active_rollout(&stage.name);
    if let Some((id, rollout)) = active
        && rollout.status == RolloutStatus::AwaitingApproval
        && rollout.to == candidate.revision
        && !manual
    {
        // A rollout the deletion guard held waits for a person, whatever the policy says.
        if rollout.deletion_hold.is_some() {
            return;
        }
        // The stage no longer asks for approval (its flotilla.yaml changed).
        decision.commands.push(Command::SetRolloutStatus {
            rollout: id,
            action: RolloutAction::ApproveByPolicy,
            by: actor(),
            reason: "the stage no longer asks for approval".to_owned(),
            at: now,
        });
        return;
    }
    let supersede = match active {
        None => {
            let pinned = state
                .stages
                .get(&stage.name)
                .and_then(|s| s.pinned.as_ref());
            if pinned == Some(&candidate.revision) {
                return;
            }
            false
        }
        Some((_, rollout)) if rollout.to == candidate.revision => return,
        // Nothing happened yet: the newer candidate takes its place.
        Some((_, rollout)) if rollout.status == RolloutStatus::AwaitingApproval => true,
        // Paused by its own failure: it goes nowhere without a person, and a newer commit is
        // how people fix forward, so on a stage with automatic approval the newer candidate
        // replaces it. On a manual stage it stays for the operator: a replacement awaiting
        // approval would leave the failed revision pinned for every cluster meanwhile.
        Some((_, rollout)) if rollout.status.paused_by_failure() && !manual => true,
        Some(_) if stage.rollout.supersede == Supersede::Immediate && !manual => true,
        Some(_) => return,
    };
    decision.commands.push(promotion::start_rollout(
        state,
        spec,
        stage,
        Start {
            to: &candidate.revision,
            change: candidate.change,
            await_approval: manual,
            supersede,
            by: &actor(),
            reason: &candidate.reason,
            at: now,
        },
    ));
}

/// The next step of a running rollout, from its judgement.
fn drive(
    id: u64,
    rollout: &Rollout,
    judgement: crate::state::rollout::gate::Judgement,
    now: Timestamp,
) -> Vec<Command> {
    let step = |step: RolloutStep| {
        vec![Command::RolloutStep {
            rollout: id,
            step,
            at: now,
        }]
    };
    if let Some(reason) = judgement.failure {
        return vec![Command::FailRollout {
            rollout: id,
            reason,
            by: actor(),
            at: now,
        }];
    }
    if !judgement.marks_unhealthy.is_empty() {
        return step(RolloutStep::Unhealthy {
            clusters: judgement.marks_unhealthy,
        });
    }
    if !judgement.marks_healthy.is_empty() {
        return step(RolloutStep::Healthy {
            clusters: judgement.marks_healthy,
        });
    }
    if !judgement.next_batch.is_empty() {
        return step(RolloutStep::Assign {
            wave: rollout.current,
            clusters: judgement.next_batch,
        });
    }
    match rollout.current_wave() {
        Some(wave) if judgement.wave_settled => match wave.healthy_at {
            None => step(RolloutStep::WaveHealthy {
                wave: rollout.current,
            }),
            Some(at) if now.0 >= at.0.saturating_add(wave.soak_ms) => step(RolloutStep::WaveDone {
                wave: rollout.current,
            }),
            Some(_) => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Assignments outside rollouts: with no rollout running or paused, every cluster of the stage
/// is brought to the pin; during one, a cluster that joined the stage and holds nothing gets
/// the rollout's start. Only revisions with bundles for a cluster are assigned to it.
fn assignments(
    state: &State,
    stage: &str,
    clusters: &std::collections::BTreeSet<String>,
    now: Timestamp,
) -> Vec<Command> {
    let running = state
        .active_rollout(stage)
        .filter(|(_, r)| r.status != RolloutStatus::AwaitingApproval)
        .map(|(_, r)| r);
    let mut wanted: BTreeMap<RevisionRef, Vec<String>> = BTreeMap::new();
    for name in clusters {
        let Some(cluster) = state.clusters.get(name) else {
            continue;
        };
        let desired = match running {
            None => state.stages.get(stage).and_then(|s| s.pinned.as_ref()),
            Some(rollout) => {
                let planned = rollout.waves.iter().any(|w| w.clusters.contains(name));
                if planned || cluster.assigned.is_some() {
                    continue;
                }
                rollout.from.as_ref()
            }
        };
        let Some(desired) = desired else {
            continue;
        };
        let has_bundles = state
            .revisions
            .get(desired)
            .is_some_and(|r| r.bundles_for(name).is_some());
        if cluster.assigned.as_ref() != Some(desired) && has_bundles {
            wanted
                .entry(desired.clone())
                .or_default()
                .push(name.clone());
        }
    }
    wanted
        .into_iter()
        .map(|(revision, clusters)| Command::AssignRevision {
            clusters,
            revision,
            at: now,
        })
        .collect()
}

#[cfg(test)]
mod tests;
