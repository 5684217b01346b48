//! Stages: the revision each is pinned to, with the history of who moved it, when and why, and
//! the revisions that passed or failed in it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::source::RevisionRef;
use super::{CommandError, State, Timestamp};

/// Pin changes kept per stage; older ones are dropped (the audit log keeps its own record).
pub const STAGE_HISTORY_LIMIT: usize = 200;

/// A stage and its pinned revision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// The revision the stage's clusters must converge to.
    pub pinned: Option<RevisionRef>,
    /// Pin changes, oldest first.
    pub history: Vec<PinRecord>,
    /// Revisions that failed in this stage (or were rolled back from) and must never be
    /// promoted to it automatically.
    pub failed: BTreeSet<RevisionRef>,
    /// Revisions whose rollout in this stage completed: downstream stages may take them.
    pub passed: BTreeSet<RevisionRef>,
    /// Arrival number (`Revision.seq`) of the newest revision ever pinned: promotion by itself
    /// only moves a stage forward past it, so a stage rolled back stays back.
    pub newest_seq: u64,
}

/// One change of a stage's pin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinRecord {
    /// The revision pinned.
    pub revision: RevisionRef,
    /// What kind of change.
    pub change: StageChange,
    /// Who.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Timestamp,
    /// The rollout that carries the change, if one does.
    pub rollout: Option<u64>,
}

/// Why a stage's pin moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageChange {
    /// The stage tracks a branch and its head moved.
    Track,
    /// Promoted from an upstream stage.
    Promote,
    /// Promoted past the upstream gate by an admin.
    ForcePromote,
    /// Rolled back to an earlier revision.
    Rollback,
}

impl StageChange {
    /// The change as outputs carry it, one camelCase word: `track`, `promote`, `forcePromote`,
    /// `rollback`.
    pub fn key(self) -> &'static str {
        match self {
            StageChange::ForcePromote => "forcePromote",
            other => other.name(),
        }
    }

    /// The change as commands and audit actions name it: `track`, `promote`, `force-promote`,
    /// `rollback`.
    pub fn name(self) -> &'static str {
        match self {
            StageChange::Track => "track",
            StageChange::Promote => "promote",
            StageChange::ForcePromote => "force-promote",
            StageChange::Rollback => "rollback",
        }
    }
}

pub(super) fn pin(
    state: &mut State,
    name: &str,
    revision: &RevisionRef,
    change: StageChange,
    by: &str,
    reason: &str,
    at: Timestamp,
) -> Result<(), CommandError> {
    if name.is_empty() {
        return Err(CommandError::Invalid("stage name is empty".into()));
    }
    super::source::require_rendered(state, revision)?;
    if change != StageChange::Rollback {
        super::signature::require(state, name, revision)?;
    }
    if let Some((rollout, _)) = state.active_rollout(name) {
        return Err(CommandError::RolloutActive {
            stage: name.to_owned(),
            rollout,
        });
    }
    set_pin(
        state,
        name,
        PinRecord {
            revision: revision.clone(),
            change,
            by: by.to_owned(),
            reason: reason.to_owned(),
            at,
            rollout: None,
        },
    );
    Ok(())
}

/// Pins without validation; callers have checked the revision.
pub(super) fn set_pin(state: &mut State, name: &str, record: PinRecord) {
    let seq = state.revisions.get(&record.revision).map_or(0, |r| r.seq);
    let stage = state.stages.entry(name.to_owned()).or_default();
    stage.pinned = Some(record.revision.clone());
    stage.newest_seq = stage.newest_seq.max(seq);
    stage.history.push(record);
    if stage.history.len() > STAGE_HISTORY_LIMIT {
        let excess = stage.history.len() - STAGE_HISTORY_LIMIT;
        stage.history.drain(..excess);
    }
}
