//! The rollout rules, checked again as each decision applies.
//!
//! The rollout controller decides on the state it read; by the time its command applies, other
//! entries may have committed in between: a health report, an agent going offline or coming
//! back, an operator's pause. So every decision that moves clusters or passes a gate is judged
//! again here, on the state it applies to and at the time it carries, with the same judgement
//! the controller used (`gate::judge`); a decision the judgement no longer supports is refused
//! with [`CommandError::Outdated`], leaving the state untouched, and the controller decides
//! again. Apply stays deterministic: the judgement reads only the state, the command's time and
//! the `flotilla.yaml` recorded in the state.
//!
//! What is checked:
//! - giving clusters the target (`Assign`): they are waiting in the current wave of a running
//!   rollout, the rollout is not failing, and the clusters that were available before do not
//!   take the stage past `maxUnavailable` (offline, unreachable and unsettled clusters count);
//! - marks (`Healthy`/`Unhealthy`): the cluster really is (or is no longer) Healthy at the target;
//! - the soak beginning (`WaveHealthy`) and the wave passing (`WaveDone`): every cluster of the
//!   wave is settled (Healthy at the target for the settle period) and nothing is failing;
//! - a rollout starting by promotion: the upstream stage passed the target;
//! - an assignment outside rollouts: the cluster's stage has no running or paused rollout that
//!   plans it, and the revision is the stage's pin (or the rollout's start, for a cluster that
//!   joined the stage during one and holds nothing).
//!
//! Failing a rollout and rolling back are not re-judged: they only move clusters back to where
//! they were, so one decided on an older state is still safe.

use std::collections::BTreeSet;

use flotilla_core::FleetSpec;
use flotilla_core::spec::{Approval, Supersede};

use super::decide::SETTLE;
use super::gate::{Judgement, StageScope, judge};
use super::pipeline::{self, short};
use super::promotion::{stage_clusters, upstream_gate};
use super::{Rollout, RolloutStatus};
use crate::state::command::RolloutStep;
use crate::state::source::RevisionRef;
use crate::state::stage::StageChange;
use crate::state::{CommandError, State, Timestamp, millis};

/// The pipeline in force for revisions of `source`: the current revision's `flotilla.yaml`.
fn pipeline_of(state: &State, source: &str) -> Option<FleetSpec> {
    pipeline::current(state, source).map(|(_, spec)| spec)
}

/// The judgement of rollout `id` on this state at `at`, as the controller would make it.
pub(super) fn judgement(state: &State, rollout: &Rollout, at: Timestamp) -> Judgement {
    let spec = pipeline_of(state, &rollout.to.source);
    let stage = spec
        .as_ref()
        .and_then(|s| s.stages.iter().find(|s| s.name == rollout.stage));
    let clusters = match (&spec, stage) {
        (Some(spec), Some(_)) => stage_clusters(state, spec, &rollout.stage),
        _ => BTreeSet::new(),
    };
    let scope = StageScope {
        clusters: &clusters,
        allow_empty: stage.is_some_and(|s| s.allow_empty),
    };
    judge(state, rollout, scope, at, millis(SETTLE))
}

fn outdated(id: u64, step: &RolloutStep, why: String) -> CommandError {
    CommandError::Outdated(format!("rollout {id} cannot {}: {why}", step.name()))
}

/// Checks a step of running rollout `id` against the judgement of the state it applies to.
pub(super) fn step(
    state: &State,
    id: u64,
    rollout: &Rollout,
    step: &RolloutStep,
    at: Timestamp,
) -> Result<(), CommandError> {
    let judged = judgement(state, rollout, at);
    let refuse = |why: String| Err(outdated(id, step, why));
    match step {
        RolloutStep::Assign { clusters, .. } => {
            if let Some(failure) = &judged.failure {
                return refuse(format!("it is failing: {failure}"));
            }
            let budget =
                (rollout.gate.max_unavailable as usize).saturating_sub(judged.unavailable.len());
            let mut taking = 0;
            for cluster in clusters {
                if !judged.assignable.contains(cluster) {
                    return refuse(format!(
                        "cluster '{cluster}' is not waiting for the target in the current wave"
                    ));
                }
                if !judged.unavailable.contains_key(cluster) {
                    taking += 1;
                }
            }
            if taking > budget {
                let unavailable = judged
                    .unavailable
                    .iter()
                    .map(|(c, why)| format!("{c} {why}"))
                    .collect::<Vec<_>>();
                return refuse(format!(
                    "maxUnavailable {} allows {budget} more now, not {taking} ({} unavailable: {})",
                    rollout.gate.max_unavailable,
                    unavailable.len(),
                    unavailable.join(", ")
                ));
            }
        }
        RolloutStep::Healthy { clusters } => {
            if let Some(cluster) = clusters.iter().find(|c| !judged.marks_healthy.contains(*c)) {
                return refuse(format!(
                    "cluster '{cluster}' is not Healthy at {}",
                    short(&rollout.to.commit)
                ));
            }
        }
        RolloutStep::Unhealthy { clusters } => {
            if let Some(cluster) = clusters
                .iter()
                .find(|c| !judged.marks_unhealthy.contains(*c))
            {
                return refuse(format!(
                    "cluster '{cluster}' is Healthy at {} again",
                    short(&rollout.to.commit)
                ));
            }
        }
        RolloutStep::WaveHealthy { .. } | RolloutStep::WaveDone { .. } => {
            if let Some(failure) = &judged.failure {
                return refuse(format!("it is failing: {failure}"));
            }
            if !judged.wave_settled {
                return refuse("not every cluster of the wave is settled Healthy".to_owned());
            }
            if let Some(cluster) = judged
                .marks_unhealthy
                .first()
                .or(judged.marks_healthy.first())
            {
                return refuse(format!(
                    "cluster '{cluster}' changed health since it was last marked"
                ));
            }
        }
    }
    Ok(())
}

/// Checks that a rollout may start: by promotion, only a revision the upstream stage passed
/// (or from the source a tracking stage follows); and, when the controller decided it, as the
/// stage's policy says now — awaiting approval on a manual stage, replacing a running rollout
/// only where the stage supersedes immediately.
pub(super) fn start(state: &State, new: &super::NewRollout<'_>) -> Result<(), CommandError> {
    let (stage, to, change) = (new.stage, new.to, new.change);
    if change == StageChange::ForcePromote {
        return Ok(());
    }
    let Some(spec) = pipeline_of(state, &to.source) else {
        return Err(CommandError::Outdated(format!(
            "no pipeline of source '{}' is rendered",
            to.source
        )));
    };
    let Some(declared) = spec.stages.iter().find(|s| s.name == stage) else {
        return Err(CommandError::Outdated(format!(
            "stage '{stage}' is not declared in the current flotilla.yaml"
        )));
    };
    upstream_gate(state, declared, &to.source, to).map_err(CommandError::Outdated)?;
    if !new.by.starts_with("controller:") {
        return Ok(());
    }
    let policy = &declared.rollout;
    if policy.approval == Approval::Manual && !new.await_approval {
        return Err(CommandError::Outdated(format!(
            "stage '{stage}' asks for approval now"
        )));
    }
    let replaces_running = state
        .active_rollout(stage)
        .is_some_and(|(_, r)| r.status == RolloutStatus::Running);
    if new.supersede && replaces_running && policy.supersede != Supersede::Immediate {
        return Err(CommandError::Outdated(format!(
            "stage '{stage}' lets a running rollout finish before a newer one starts now"
        )));
    }
    Ok(())
}

/// Checks that the policy still lets a waiting rollout of `stage` run without a person: the
/// stage no longer asks for approval.
pub(super) fn approve_by_policy(state: &State, rollout: &Rollout) -> Result<(), CommandError> {
    let manual = pipeline_of(state, &rollout.to.source)
        .and_then(|spec| spec.stages.into_iter().find(|s| s.name == rollout.stage))
        .is_none_or(|s| s.rollout.approval == Approval::Manual);
    if manual {
        return Err(CommandError::Outdated(format!(
            "stage '{}' asks for approval",
            rollout.stage
        )));
    }
    Ok(())
}

/// Checks an assignment outside rollouts: each cluster belongs to a stage whose running or
/// paused rollout does not plan it, and gets the stage's pin — or, during a rollout, the
/// rollout's start if it holds nothing yet.
pub(in crate::state) fn assignment(
    state: &State,
    clusters: &[String],
    revision: &RevisionRef,
) -> Result<(), CommandError> {
    let Some(spec) = pipeline_of(state, &revision.source) else {
        return Ok(());
    };
    for name in clusters {
        let Some(cluster) = state.clusters.get(name) else {
            continue;
        };
        let Some(stage) = spec.stage_for(&cluster.labels).ok().flatten() else {
            return Err(CommandError::Outdated(format!(
                "cluster '{name}' is in no stage of the current flotilla.yaml"
            )));
        };
        let moving = state
            .active_rollout(&stage.name)
            .filter(|(_, r)| r.status != RolloutStatus::AwaitingApproval);
        let allowed = match moving {
            Some((id, rollout)) => {
                if rollout.waves.iter().any(|w| w.clusters.contains(name)) {
                    return Err(CommandError::Outdated(format!(
                        "cluster '{name}' is in rollout {id} of stage '{}' ({}): only the \
                         rollout gives it a revision",
                        stage.name,
                        rollout.status.name()
                    )));
                }
                if cluster.assigned.is_some() {
                    return Err(CommandError::Outdated(format!(
                        "cluster '{name}' already holds a revision while rollout {id} of stage \
                         '{}' is active",
                        stage.name
                    )));
                }
                rollout.from.as_ref()
            }
            None => state
                .stages
                .get(&stage.name)
                .and_then(|s| s.pinned.as_ref()),
        };
        if allowed != Some(revision) {
            return Err(CommandError::Outdated(format!(
                "cluster '{name}' of stage '{}' may be given {}, not {}",
                stage.name,
                allowed.map_or("nothing".to_owned(), |r| short(&r.commit).to_owned()),
                short(&revision.commit)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
