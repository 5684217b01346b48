//! A rollout's progress as an Admin API message: the same judgement the rollout controller acts
//! on (`state::rollout::gate`), taken on this node's replica at the hub's clock.

use std::collections::BTreeSet;

use flotilla_proto::v1::{
    AdminBundleRemoval, AdminClusterProgress, AdminClusterPruning, AdminDeletionHold,
    AdminRolloutProgress, AdminUnavailable, AdminWaveProgress,
};
use tonic::Status;

use super::convert::ms;
use crate::state::rollout::decide::SETTLE;
use crate::state::rollout::gate::{StageScope, WavePhase, judge};
use crate::state::rollout::pipeline;
use crate::state::rollout::promotion::stage_clusters;
use crate::state::rollout::{DeletionHold, OnFailure, Rollout, RolloutStatus};
use crate::state::{State, Timestamp};

/// The rollout `id` of `stage`, or the stage's newest when `id` is 0.
pub(super) fn find<'a>(
    state: &'a State,
    stage: &str,
    id: u64,
) -> Result<(u64, &'a Rollout), Status> {
    if id != 0 {
        return match state.rollouts.get(&id) {
            Some(rollout) if rollout.stage == stage => Ok((id, rollout)),
            Some(rollout) => Err(Status::not_found(format!(
                "rollout {id} belongs to stage `{}`, not `{stage}`",
                rollout.stage
            ))),
            None => Err(Status::not_found(format!(
                "no rollout {id}; `flotilla history {stage}` lists the stage's rollouts"
            ))),
        };
    }
    state
        .rollouts
        .iter()
        .rev()
        .find(|(_, r)| r.stage == stage)
        .map(|(id, r)| (*id, r))
        .ok_or_else(|| {
            Status::not_found(format!(
                "stage `{stage}` has had no rollout yet; `flotilla history {stage}` shows how it got its revision"
            ))
        })
}

/// The progress message of a rollout judged at `now`.
pub(super) fn progress(
    state: &State,
    source: Option<&str>,
    id: u64,
    rollout: &Rollout,
    now: Timestamp,
) -> AdminRolloutProgress {
    let spec = source.and_then(|s| pipeline::current(state, s));
    let clusters: BTreeSet<String> = spec
        .as_ref()
        .map(|(_, spec)| stage_clusters(state, spec, &rollout.stage))
        .unwrap_or_default();
    let allow_empty = spec
        .as_ref()
        .and_then(|(_, spec)| spec.stages.iter().find(|s| s.name == rollout.stage))
        .is_some_and(|stage| stage.allow_empty);
    let settle = crate::state::millis(SETTLE);
    let scope = StageScope {
        clusters: &clusters,
        allow_empty,
    };
    let judgement = judge(state, rollout, scope, now, settle);
    let status_reason = match &rollout.status {
        RolloutStatus::AwaitingApproval => match &rollout.deletion_hold {
            Some(hold) => format!(
                "held by the deletion guard: {}; `flotilla approve {} --rollout {id}` releases it",
                hold.summary(),
                rollout.stage
            ),
            None => String::new(),
        },
        RolloutStatus::Paused { by, reason } => format!("{reason} (by {by})"),
        RolloutStatus::RolledBack { reason } => reason.clone(),
        RolloutStatus::Superseded { by } => format!("by rollout {by}"),
        RolloutStatus::Abandoned { reason } => reason.clone(),
        _ => String::new(),
    };
    AdminRolloutProgress {
        id,
        stage: rollout.stage.clone(),
        from_revision: rollout
            .from
            .as_ref()
            .map(|r| r.commit.clone())
            .unwrap_or_default(),
        to_revision: rollout.to.commit.clone(),
        status: rollout.status.key().to_owned(),
        status_reason,
        paused_by: match &rollout.status {
            RolloutStatus::Paused { by, .. } => by.clone(),
            _ => String::new(),
        },
        change: rollout.change.key().to_owned(),
        by: rollout.by.clone(),
        reason: rollout.reason.clone(),
        created_at_ms: rollout.created_at.0 as i64,
        started_at_ms: ms(rollout.started_at),
        updated_at_ms: rollout.updated_at.0 as i64,
        max_unavailable: rollout.gate.max_unavailable,
        health_timeout_ms: i64::try_from(rollout.gate.health_timeout_ms).unwrap_or(i64::MAX),
        failure_action: match rollout.gate.on_failure {
            OnFailure::Pause => "pause",
            OnFailure::Rollback => "rollback",
        }
        .to_owned(),
        current_wave: u32::try_from(rollout.current).unwrap_or(u32::MAX),
        waves: judgement
            .waves
            .into_iter()
            .map(|wave| AdminWaveProgress {
                name: wave.name,
                phase: wave.phase.key().to_owned(),
                soak_ms: i64::try_from(wave.soak_ms).unwrap_or(i64::MAX),
                soak_until_ms: match wave.phase {
                    WavePhase::Soaking(until) => until.0 as i64,
                    _ => 0,
                },
                started_at_ms: ms(wave.started_at),
                done_at_ms: ms(wave.done_at),
                clusters: wave
                    .clusters
                    .into_iter()
                    .map(|cluster| AdminClusterProgress {
                        name: cluster.name,
                        phase: cluster.phase.key().to_owned(),
                        detail: cluster.detail,
                        assigned_at_ms: ms(cluster.assigned_at),
                        deadline_ms: ms(cluster.deadline),
                    })
                    .collect(),
            })
            .collect(),
        unavailable: if rollout.is_active() {
            judgement
                .unavailable
                .into_iter()
                .map(|(cluster, why)| AdminUnavailable { cluster, why })
                .collect()
        } else {
            Vec::new()
        },
        blocked: judgement.blocked.unwrap_or_default(),
        now_ms: now.0 as i64,
        deletion_hold: rollout.deletion_hold.as_ref().map(deletion_hold),
    }
}

fn deletion_hold(hold: &DeletionHold) -> AdminDeletionHold {
    AdminDeletionHold {
        findings: hold.findings(),
        clusters: hold.clusters,
        pruning: hold
            .pruning
            .iter()
            .map(|p| AdminClusterPruning {
                cluster: p.cluster.clone(),
                pruned: p.pruned,
                of: p.of,
            })
            .collect(),
        pruning_clusters: hold.pruning_clusters,
        removals: hold
            .removals
            .iter()
            .map(|r| AdminBundleRemoval {
                bundle: r.bundle.clone(),
                clusters: r.clusters,
                named: r.named.clone(),
            })
            .collect(),
        no_bundles: hold.no_bundles,
    }
}
