//! Stage actions of the Admin API — promote, roll back, pause, resume, approve — and a stage's
//! history. The caller was checked by the handler (`api.rs`) before any of these runs. Each
//! check of the state that can refuse is made here, on this node's replica, so the refusal
//! says why and what to do; the command proposed is checked again when it applies.

use flotilla_core::FleetSpec;
use flotilla_core::spec::Stage as StageSpec;
use flotilla_proto::v1::{
    AdminPin, AdminPromoteRequest, AdminRollbackRequest, AdminStageActionReply,
    AdminStageActionRequest, AdminStageHistory,
};
use tonic::Status;

use super::caller::Caller;
use super::{diff, progress, propose_status};
use crate::context::HubContext;
use crate::state::rollout::RolloutStatus;
use crate::state::rollout::pipeline::{self, short};
use crate::state::rollout::promotion::{self, Start};
use crate::state::rollout::rollback;
use crate::state::source::{RevisionRef, RevisionStatus};
use crate::state::stage::StageChange;
use crate::state::{Command, RolloutAction, State};

/// Events of a stage's history kept in an answer.
const HISTORY_EVENTS: usize = 100;

/// The current pipeline and the stage in it, or why not.
fn pipeline_stage(
    hub: &HubContext,
    state: &State,
    name: &str,
) -> Result<(FleetSpec, StageSpec), Status> {
    let source = source_name(hub)?;
    let Some((revision, spec)) = pipeline::current(state, source) else {
        return Err(Status::failed_precondition(
            "no revision has rendered yet, so there are no stages; `flotilla revisions` shows why",
        ));
    };
    let Some(stage) = spec.stage(name).cloned() else {
        let names: Vec<&str> = spec.stages.iter().map(|s| s.name.as_str()).collect();
        return Err(Status::not_found(format!(
            "no stage `{name}` in flotilla.yaml at {}; its stages are: {}",
            short(&revision.commit),
            names.join(", ")
        )));
    };
    if state
        .stages
        .get(name)
        .and_then(|s| s.pinned.as_ref())
        .is_none()
    {
        return Err(Status::failed_precondition(format!(
            "stage `{name}` has no revision yet; it gets its first when its upstream has one"
        )));
    }
    Ok((spec, stage))
}

fn source_name(hub: &HubContext) -> Result<&str, Status> {
    hub.source.as_ref().map(|s| s.name.as_str()).ok_or_else(|| {
        Status::failed_precondition("this hub follows no repository (start it with --repo)")
    })
}

/// Resolves a commit or prefix to a revision that rendered.
fn rendered_revision(state: &State, text: &str) -> Result<RevisionRef, Status> {
    let revision = diff::resolve(state, text)?;
    match state.revisions.get(&revision).map(|r| &r.status) {
        Some(RevisionStatus::Rendered { .. }) => Ok(revision),
        Some(RevisionStatus::Failed { error, .. }) => Err(Status::failed_precondition(format!(
            "revision {} did not render ({}); it can reach no cluster",
            short(&revision.commit),
            error.describe()
        ))),
        _ => Err(Status::failed_precondition(format!(
            "revision {} is not rendered yet; try again in a moment",
            short(&revision.commit)
        ))),
    }
}

/// Longest reason an operator may give; it is replicated and kept in history and audit.
pub(super) const MAX_REASON_BYTES: usize = 1024;

fn reason_or(reason: String, default: &str) -> Result<String, Status> {
    if reason.len() > MAX_REASON_BYTES {
        return Err(Status::invalid_argument(format!(
            "--reason is {} bytes; keep it under {MAX_REASON_BYTES} (link to a ticket for more)",
            reason.len()
        )));
    }
    Ok(if reason.trim().is_empty() {
        default.to_owned()
    } else {
        reason
    })
}

/// What the caller sees after an action on `stage`.
fn reply(
    hub: &HubContext,
    stage: &str,
    rollout: Option<u64>,
    message: String,
) -> AdminStageActionReply {
    let state = hub.node.state();
    let source = hub.source.as_ref().map(|s| s.name.as_str());
    let now = hub.clock.now();
    AdminStageActionReply {
        stage: stage.to_owned(),
        pinned_revision: state
            .stages
            .get(stage)
            .and_then(|s| s.pinned.as_ref())
            .map(|r| r.commit.clone())
            .unwrap_or_default(),
        rollout: rollout.and_then(|id| {
            let rollout = state.rollouts.get(&id)?;
            Some(progress::progress(&state, source, id, rollout, now))
        }),
        message,
    }
}

/// `flotilla promote STAGE [--revision R] [--force]`.
pub(super) async fn promote(
    hub: &HubContext,
    caller: &Caller,
    request: AdminPromoteRequest,
) -> Result<AdminStageActionReply, Status> {
    let (command, id, message) = {
        let state = hub.node.state();
        let (spec, stage) = pipeline_stage(hub, &state, &request.stage)?;
        let source = source_name(hub)?;
        let to = if request.revision.trim().is_empty() {
            promotion::default_promotion(&state, &stage, source).ok_or_else(|| {
                Status::failed_precondition(format!(
                    "nothing to promote to stage `{}`: its upstream has passed no revision yet; name one with --revision",
                    stage.name
                ))
            })?
        } else {
            rendered_revision(&state, &request.revision)?
        };
        let active = state.active_rollout(&stage.name);
        match active {
            Some((id, rollout)) if rollout.to == to => {
                let hint = if rollout.status == RolloutStatus::AwaitingApproval {
                    format!("`flotilla approve {}` lets it run", stage.name)
                } else {
                    format!("`flotilla rollout status {}` follows it", stage.name)
                };
                return Err(Status::failed_precondition(format!(
                    "stage `{}` already has rollout {id} of {} ({}); {hint}",
                    stage.name,
                    short(&to.commit),
                    rollout.status.name()
                )));
            }
            None if state
                .stages
                .get(&stage.name)
                .and_then(|s| s.pinned.as_ref())
                == Some(&to) =>
            {
                return Err(Status::failed_precondition(format!(
                    "stage `{}` is already at {}",
                    stage.name,
                    short(&to.commit)
                )));
            }
            _ => {}
        }
        let change = match promotion::upstream_gate(&state, &stage, source, &to) {
            Ok(()) => StageChange::Promote,
            Err(_) if request.force => StageChange::ForcePromote,
            Err(why) => return Err(Status::failed_precondition(why)),
        };
        let failed_before = state
            .stages
            .get(&stage.name)
            .is_some_and(|s| s.failed.contains(&to));
        let reason = reason_or(request.reason, "promoted by hand")?;
        let command = promotion::start_rollout(
            &state,
            &spec,
            &stage,
            Start {
                to: &to,
                change,
                await_approval: false,
                supersede: true,
                by: &caller.name,
                reason: &reason,
                at: hub.clock.now(),
            },
        );
        let mut message = format!(
            "promoting {} to stage `{}`{}",
            short(&to.commit),
            stage.name,
            match active {
                Some((id, _)) => format!(", replacing rollout {id}"),
                None => String::new(),
            }
        );
        if change == StageChange::ForcePromote {
            message.push_str(" (forced past the upstream gate; audited)");
        }
        if failed_before {
            message.push_str(&format!(
                "; note: {} failed in this stage before",
                short(&to.commit)
            ));
        }
        (command, state.next_rollout_id, message)
    };
    hub.node.propose(&command).await.map_err(propose_status)?;
    let message = format!("{message}{}", held(hub, id));
    Ok(reply(hub, &request.stage, Some(id), message))
}

/// What the deletion guard said of rollout `id` as it started, if it held it: a promotion by
/// hand is held like any other, so the caller must learn that it waits.
fn held(hub: &HubContext, id: u64) -> String {
    let state = hub.node.state();
    match state.rollouts.get(&id) {
        Some(rollout) if rollout.status == RolloutStatus::AwaitingApproval => {
            match &rollout.deletion_hold {
                Some(hold) => format!(
                    "; held by the deletion guard: {}; `flotilla approve {} --rollout {id}` releases it",
                    hold.summary(),
                    rollout.stage
                ),
                None => String::new(),
            }
        }
        _ => String::new(),
    }
}

/// `flotilla rollback STAGE [--to R]`.
pub(super) async fn rollback(
    hub: &HubContext,
    caller: &Caller,
    request: AdminRollbackRequest,
) -> Result<AdminStageActionReply, Status> {
    let (command, rollout, message) = {
        let state = hub.node.state();
        let (spec, stage) = pipeline_stage(hub, &state, &request.stage)?;
        let source = source_name(hub)?;
        let to = if request.to_revision.trim().is_empty() {
            rollback::default_rollback(&state, &stage.name).ok_or_else(|| {
                Status::failed_precondition(format!(
                    "stage `{}` has no earlier revision to return to; name one with --to (see `flotilla history {}`)",
                    stage.name, stage.name
                ))
            })?
        } else {
            rendered_revision(&state, &request.to_revision)?
        };
        rollback::rollback_gate(&state, &stage, source, &to)
            .map_err(Status::failed_precondition)?;
        let active = state.active_rollout(&stage.name).map(|(id, _)| id);
        let clusters = rollback::rollback_clusters(&state, &spec, &stage.name, &to);
        let message = format!(
            "stage `{}` rolled back to {} on {} clusters{}",
            stage.name,
            short(&to.commit),
            clusters.len(),
            active
                .map(|id| format!("; rollout {id} ended"))
                .unwrap_or_default()
        );
        let command = Command::RollBack {
            stage: stage.name.clone(),
            to,
            clusters,
            by: caller.name.clone(),
            reason: reason_or(request.reason, "rolled back by hand")?,
            at: hub.clock.now(),
        };
        (command, active, message)
    };
    hub.node.propose(&command).await.map_err(propose_status)?;
    Ok(reply(hub, &request.stage, rollout, message))
}

/// `flotilla pause|resume|approve STAGE`.
pub(super) async fn set_status(
    hub: &HubContext,
    caller: &Caller,
    request: AdminStageActionRequest,
    action: RolloutAction,
) -> Result<AdminStageActionReply, Status> {
    let (command, id) = {
        let state = hub.node.state();
        let (_, stage) = pipeline_stage(hub, &state, &request.stage)?;
        let wanted = match action {
            RolloutAction::Pause => "running",
            RolloutAction::Resume => "paused",
            RolloutAction::Approve | RolloutAction::ApproveByPolicy => "awaiting approval",
        };
        let found = state.active_rollout(&stage.name);
        let Some((id, rollout)) = found.filter(|(_, r)| r.status.name() == wanted) else {
            let now = match found {
                Some((id, r)) => format!("its rollout {id} is {}", r.status.name()),
                None => match state
                    .rollouts
                    .iter()
                    .rev()
                    .find(|(_, r)| r.stage == stage.name)
                {
                    Some((id, r)) => format!("its last rollout {id} is {}", r.status.name()),
                    None => "it has had no rollout".to_owned(),
                },
            };
            return Err(Status::failed_precondition(format!(
                "cannot {} stage `{}`: no rollout is {wanted} ({now})",
                action.verb(),
                stage.name
            )));
        };
        // What was reviewed is what is acted on: a newer rollout that replaced it (a newer
        // commit, held for other deletions) needs its own look.
        if request.rollout != 0 && request.rollout != id {
            return Err(Status::failed_precondition(format!(
                "cannot {} rollout {} of stage `{}`: the stage's {wanted} rollout is {id} (to {}); `flotilla rollout status {}` shows it",
                action.verb(),
                request.rollout,
                stage.name,
                short(&rollout.to.commit),
                stage.name
            )));
        }
        // The upstream may have rolled the revision back since it was proposed here.
        if action == RolloutAction::Approve
            && rollout.change != StageChange::ForcePromote
            && let Err(why) =
                promotion::upstream_gate(&state, &stage, source_name(hub)?, &rollout.to)
        {
            return Err(Status::failed_precondition(format!(
                "rollout {id} waits to take {} to stage `{}`, but {why}",
                short(&rollout.to.commit),
                stage.name
            )));
        }
        let default = match action {
            RolloutAction::Pause => "paused by hand",
            RolloutAction::Resume => "resumed by hand",
            RolloutAction::Approve | RolloutAction::ApproveByPolicy => "approved by hand",
        };
        let reason = reason_or(request.reason, default)?;
        let command = Command::SetRolloutStatus {
            rollout: id,
            action,
            by: caller.name.clone(),
            reason,
            at: hub.clock.now(),
        };
        (command, id)
    };
    hub.node.propose(&command).await.map_err(propose_status)?;
    let released = hub
        .node
        .state()
        .rollouts
        .get(&id)
        .is_some_and(|r| r.deletion_hold.is_some());
    let message = format!(
        "rollout {id} of stage `{}`: {}{}",
        request.stage,
        action.verb(),
        if action == RolloutAction::Approve && released {
            " (releasing the deletion guard's hold)"
        } else {
            ""
        }
    );
    Ok(reply(hub, &request.stage, Some(id), message))
}

/// `flotilla history STAGE`.
pub(super) fn history(hub: &HubContext, name: &str) -> Result<AdminStageHistory, Status> {
    let state = hub.node.state();
    let source = source_name(hub)?;
    let declared =
        pipeline::current(&state, source).and_then(|(_, spec)| spec.stage(name).cloned());
    let Some(stage) = state.stages.get(name) else {
        return Err(match declared {
            Some(_) => Status::failed_precondition(format!("stage `{name}` has no revision yet")),
            None => Status::not_found(format!(
                "no stage `{name}`; `flotilla status` lists the stages"
            )),
        });
    };
    let commits = |set: &std::collections::BTreeSet<RevisionRef>| {
        let mut list: Vec<(u64, String)> = set
            .iter()
            .map(|r| {
                (
                    state.revisions.get(r).map_or(0, |rev| rev.seq),
                    r.commit.clone(),
                )
            })
            .collect();
        list.sort_by(|a, b| b.cmp(a));
        list.into_iter().map(|(_, c)| c).collect()
    };
    let target = format!("stage/{name}");
    Ok(AdminStageHistory {
        stage: name.to_owned(),
        source: declared
            .map(|s| match s.source {
                flotilla_core::spec::StageSource::Track { branch } => format!("track {branch}"),
                flotilla_core::spec::StageSource::PromoteFrom { stage } => {
                    format!("promoteFrom {stage}")
                }
            })
            .unwrap_or_default(),
        pinned_revision: stage
            .pinned
            .as_ref()
            .map(|r| r.commit.clone())
            .unwrap_or_default(),
        pins: stage
            .history
            .iter()
            .rev()
            .map(|pin| AdminPin {
                revision: pin.revision.commit.clone(),
                change: pin.change.key().to_owned(),
                by: pin.by.clone(),
                reason: pin.reason.clone(),
                at_ms: pin.at.0 as i64,
                rollout_id: pin.rollout.unwrap_or(0),
                rollout_status: pin
                    .rollout
                    .and_then(|id| state.rollouts.get(&id))
                    .map(|r| r.status.key().to_owned())
                    .unwrap_or_default(),
            })
            .collect(),
        failed_revisions: commits(&stage.failed),
        passed_revisions: commits(&stage.passed),
        events: state
            .audit
            .newest_first()
            .filter(|(_, e)| e.target == target)
            .take(HISTORY_EVENTS)
            .map(|(seq, e)| super::audit::to_proto(seq, e))
            .collect(),
    })
}

#[cfg(test)]
mod tests;
