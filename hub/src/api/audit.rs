//! Recording audit events from the services (Admin API calls, webhooks) and listing them
//! (`ListAudit`, `flotilla audit`).
//!
//! Stage changes (promotions, rollbacks, pauses, approvals, failures) are audited by the state
//! machine as they apply, so none can be missed; the services add what the state cannot see:
//! who asked for something refused before any command (denied or failed calls), and the calls
//! whose commands do not audit themselves (clusters, tokens, fetches).
//!
//! Refusals of callers who presented no valid credentials, and refused agent calls (a hello or a
//! report naming another cluster, a removed cluster's or a revoked certificate), are recorded at
//! most [`UNAUTHENTICATED_PER_MINUTE`] times a minute per node and kind of caller: anyone who can
//! reach the port, or an agent retrying for ever, could otherwise fill the bounded audit log
//! with noise through raft and push real events out of it. The rest are counted and logged.
//! Each kind has its own budget, so a looping agent cannot hide a stranger's refusals, nor the
//! reverse.

use std::time::{Duration, Instant};

use flotilla_proto::v1::{AdminAuditEvent, AdminAuditList, AdminListAuditRequest};
use parking_lot::Mutex;

use super::caller::Caller;
use crate::auth::Action;
use crate::clock::Clock;
use crate::node::NodeHandle;
use crate::server::HubContext;
use crate::state::State;
use crate::state::audit::{AuditEvent, Outcome};
use crate::state::{Command, Timestamp};

/// Refusals recorded per minute, node and kind of caller (unauthenticated, agents); the rest
/// are only counted and logged.
pub const UNAUTHENTICATED_PER_MINUTE: u32 = 20;

/// Events `ListAudit` returns when the request sets no limit.
const DEFAULT_LIMIT: usize = 100;

/// Who audit events name for a caller without valid credentials.
pub const UNAUTHENTICATED_ACTOR: &str = "unauthenticated";

/// How audit events name an agent (`agent:cluster NAME`), by its certificate.
pub const AGENT_ACTOR_PREFIX: &str = "agent:";

/// What one node records of the refusals it serves.
#[derive(Debug)]
pub struct AuditTrail {
    unauthenticated: Mutex<Budget>,
    agents: Mutex<Budget>,
}

/// Refusals recorded and suppressed in the current minute, for one kind of caller.
#[derive(Debug)]
struct Budget {
    /// Whose refusals, for the log line about those suppressed.
    whose: &'static str,
    window_start: Instant,
    recorded: u32,
    suppressed: u64,
}

impl Budget {
    fn new(whose: &'static str) -> Self {
        Budget {
            whose,
            window_start: Instant::now(),
            recorded: 0,
            suppressed: 0,
        }
    }

    /// Whether one more refusal may be recorded at `now`.
    fn admit(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= Duration::from_secs(60) {
            if self.suppressed > 0 {
                tracing::warn!(
                    suppressed = self.suppressed,
                    "{} refused but not audited (over {UNAUTHENTICATED_PER_MINUTE} a minute)",
                    self.whose
                );
            }
            *self = Budget {
                window_start: now,
                ..Budget::new(self.whose)
            };
        }
        if self.recorded < UNAUTHENTICATED_PER_MINUTE {
            self.recorded += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

impl Default for AuditTrail {
    fn default() -> Self {
        AuditTrail {
            unauthenticated: Mutex::new(Budget::new("unauthenticated requests")),
            agents: Mutex::new(Budget::new("agent calls")),
        }
    }
}

impl AuditTrail {
    /// Whether `entry` may be recorded at `now`: refusals of unauthenticated callers and of
    /// agents within their budgets, everything else always.
    fn admit(&self, entry: &Entry<'_>, now: Instant) -> bool {
        if !matches!(entry.outcome, Outcome::Denied(_)) {
            return true;
        }
        let budget = if entry.actor.starts_with(UNAUTHENTICATED_ACTOR) {
            &self.unauthenticated
        } else if entry.actor.starts_with(AGENT_ACTOR_PREFIX) {
            &self.agents
        } else {
            return true;
        };
        budget.lock().admit(now)
    }
}

/// One event to record.
pub struct Entry<'a> {
    /// Who.
    pub actor: &'a str,
    /// What, e.g. `cluster.add`.
    pub action: &'a str,
    /// What to, e.g. `cluster/a`.
    pub target: &'a str,
    /// Detail for people.
    pub detail: String,
    /// How it ended.
    pub outcome: Outcome,
}

/// Records an event; a failure to record is logged, never fails the call it describes.
/// Unauthenticated and agents' refusals are rate-limited per node (see the module).
pub async fn record(hub: &HubContext, entry: Entry<'_>) {
    record_on(&hub.node, hub.clock.as_ref(), &hub.audit, entry).await;
}

/// [`record`] for a service that holds the node, its clock and its trail rather than the
/// whole [`HubContext`] (the agent protocol).
pub async fn record_on(node: &NodeHandle, clock: &dyn Clock, trail: &AuditTrail, entry: Entry<'_>) {
    if !trail.admit(&entry, Instant::now()) {
        return;
    }
    let event = AuditEvent {
        actor: entry.actor.to_owned(),
        action: entry.action.to_owned(),
        target: entry.target.to_owned(),
        detail: entry.detail,
        at: clock.now(),
        outcome: entry.outcome,
    };
    tracing::info!(
        actor = %event.actor,
        action = %event.action,
        target = %event.target,
        outcome = %event.outcome,
        "audit"
    );
    if let Err(e) = node.propose(&Command::RecordAudit { event }).await {
        tracing::warn!(error = %e, action = entry.action, "audit event not recorded");
    }
}

/// An event as the API shows it.
pub(super) fn to_proto(seq: u64, event: &AuditEvent) -> AdminAuditEvent {
    AdminAuditEvent {
        at_ms: event.at.0 as i64,
        actor: event.actor.clone(),
        action: event.action.clone(),
        detail: event.detail.clone(),
        target: event.target.clone(),
        outcome: event.outcome.name().to_owned(),
        reason: event.outcome.reason().to_owned(),
        seq,
    }
}

/// The stage an event is about, if any.
fn stage_of(event: &AuditEvent) -> Option<&str> {
    event.target.strip_prefix("stage/")
}

/// `ListAudit`: newest first, filtered by the request and by what the caller may view.
pub(super) fn list(
    state: &State,
    caller: &Caller,
    request: &AdminListAuditRequest,
) -> AdminAuditList {
    let limit = match request.limit {
        0 => DEFAULT_LIMIT,
        n => n as usize,
    };
    let since = Timestamp(request.since_ms.max(0) as u64);
    let everything = caller.sees_everything();
    let events = state
        .audit
        .since(0)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .filter(|(_, e)| e.at >= since)
        .filter(|(_, e)| request.actor.is_empty() || e.actor == request.actor)
        .filter(|(_, e)| request.stage.is_empty() || stage_of(e) == Some(request.stage.as_str()))
        .filter(|(_, e)| match stage_of(e) {
            Some(stage) => caller.can(Action::View, Some(stage)),
            None => everything,
        })
        .take(limit)
        .map(|(seq, e)| to_proto(seq, e))
        .collect();
    AdminAuditList { events }
}

#[cfg(test)]
mod tests;
