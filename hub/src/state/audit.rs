//! Audit events: who did what, when, and how it ended. The replicated log keeps the most recent
//! [`AUDIT_LIMIT`] events; older ones are dropped, oldest first, on every replica alike, so the
//! state (and every snapshot) stays bounded however long the hub runs. Ship them elsewhere
//! (`flotilla audit -o json`) when a longer record is needed.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// Events kept in the replicated state; older ones are dropped in order, on every replica alike.
/// At a few hundred bytes per event this bounds the log to a few megabytes.
pub const AUDIT_LIMIT: usize = 10_000;

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Who (`token:NAME`, `anonymous` on an insecure hub, `webhook:SENDER`, or
    /// `controller:<name>`).
    pub actor: String,
    /// What was done, e.g. `promote`.
    pub action: String,
    /// What it was done to, e.g. `stage/prod`.
    pub target: String,
    /// Free-form detail.
    pub detail: String,
    /// When.
    pub at: Timestamp,
    /// How it ended.
    pub outcome: Outcome,
}

/// How an audited action ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// It was done.
    Succeeded,
    /// The caller was not allowed: unauthenticated, or without the role it needs.
    Denied(String),
    /// The caller was allowed, but the hub refused or could not do it.
    Failed(String),
}

impl Outcome {
    /// `succeeded`, `denied` or `failed`, as `flotilla audit` shows it.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Denied(_) => "denied",
            Outcome::Failed(_) => "failed",
        }
    }

    /// Why it was denied or failed; empty when it succeeded.
    pub fn reason(&self) -> &str {
        match self {
            Outcome::Succeeded => "",
            Outcome::Denied(reason) | Outcome::Failed(reason) => reason,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Succeeded => f.write_str("succeeded"),
            other => write!(f, "{}: {}", other.name(), other.reason()),
        }
    }
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
