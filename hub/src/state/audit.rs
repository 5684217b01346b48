//! Audit events: who did what, when. The replicated log keeps the most recent ones.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// Events kept in the replicated state; older ones are dropped in order, on every replica alike.
pub const AUDIT_LIMIT: usize = 10_000;

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Who (a token id, a user, or `controller:<name>`).
    pub actor: String,
    /// What was done, e.g. `promote`.
    pub action: String,
    /// What it was done to, e.g. `stage/prod`.
    pub target: String,
    /// Free-form detail.
    pub detail: String,
    /// When.
    pub at: Timestamp,
}

/// The most recent audit events with their sequence numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditLog {
    /// Sequence number of the first event in `events`.
    pub first_seq: u64,
    /// Events, oldest first.
    pub events: VecDeque<AuditEvent>,
}

impl AuditLog {
    /// Appends an event, dropping the oldest beyond `AUDIT_LIMIT`.
    pub fn push(&mut self, event: AuditEvent) {
        self.events.push_back(event);
        while self.events.len() > AUDIT_LIMIT {
            self.events.pop_front();
            self.first_seq += 1;
        }
    }

    /// Events with their sequence numbers, from `seq` on.
    pub fn since(&self, seq: u64) -> impl Iterator<Item = (u64, &AuditEvent)> {
        let skip = seq.saturating_sub(self.first_seq) as usize;
        self.events
            .iter()
            .enumerate()
            .skip(skip)
            .map(|(i, e)| (self.first_seq + i as u64, e))
    }
}
