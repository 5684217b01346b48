//! Failures and rollbacks: a failed health gate pauses a rollout or returns its clusters to the
//! start; an operator's rollback returns a stage to an earlier revision at once. Either way what
//! the stage moves away from is marked failed for it, so it is never promoted there again by
//! itself. Also here: where `flotilla rollback` may return a stage to, and which clusters it
//! moves.

use flotilla_core::FleetSpec;
use flotilla_core::spec::{Stage as StageSpec, StageSource};

use super::pipeline::short;
use super::promotion::{rendered, stage_clusters, upstream_gate};
use super::{OnFailure, RolloutStatus, audit, require_bundles, rollout_mut};
use crate::state::notice::NoticeKind;
use crate::state::source::RevisionRef;
use crate::state::stage::{PinRecord, StageChange, set_pin};
use crate::state::{CommandError, State, Timestamp};

/// A failed health gate: pause, or return every cluster of the rollout to its start.
pub(in crate::state) fn fail(
    state: &mut State,
    id: u64,
    reason: &str,
    by: &str,
    at: Timestamp,
) -> Result<(), CommandError> {
    let rollout = state
        .rollouts
        .get(&id)
        .ok_or(CommandError::UnknownRollout(id))?;
    if rollout.status != RolloutStatus::Running {
        return Err(rollout.refuse(id, "fail"));
    }
    let stage = rollout.stage.clone();
    audit(
        state,
        by,
        "rollout.fail",
        &stage,
        format!("rollout {id}: {reason}"),
        at,
    );
    let rollout = &state.rollouts[&id];
    let then = match (rollout.gate.on_failure, &rollout.from) {
        (OnFailure::Rollback, Some(_)) => "rolling back",
        _ => "paused",
    };
    let commit = rollout.to.commit.clone();
    let message = format!(
        "rollout {id} to {} failed ({then}): {reason}",
        short(&commit)
    );
    super::notice(
        state,
        NoticeKind::RolloutFailed,
        (&stage, Some(id)),
        &commit,
        at,
        &message,
    );
    let rollout = &state.rollouts[&id];
    match (rollout.gate.on_failure, rollout.from.clone()) {
        (OnFailure::Rollback, Some(from)) => {
            // Every cluster of the plan holding anything but the start goes back: those this
            // rollout gave its target, and those a rollout it superseded had moved.
            let clusters: Vec<String> = rollout
                .waves
                .iter()
                .flat_map(|w| &w.clusters)
                .filter(|c| {
                    state
                        .clusters
                        .get(*c)
                        .is_some_and(|c| c.assigned.is_some() && c.assigned.as_ref() != Some(&from))
                })
                .filter(|c| require_bundles(state, c, &from).is_ok())
                .cloned()
                .collect();
            return_stage(
                state,
                ReturnTo {
                    stage: &stage,
                    to: &from,
                    clusters: &clusters,
                    by,
                    reason: &format!("rollout {id} failed: {reason}"),
                    at,
                    rollout: Some(id),
                },
            );
        }
        _ => {
            let rollout = rollout_mut(state, id)?;
            rollout.status = RolloutStatus::Paused {
                by: by.to_owned(),
                reason: format!("failed: {reason}"),
            };
            rollout.updated_at = at;
        }
    }
    Ok(())
}

/// An active rollout whose stage left `flotilla.yaml`: it ends abandoned and a stage that had
/// moved to the target is pinned back to the start (nothing is marked failed: no gate judged
/// it). Clusters keep what they hold.
pub(in crate::state) fn abandon(
    state: &mut State,
    id: u64,
    reason: &str,
    by: &str,
    at: Timestamp,
) -> Result<(), CommandError> {
    let rollout = state
        .rollouts
        .get(&id)
        .ok_or(CommandError::UnknownRollout(id))?;
    if !rollout.is_active() {
        return Err(rollout.refuse(id, "abandon"));
    }
    let stage = rollout.stage.clone();
    let moved = rollout.status != RolloutStatus::AwaitingApproval;
    let back = rollout.from.clone().filter(|_| moved);
    let rollout = rollout_mut(state, id)?;
    rollout.status = RolloutStatus::Abandoned {
        reason: reason.to_owned(),
    };
    rollout.updated_at = at;
    let commit = rollout.to.commit.clone();
    let message = format!("rollout {id} to {} abandoned: {reason}", short(&commit));
    super::notice(
        state,
        NoticeKind::RolloutAbandoned,
        (&stage, Some(id)),
        &commit,
        at,
        &message,
    );
    if let Some(from) = back {
        set_pin(
            state,
            &stage,
            PinRecord {
                revision: from,
                change: StageChange::Rollback,
                by: by.to_owned(),
                reason: format!("rollout {id} abandoned: {reason}"),
                at,
                rollout: Some(id),
            },
        );
    }
    audit(
        state,
        by,
        "rollout.abandon",
        &stage,
        format!("rollout {id}: {reason}"),
        at,
    );
    Ok(())
}

/// Everything `RollBack` carries.
pub(in crate::state) struct RollBack<'a> {
    pub(in crate::state) stage: &'a str,
    pub(in crate::state) to: &'a RevisionRef,
    pub(in crate::state) clusters: &'a [String],
    pub(in crate::state) by: &'a str,
    pub(in crate::state) reason: &'a str,
    pub(in crate::state) at: Timestamp,
}

/// An operator's rollback: pins a stage back to an earlier revision and assigns it to the given
/// clusters at once; the active rollout, if any, ends rolled back.
pub(in crate::state) fn roll_back(
    state: &mut State,
    back: RollBack<'_>,
) -> Result<(), CommandError> {
    let stage = state
        .stages
        .get(back.stage)
        .ok_or_else(|| CommandError::UnknownStage(back.stage.to_owned()))?;
    crate::state::source::require_rendered(state, back.to)?;
    let active = state.active_rollout(back.stage).map(|(id, _)| id);
    if active.is_none() && stage.pinned.as_ref() == Some(back.to) {
        return Err(CommandError::Invalid(format!(
            "stage '{}' is already pinned to {} and has no rollout to roll back",
            back.stage, back.to
        )));
    }
    for cluster in back.clusters {
        require_bundles(state, cluster, back.to)?;
    }
    return_stage(
        state,
        ReturnTo {
            stage: back.stage,
            to: back.to,
            clusters: back.clusters,
            by: back.by,
            reason: back.reason,
            at: back.at,
            rollout: active,
        },
    );
    Ok(())
}

struct ReturnTo<'a> {
    stage: &'a str,
    to: &'a RevisionRef,
    clusters: &'a [String],
    by: &'a str,
    reason: &'a str,
    at: Timestamp,
    rollout: Option<u64>,
}

/// Returns a stage to `to`: the active rollout ends rolled back, what the stage moves away from
/// (its pin and the rollout's target) is marked failed for it — so it is never promoted to it
/// automatically again — the stage is pinned to `to` and the clusters are assigned it.
fn return_stage(state: &mut State, back: ReturnTo<'_>) {
    let mut failed: Vec<RevisionRef> = state
        .stages
        .get(back.stage)
        .and_then(|s| s.pinned.clone())
        .into_iter()
        .collect();
    if let Some((id, rollout)) = state.active_rollout(back.stage) {
        failed.push(rollout.to.clone());
        // The notice concerns what the stage leaves: the rollout's target, else its pin.
        if let Some(rollout) = state.rollouts.get_mut(&id) {
            rollout.status = RolloutStatus::RolledBack {
                reason: back.reason.to_owned(),
            };
            rollout.updated_at = back.at;
        }
    }
    // What the stage leaves: the newest of its pin and the rollout's target that is not where
    // it goes back to.
    let failed_commit = failed
        .iter()
        .rev()
        .find(|r| *r != back.to)
        .map(|r| r.commit.clone());
    if let Some(stage) = state.stages.get_mut(back.stage) {
        for revision in failed.into_iter().filter(|r| r != back.to) {
            stage.passed.remove(&revision);
            stage.failed.insert(revision);
        }
    }
    crate::state::fleet::set_assigned(state, back.clusters, back.to, back.at);
    set_pin(
        state,
        back.stage,
        PinRecord {
            revision: back.to.clone(),
            change: StageChange::Rollback,
            by: back.by.to_owned(),
            reason: back.reason.to_owned(),
            at: back.at,
            rollout: back.rollout,
        },
    );
    if let Some(left) = failed_commit {
        let message = format!(
            "stage {} rolled back from {} to {} by {}: {}",
            back.stage,
            short(&left),
            short(&back.to.commit),
            back.by,
            back.reason
        );
        super::notice(
            state,
            NoticeKind::RolloutRolledBack,
            (back.stage, back.rollout),
            &left,
            back.at,
            &message,
        );
    }
    audit(
        state,
        back.by,
        "rollback",
        back.stage,
        format!(
            "to {} ({} clusters): {}",
            back.to,
            back.clusters.len(),
            back.reason
        ),
        back.at,
    );
}

/// Where `flotilla rollback STAGE` returns to when no revision is named: the start of the
/// active rollout, else the revision the stage was pinned to before its current one.
pub fn default_rollback(state: &State, stage: &str) -> Option<RevisionRef> {
    if let Some((_, rollout)) = state.active_rollout(stage) {
        return rollout.from.clone();
    }
    let record = state.stages.get(stage)?;
    let current = record.pinned.as_ref()?;
    record
        .history
        .iter()
        .rev()
        .map(|pin| &pin.revision)
        .find(|r| *r != current && rendered(state, r))
        .cloned()
}

/// Whether `stage` may be rolled back to `revision`: one it ran before (in its history), one
/// its upstream passed, or for a tracking stage any revision of its branch. Anything else is
/// a promotion, with its gate.
pub fn rollback_gate(
    state: &State,
    stage: &StageSpec,
    source: &str,
    revision: &RevisionRef,
) -> Result<(), String> {
    let ran_here = state
        .stages
        .get(&stage.name)
        .is_some_and(|s| s.history.iter().any(|pin| &pin.revision == revision));
    if ran_here || upstream_gate(state, stage, source, revision).is_ok() {
        return Ok(());
    }
    Err(format!(
        "stage `{}` never ran revision {}{}; roll back only to a revision it ran before (`flotilla history {}`), or promote it",
        stage.name,
        short(&revision.commit),
        match &stage.source {
            StageSource::PromoteFrom { stage: upstream } =>
                format!(" and `{upstream}` has not passed it"),
            StageSource::Track { .. } => String::new(),
        },
        stage.name
    ))
}

/// The clusters a rollback of `stage` to `to` assigns: every cluster of the stage that `to`
/// has bundles for.
pub fn rollback_clusters(
    state: &State,
    spec: &FleetSpec,
    stage: &str,
    to: &RevisionRef,
) -> Vec<String> {
    let Some(revision) = state.revisions.get(to) else {
        return Vec::new();
    };
    stage_clusters(state, spec, stage)
        .into_iter()
        .filter(|c| revision.bundles_for(c).is_some())
        .collect()
}
