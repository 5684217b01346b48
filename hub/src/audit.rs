//! Recording audit events from the services (Admin API calls, webhooks, agents' refused calls);
//! `api::audit` lists them (`ListAudit`, `flotilla audit`).
//!
//! Stage changes (promotions, rollbacks, pauses, approvals, failures) are audited by the state
//! machine as they apply, so none can be missed; the services add what the state cannot see:
//! who asked for something refused before any command (denied or failed calls), and the calls
//! whose commands do not audit themselves (clusters, tokens, fetches).
//!
//! Unprivileged events — refusals, failures and webhook deliveries — pass through the node's
//! [`AuditTrail`] first: per actor, the first of each window are recorded one by one and the
//! rest as aggregate events, so no caller can flood the log through raft. The replicated log
//! keeps them in a ring of their own besides (see `state::audit`), so they cannot push a
//! privileged event out of it either.

mod trail;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::node::NodeHandle;
use crate::state::Command;
use crate::state::audit::{AuditClass, AuditEvent, Outcome};

pub use trail::{AuditLimits, AuditTrail, DEFAULT_PER_WINDOW, DEFAULT_WINDOW};

/// Who audit events name for a caller without valid credentials.
pub const UNAUTHENTICATED_ACTOR: &str = "unauthenticated";

/// How audit events name an agent (`agent:cluster NAME`), by its certificate.
pub const AGENT_ACTOR_PREFIX: &str = "agent:";

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
    /// Which ring keeps it: [`AuditClass::of`] the outcome for a call that needed a role;
    /// unprivileged for what needs none (webhook deliveries).
    pub class: AuditClass,
}

/// Records an event; a failure to record is logged, never fails the call it describes.
/// Unprivileged events are rate-limited per actor (see the module). Services holding the whole
/// context call `HubContext::record_audit`.
pub async fn record_on(node: &NodeHandle, clock: &dyn Clock, trail: &AuditTrail, entry: Entry<'_>) {
    let event = AuditEvent {
        actor: entry.actor.to_owned(),
        action: entry.action.to_owned(),
        target: entry.target.to_owned(),
        detail: entry.detail,
        at: clock.now(),
        outcome: entry.outcome,
        class: entry.class,
        count: 1,
    };
    propose(node, trail.admit(event, Instant::now())).await;
}

/// Proposes `events` in order; a failure is logged.
async fn propose(node: &NodeHandle, events: Vec<AuditEvent>) {
    for event in events {
        let action = event.action.clone();
        if let Err(e) = node.propose(&Command::RecordAudit { event }).await {
            tracing::warn!(error = %e, %action, "audit event not recorded");
        }
    }
}

/// Writes the aggregates of the trail's closed windows as they close, and those of every open
/// window when `stop` is cancelled; runs for as long as the node does.
pub async fn close_windows(
    node: NodeHandle,
    clock: Arc<dyn Clock>,
    trail: Arc<AuditTrail>,
    stop: CancellationToken,
) {
    // A window's aggregates are written at most a quarter of a window after it closes.
    let tick = (trail.limits().window / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
        propose(&node, trail.close_windows(Instant::now(), clock.now())).await;
    }
    propose(&node, trail.close_all(clock.now())).await;
}
