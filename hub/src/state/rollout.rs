//! Rollouts: moving a stage from one revision to another in waves, and their status machine.
//!
//! The rollout controller decides *when* (health gates, soak, timeouts); this module only records
//! its decisions and refuses impossible ones (a wave out of order, resuming a completed rollout),
//! so a new leader resumes exactly where the old one stopped.

use serde::{Deserialize, Serialize};

use super::command::RolloutAction;
use super::source::RevisionRef;
use super::stage::{StageChange, set_pin};
use super::{CommandError, State, Timestamp};

/// A stage moving from one revision to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// The stage.
    pub stage: String,
    /// The stage's pin when the rollout started.
    pub from: Option<RevisionRef>,
    /// The target.
    pub to: RevisionRef,
    /// Clusters per wave, in order.
    pub waves: Vec<Vec<String>>,
    /// Waves started so far (wave `started - 1` is the current one).
    pub started: usize,
    /// Status.
    pub status: RolloutStatus,
    /// When it started.
    pub started_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutStatus {
    /// Waves are being started as their predecessors pass.
    Running,
    /// Waiting for an operator.
    Paused {
        /// Why.
        reason: String,
    },
    /// Every wave passed; the stage is pinned to the target.
    Completed,
    /// Stopped for good.
    Failed {
        /// Why.
        reason: String,
    },
    /// Clusters returned to the start revision.
    RolledBack {
        /// Why.
        reason: String,
    },
    /// Replaced by a newer rollout of the same stage.
    Superseded {
        /// The newer rollout.
        by: u64,
    },
}

impl RolloutStatus {
    /// The status as people read it: `running`, `paused`, `rolled back`, ...
    pub fn name(&self) -> &'static str {
        match self {
            RolloutStatus::Running => "running",
            RolloutStatus::Paused { .. } => "paused",
            RolloutStatus::Completed => "completed",
            RolloutStatus::Failed { .. } => "failed",
            RolloutStatus::RolledBack { .. } => "rolled back",
            RolloutStatus::Superseded { .. } => "superseded",
        }
    }
}

impl Rollout {
    /// Running or paused: it still owns its stage.
    pub fn is_active(&self) -> bool {
        matches!(
            self.status,
            RolloutStatus::Running | RolloutStatus::Paused { .. }
        )
    }

    fn refuse(&self, id: u64, action: &str) -> CommandError {
        CommandError::InvalidRolloutTransition {
            rollout: id,
            status: self.status.name().to_owned(),
            action: action.to_owned(),
        }
    }
}

pub(super) fn start(
    state: &mut State,
    stage: &str,
    to: &RevisionRef,
    waves: &[Vec<String>],
    supersede: bool,
    at: Timestamp,
) -> Result<(), CommandError> {
    let from = state
        .stages
        .get(stage)
        .ok_or_else(|| CommandError::UnknownStage(stage.to_owned()))?
        .pinned
        .clone();
    super::source::require_rendered(state, to)?;
    if waves.is_empty() || waves.iter().any(|w| w.is_empty()) {
        return Err(CommandError::Invalid(
            "a rollout needs waves, none of them empty".into(),
        ));
    }
    if let Some(unknown) = waves
        .iter()
        .flatten()
        .find(|c| !state.clusters.contains_key(*c))
    {
        return Err(CommandError::UnknownCluster(unknown.clone()));
    }
    let active = state
        .rollouts
        .iter()
        .find(|(_, r)| r.stage == stage && r.is_active())
        .map(|(id, _)| *id);
    let id = state.next_rollout_id.max(1);
    if let Some(active) = active {
        if !supersede {
            return Err(CommandError::RolloutActive {
                stage: stage.to_owned(),
                rollout: active,
            });
        }
        if let Some(old) = state.rollouts.get_mut(&active) {
            old.status = RolloutStatus::Superseded { by: id };
            old.updated_at = at;
        }
    }
    state.next_rollout_id = id + 1;
    state.rollouts.insert(
        id,
        Rollout {
            stage: stage.to_owned(),
            from,
            to: to.clone(),
            waves: waves.to_vec(),
            started: 0,
            status: RolloutStatus::Running,
            started_at: at,
            updated_at: at,
        },
    );
    Ok(())
}

pub(super) fn start_wave(
    state: &mut State,
    id: u64,
    wave: usize,
    at: Timestamp,
) -> Result<(), CommandError> {
    let rollout = state
        .rollouts
        .get(&id)
        .ok_or(CommandError::UnknownRollout(id))?;
    if rollout.status != RolloutStatus::Running {
        return Err(rollout.refuse(id, "start a wave"));
    }
    if wave != rollout.started || wave >= rollout.waves.len() {
        return Err(CommandError::Invalid(format!(
            "rollout {id} can start wave {} next (of {}), not wave {wave}",
            rollout.started,
            rollout.waves.len()
        )));
    }
    let clusters = rollout.waves[wave].clone();
    let to = rollout.to.clone();
    super::fleet::set_assigned(state, &clusters, &to, at);
    if let Some(rollout) = state.rollouts.get_mut(&id) {
        rollout.started += 1;
        rollout.updated_at = at;
    }
    Ok(())
}

pub(super) fn transition(
    state: &mut State,
    id: u64,
    action: RolloutAction,
    by: &str,
    reason: &str,
    at: Timestamp,
) -> Result<(), CommandError> {
    let rollout = state
        .rollouts
        .get(&id)
        .ok_or(CommandError::UnknownRollout(id))?
        .clone();
    let status = match (action, &rollout.status) {
        (RolloutAction::Pause, RolloutStatus::Running) => RolloutStatus::Paused {
            reason: reason.to_owned(),
        },
        (RolloutAction::Resume, RolloutStatus::Paused { .. }) => RolloutStatus::Running,
        (RolloutAction::Fail, _) if rollout.is_active() => RolloutStatus::Failed {
            reason: reason.to_owned(),
        },
        (RolloutAction::Complete, RolloutStatus::Running)
            if rollout.started == rollout.waves.len() =>
        {
            set_pin(
                state,
                &rollout.stage,
                &rollout.to,
                StageChange::RolloutComplete,
                by,
                reason,
                at,
            );
            RolloutStatus::Completed
        }
        (RolloutAction::RollBack, _) if rollout.is_active() => {
            roll_back(state, &rollout, by, reason, at);
            RolloutStatus::RolledBack {
                reason: reason.to_owned(),
            }
        }
        (action, _) => return Err(rollout.refuse(id, &format!("{action:?}").to_lowercase())),
    };
    if let Some(r) = state.rollouts.get_mut(&id) {
        r.status = status;
        r.updated_at = at;
    }
    Ok(())
}

/// Returns every cluster that got the target to the start revision, pins the stage back and marks
/// the target failed for the stage.
fn roll_back(state: &mut State, rollout: &Rollout, by: &str, reason: &str, at: Timestamp) {
    let touched: Vec<String> = rollout.waves[..rollout.started]
        .iter()
        .flatten()
        .filter(|c| {
            state
                .clusters
                .get(*c)
                .is_some_and(|c| c.assigned.as_ref() == Some(&rollout.to))
        })
        .cloned()
        .collect();
    if let Some(from) = &rollout.from {
        super::fleet::set_assigned(state, &touched, from, at);
        set_pin(
            state,
            &rollout.stage,
            from,
            StageChange::Rollback,
            by,
            reason,
            at,
        );
    }
    if let Some(stage) = state.stages.get_mut(&rollout.stage) {
        stage.failed.insert(rollout.to.clone());
    }
}
