//! Stages: the revision each is pinned to, with the history of who moved it, when and why.

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
    /// Revisions that failed in this stage and must never be promoted to it automatically.
    pub failed: BTreeSet<RevisionRef>,
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
    /// A rollout finished.
    RolloutComplete,
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
    set_pin(state, name, revision, change, by, reason, at);
    Ok(())
}

/// Pins without validation; callers have checked the revision.
pub(super) fn set_pin(
    state: &mut State,
    name: &str,
    revision: &RevisionRef,
    change: StageChange,
    by: &str,
    reason: &str,
    at: Timestamp,
) {
    let stage = state.stages.entry(name.to_owned()).or_default();
    stage.pinned = Some(revision.clone());
    stage.history.push(PinRecord {
        revision: revision.clone(),
        change,
        by: by.to_owned(),
        reason: reason.to_owned(),
        at,
    });
    if stage.history.len() > STAGE_HISTORY_LIMIT {
        let excess = stage.history.len() - STAGE_HISTORY_LIMIT;
        stage.history.drain(..excess);
    }
}
