//! Recording audit events from the services (Admin API calls, webhooks) and listing them
//! (`ListAudit`, `flotilla audit`).
//!
//! Stage changes (promotions, rollbacks, pauses, approvals, failures) are audited by the state
//! machine as they apply, so none can be missed; the services add what the state cannot see:
//! who asked for something refused before any command (denied or failed calls), and the calls
//! whose commands do not audit themselves (clusters, tokens, fetches).
//!
//! Refusals of callers who presented no valid credentials are recorded at most
//! [`UNAUTHENTICATED_PER_MINUTE`] times a minute per node: anyone who can reach the port could
//! otherwise fill the bounded audit log with noise and push real events out of it. The rest are
//! counted and logged.

use std::time::{Duration, Instant};

use flotilla_proto::v1::{AdminAuditEvent, AdminAuditList, AdminListAuditRequest};
use parking_lot::Mutex;

use super::caller::Caller;
use crate::auth::Action;
use crate::server::HubContext;
use crate::state::State;
use crate::state::audit::{AuditEvent, Outcome};
use crate::state::{Command, Timestamp};

/// Unauthenticated refusals recorded per minute and node; the rest are only counted and logged.
pub const UNAUTHENTICATED_PER_MINUTE: u32 = 20;

/// Events `ListAudit` returns when the request sets no limit.
const DEFAULT_LIMIT: usize = 100;

/// Who audit events name for a caller without valid credentials.
pub const UNAUTHENTICATED_ACTOR: &str = "unauthenticated";

/// What one node records of the refusals it serves.
#[derive(Debug)]
pub struct AuditTrail {
    budget: Mutex<Budget>,
}

#[derive(Debug)]
struct Budget {
    window_start: Instant,
    recorded: u32,
    suppressed: u64,
}

impl Default for AuditTrail {
    fn default() -> Self {
        AuditTrail {
            budget: Mutex::new(Budget {
                window_start: Instant::now(),
                recorded: 0,
                suppressed: 0,
            }),
        }
    }
}

impl AuditTrail {
    /// Whether an unauthenticated refusal may be recorded now.
    fn admit_unauthenticated(&self) -> bool {
        let mut budget = self.budget.lock();
        if budget.window_start.elapsed() >= Duration::from_secs(60) {
            if budget.suppressed > 0 {
                tracing::warn!(
                    suppressed = budget.suppressed,
                    "unauthenticated requests refused but not audited (over {UNAUTHENTICATED_PER_MINUTE} a minute)"
                );
            }
            *budget = Budget {
                window_start: Instant::now(),
                recorded: 0,
                suppressed: 0,
            };
        }
        if budget.recorded < UNAUTHENTICATED_PER_MINUTE {
            budget.recorded += 1;
            true
        } else {
            budget.suppressed += 1;
            false
        }
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
/// Unauthenticated refusals are rate-limited per node (see the module).
pub async fn record(hub: &HubContext, entry: Entry<'_>) {
    if entry.actor.starts_with(UNAUTHENTICATED_ACTOR)
        && matches!(entry.outcome, Outcome::Denied(_))
        && !hub.audit.admit_unauthenticated()
    {
        return;
    }
    let event = AuditEvent {
        actor: entry.actor.to_owned(),
        action: entry.action.to_owned(),
        target: entry.target.to_owned(),
        detail: entry.detail,
        at: hub.clock.now(),
        outcome: entry.outcome,
    };
    tracing::info!(
        actor = %event.actor,
        action = %event.action,
        target = %event.target,
        outcome = %event.outcome,
        "audit"
    );
    if let Err(e) = hub.node.propose(&Command::RecordAudit { event }).await {
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
