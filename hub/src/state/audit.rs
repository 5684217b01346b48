//! Audit events: who did what, when, and how it ended.
//!
//! The replicated log keeps two retention classes, each in a ring of its own: privileged events
//! (changes made by callers allowed to make them, and the state machine's own decisions), at
//! most [`PRIVILEGED_LIMIT`], and unprivileged ones (refusals, failures, webhook deliveries:
//! what anyone who reaches a port or holds a signed webhook body can cause), at most
//! [`UNPRIVILEGED_LIMIT`]. A flood of the second kind drops only older events of its kind, so
//! it can never push a promotion or a token's creation out of the record. Both rings draw from
//! one sequence, so the merged log reads in the order events were applied. Older events are
//! dropped, oldest first, on every replica alike, so the state (and every snapshot) stays
//! bounded however long the hub runs; every node also writes each event it applies to its log
//! (see [`export`]), for a longer record kept elsewhere.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fmt;
use std::iter::Peekable;

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// Privileged events kept in the replicated state; older ones are dropped in order, on every
/// replica alike. At a few hundred bytes per event this bounds the ring to a few megabytes.
pub const PRIVILEGED_LIMIT: usize = 10_000;

/// Unprivileged events kept in the replicated state, in a ring of their own. Smaller than the
/// privileged ring: each actor's are rate-limited and folded into aggregates before they are
/// proposed, so this still holds hours of a sustained flood.
pub const UNPRIVILEGED_LIMIT: usize = 5_000;

/// The `tracing` target of the log lines that export audit events, one JSON object each.
pub const EXPORT_TARGET: &str = "flotilla::audit";

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
    /// Which ring keeps it.
    pub class: AuditClass,
    /// How many occurrences it stands for: 1, or more for an aggregate of the same actor's
    /// unprivileged events that were not recorded one by one.
    pub count: u64,
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

/// The retention class of an event: which ring keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditClass {
    /// Something changed, by a caller allowed to change it (or by the state machine itself).
    Privileged,
    /// A refusal, a failure or a webhook delivery: nothing a role was needed for.
    Unprivileged,
}

impl AuditClass {
    /// The class of a call's outcome: only a success changed anything. Webhook deliveries are
    /// unprivileged whatever their outcome (their senders hold no role).
    pub fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Succeeded => AuditClass::Privileged,
            Outcome::Denied(_) | Outcome::Failed(_) => AuditClass::Unprivileged,
        }
    }

    /// `privileged` or `unprivileged`, as the exported log lines show it.
    pub fn name(self) -> &'static str {
        match self {
            AuditClass::Privileged => "privileged",
            AuditClass::Unprivileged => "unprivileged",
        }
    }
}

/// An event with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Sequenced {
    seq: u64,
    event: AuditEvent,
}

/// The most recent audit events of each class, with their sequence numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditLog {
    /// Sequence number the next event gets.
    next_seq: u64,
    /// Privileged events, oldest first.
    privileged: VecDeque<Sequenced>,
    /// Unprivileged events, oldest first.
    unprivileged: VecDeque<Sequenced>,
}

impl AuditLog {
    /// Appends an event to its class's ring, dropping that ring's oldest beyond its limit.
    pub fn push(&mut self, event: AuditEvent) {
        let (ring, limit) = match event.class {
            AuditClass::Privileged => (&mut self.privileged, PRIVILEGED_LIMIT),
            AuditClass::Unprivileged => (&mut self.unprivileged, UNPRIVILEGED_LIMIT),
        };
        ring.push_back(Sequenced {
            seq: self.next_seq,
            event,
        });
        self.next_seq += 1;
        while ring.len() > limit {
            ring.pop_front();
        }
    }

    /// Sequence number the next event gets: every event kept has a smaller one.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Events kept, of both classes.
    pub fn len(&self) -> usize {
        self.privileged.len() + self.unprivileged.len()
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events kept of one class.
    pub fn kept(&self, class: AuditClass) -> usize {
        match class {
            AuditClass::Privileged => self.privileged.len(),
            AuditClass::Unprivileged => self.unprivileged.len(),
        }
    }

    /// Events of both classes with their sequence numbers, from `seq` on, oldest first.
    pub fn since(&self, seq: u64) -> impl Iterator<Item = (u64, &AuditEvent)> {
        let from = |ring: &VecDeque<Sequenced>| ring.partition_point(|e| e.seq < seq);
        Merge {
            a: self.privileged.range(from(&self.privileged)..).peekable(),
            b: self
                .unprivileged
                .range(from(&self.unprivileged)..)
                .peekable(),
            first: Ordering::Less,
        }
    }

    /// Events of both classes with their sequence numbers, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = (u64, &AuditEvent)> {
        Merge {
            a: self.privileged.iter().rev().peekable(),
            b: self.unprivileged.iter().rev().peekable(),
            first: Ordering::Greater,
        }
    }
}

/// Two rings merged by sequence number: `first` is the ordering of the event taken first
/// (`Less`: oldest first; `Greater`: newest first).
struct Merge<'a, A: Iterator<Item = &'a Sequenced>, B: Iterator<Item = &'a Sequenced>> {
    a: Peekable<A>,
    b: Peekable<B>,
    first: Ordering,
}

impl<'a, A, B> Iterator for Merge<'a, A, B>
where
    A: Iterator<Item = &'a Sequenced>,
    B: Iterator<Item = &'a Sequenced>,
{
    type Item = (u64, &'a AuditEvent);

    fn next(&mut self) -> Option<Self::Item> {
        let take_a = match (self.a.peek(), self.b.peek()) {
            (Some(a), Some(b)) => a.seq.cmp(&b.seq) == self.first,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let next = if take_a { self.a.next() } else { self.b.next() };
        next.map(|e| (e.seq, &e.event))
    }
}

/// An event as its exported log line shows it: the fields of `flotilla audit -o json`, with the
/// time in milliseconds since the epoch, its class and count.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Exported<'a> {
    seq: u64,
    at_ms: u64,
    actor: &'a str,
    action: &'a str,
    target: &'a str,
    outcome: &'static str,
    reason: &'a str,
    detail: &'a str,
    class: &'static str,
    count: u64,
}

impl AuditEvent {
    /// The event as one line of JSON, with its sequence number.
    pub fn to_json_line(&self, seq: u64) -> Result<String, serde_json::Error> {
        serde_json::to_string(&Exported {
            seq,
            at_ms: self.at.0,
            actor: &self.actor,
            action: &self.action,
            target: &self.target,
            outcome: self.outcome.name(),
            reason: self.outcome.reason(),
            detail: &self.detail,
            class: self.class.name(),
            count: self.count,
        })
    }
}

/// Writes the events of `log` from `seq` on to this process's log, one JSON line each at
/// target [`EXPORT_TARGET`], so an operator can ship the whole trail however long it grows.
/// Every node writes the events it applies; a node that restarts applies (and writes) again
/// the entries after its last snapshot, so a consumer keeps the first line of each `seq`.
pub fn export(log: &AuditLog, seq: u64) {
    for (seq, event) in log.since(seq) {
        match event.to_json_line(seq) {
            Ok(line) => tracing::info!(target: EXPORT_TARGET, "{line}"),
            Err(e) => tracing::warn!(seq, error = %e, "cannot export an audit event"),
        }
    }
}

#[cfg(test)]
mod tests;
