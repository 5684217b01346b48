//! What one node records of the unprivileged events it serves — refusals, failures and webhook
//! deliveries, which anyone who reaches a port (or holds a valid token of any role, or a signed
//! webhook body) can cause at will. Per actor and window ([`AuditLimits`]): the first events
//! are recorded one by one; the rest are folded, per action, target and outcome, into aggregate
//! events ("10,500 more between T1 and T2") written when the actor's window closes — at its next
//! event or at the periodic [`AuditTrail::close_windows`], whichever comes first.
//!
//! Decided here, before anything is proposed, because each record is a raft write; what is
//! decided travels in ordinary `RecordAudit` commands, so every replica applies the same events.
//! Privileged events pass untouched: their callers hold the role they needed.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::state::Timestamp;
use crate::state::audit::{AuditClass, AuditEvent, Outcome};

/// Default length of an actor's window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// Default number of an actor's unprivileged events recorded one by one in a window.
pub const DEFAULT_PER_WINDOW: u32 = 10;

/// Distinct (action, target, outcome) aggregates one actor may have in a window; the rest of
/// its events fold into one aggregate per outcome whose action and target read `*`, so an
/// actor varying its targets cannot multiply the aggregates.
const FOLDS_PER_ACTOR: usize = 8;

/// Actors with an open window; beyond, a new actor's unprivileged events are only counted and
/// logged. Actors are token names, agents' certified clusters and a few fixed names for
/// callers without credentials, so this is never reached but by a bug.
const MAX_ACTORS: usize = 4096;

/// How many unprivileged events a node records one by one, per actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditLimits {
    /// How long an actor's window lasts, from its first event.
    pub window: Duration,
    /// Events recorded one by one per actor and window; the rest are folded into aggregates.
    pub per_window: u32,
}

impl Default for AuditLimits {
    fn default() -> Self {
        AuditLimits {
            window: DEFAULT_WINDOW,
            per_window: DEFAULT_PER_WINDOW,
        }
    }
}

/// What one node records of the unprivileged events it serves (see the module).
#[derive(Debug)]
pub struct AuditTrail {
    limits: AuditLimits,
    actors: Mutex<Actors>,
}

/// The actors with an open window.
#[derive(Debug, Default)]
struct Actors {
    windows: HashMap<String, Window>,
    /// Events of actors beyond [`MAX_ACTORS`] since the last warning.
    untracked: u64,
}

/// One actor's current window.
#[derive(Debug)]
struct Window {
    opened: Instant,
    recorded: u32,
    folds: BTreeMap<FoldKey, Fold>,
}

/// What an aggregate event stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FoldKey {
    action: String,
    target: String,
    outcome: &'static str,
}

/// The events folded under one key.
#[derive(Debug)]
struct Fold {
    count: u64,
    first: Timestamp,
    last: Timestamp,
    /// The latest event's outcome, with its reason.
    outcome: Outcome,
}

impl Default for AuditTrail {
    fn default() -> Self {
        AuditTrail::new(AuditLimits::default())
    }
}

impl AuditTrail {
    /// A trail recording within `limits`.
    pub fn new(limits: AuditLimits) -> Self {
        AuditTrail {
            limits,
            actors: Mutex::new(Actors::default()),
        }
    }

    /// Its limits.
    pub fn limits(&self) -> AuditLimits {
        self.limits
    }

    /// The events to propose for `event`, in order: the aggregates of its actor's window if
    /// `now` closed it, then `event` itself unless it is folded into the actor's new window.
    pub fn admit(&self, event: AuditEvent, now: Instant) -> Vec<AuditEvent> {
        if event.class == AuditClass::Privileged {
            return vec![event];
        }
        let mut actors = self.actors.lock();
        let mut out = Vec::new();
        let closed = (actors.windows.get(&event.actor)).is_some_and(|w| self.closed(w, now));
        if closed && let Some(window) = actors.windows.remove(&event.actor) {
            out.extend(self.aggregates(&event.actor, window, event.at));
        }
        if !actors.windows.contains_key(&event.actor) && actors.windows.len() >= MAX_ACTORS {
            actors.untracked += 1;
            return out;
        }
        let window = actors
            .windows
            .entry(event.actor.clone())
            .or_insert_with(|| Window {
                opened: now,
                recorded: 0,
                folds: BTreeMap::new(),
            });
        if window.recorded < self.limits.per_window {
            window.recorded += 1;
            out.push(event);
        } else {
            if window.folds.is_empty() {
                tracing::warn!(
                    actor = %event.actor,
                    "over {} unprivileged audit events in {:?}: the rest of this window is \
                     recorded as aggregate events",
                    self.limits.per_window,
                    self.limits.window
                );
            }
            fold(window, event);
        }
        out
    }

    /// The aggregates of every window `now` has closed, stamped `at`; those windows are
    /// forgotten.
    pub fn close_windows(&self, now: Instant, at: Timestamp) -> Vec<AuditEvent> {
        let mut actors = self.actors.lock();
        if actors.untracked > 0 {
            tracing::warn!(
                events = actors.untracked,
                "unprivileged audit events not recorded: over {MAX_ACTORS} actors at once"
            );
            actors.untracked = 0;
        }
        let closed: Vec<String> = actors
            .windows
            .iter()
            .filter(|(_, window)| self.closed(window, now))
            .map(|(actor, _)| actor.clone())
            .collect();
        let mut out = Vec::new();
        for actor in closed {
            if let Some(window) = actors.windows.remove(&actor) {
                out.extend(self.aggregates(&actor, window, at));
            }
        }
        out
    }

    /// The aggregates of every open window, stamped `at` (a node stopping writes what it holds).
    pub fn close_all(&self, at: Timestamp) -> Vec<AuditEvent> {
        let windows = std::mem::take(&mut self.actors.lock().windows);
        windows
            .into_iter()
            .flat_map(|(actor, window)| self.aggregates(&actor, window, at))
            .collect()
    }

    fn closed(&self, window: &Window, now: Instant) -> bool {
        now.saturating_duration_since(window.opened) >= self.limits.window
    }

    /// One aggregate event per key folded in `window`.
    fn aggregates(&self, actor: &str, window: Window, at: Timestamp) -> Vec<AuditEvent> {
        window
            .folds
            .into_iter()
            .map(|(key, fold)| AuditEvent {
                actor: actor.to_owned(),
                detail: format!(
                    "{} more between {} and {}, recorded as this one event (the first {} of each \
                     {} s window are recorded one by one)",
                    fold.count,
                    fold.first.rfc3339(),
                    fold.last.rfc3339(),
                    self.limits.per_window,
                    self.limits.window.as_secs_f64()
                ),
                action: key.action,
                target: key.target,
                at,
                outcome: fold.outcome,
                class: AuditClass::Unprivileged,
                count: fold.count,
            })
            .collect()
    }
}

/// Adds `event` to its window's aggregate.
fn fold(window: &mut Window, event: AuditEvent) {
    let mut key = FoldKey {
        action: event.action,
        target: event.target,
        outcome: event.outcome.name(),
    };
    if !window.folds.contains_key(&key) && window.folds.len() >= FOLDS_PER_ACTOR {
        key.action = "*".to_owned();
        key.target = "*".to_owned();
    }
    let fold = window.folds.entry(key).or_insert_with(|| Fold {
        count: 0,
        first: event.at,
        last: event.at,
        outcome: Outcome::Succeeded,
    });
    fold.count += event.count;
    fold.first = fold.first.min(event.at);
    fold.last = fold.last.max(event.at);
    fold.outcome = event.outcome;
}

#[cfg(test)]
mod tests;
