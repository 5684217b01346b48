//! Every agent call a node refuses goes through here: counted by reason
//! (`flotilla_agent_refusals_total`), audited within the node's per-actor limits when it says
//! something about the agent's credentials or cluster, and logged with a throttle — the first
//! refusal of each kind for a cluster, then one line a minute saying how many more there were.
//!
//! An agent retrying a refused call does so for ever (with backoff), and every attempt used to
//! cost a log line; a misconfigured fleet would bury everything else in the log.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::Status;

use super::Shared;
use crate::audit;
use crate::state::audit::{AuditClass, Outcome};

#[cfg(test)]
mod tests;

/// How long one log line stands for the refusals of its kind and cluster.
const LOG_WINDOW: Duration = Duration::from_secs(60);

/// Kinds and clusters whose refusals are remembered for the throttle; beyond, a new one is
/// logged without throttling (the names come from verified certificates or registered
/// clusters, so this bounds memory against a bug, not an attacker).
const MAX_KEYS: usize = 4096;

/// Why an agent call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Reason {
    /// The certificate no longer stands: cluster removed, serial revoked, expired.
    Certificate,
    /// The hello or report names another cluster than the certificate.
    OtherCluster,
    /// The agent talks to another Kubernetes cluster than the one bound to the name.
    IdentityConflict,
    /// The agent reports no cluster identity (it predates identity binding) for a bound name.
    IdentityMissing,
    /// The agent could not read its cluster's identity (its API server is unreachable).
    IdentityUnknown,
    /// Another agent instance streams for the cluster.
    StreamHeld,
    /// A registration's bootstrap token is malformed, unknown, spent or expired.
    BootstrapToken,
}

impl Reason {
    /// The metric label and log field.
    pub(super) fn name(self) -> &'static str {
        match self {
            Reason::Certificate => "certificate",
            Reason::OtherCluster => "other_cluster",
            Reason::IdentityConflict => "identity_conflict",
            Reason::IdentityMissing => "identity_missing",
            Reason::IdentityUnknown => "identity_unknown",
            Reason::StreamHeld => "stream_held",
            Reason::BootstrapToken => "bootstrap_token",
        }
    }

    /// Whether the refusal goes to the audit trail: everything that says something about the
    /// agent's credentials or the cluster it acts on. A cluster whose API server is down says
    /// nothing of the kind.
    fn audited(self) -> bool {
        !matches!(self, Reason::IdentityUnknown | Reason::BootstrapToken)
    }
}

/// One refusal to report.
pub(super) struct Refusal<'a> {
    /// Why.
    pub(super) reason: Reason,
    /// Who asked: `agent:cluster NAME`.
    pub(super) actor: &'a str,
    /// What was asked: `agent.sync`, `agent.register`, `agent.report`.
    pub(super) action: &'static str,
    /// The cluster it was about.
    pub(super) cluster: &'a str,
}

/// Counts, logs (throttled) and audits (within the per-actor limits) a refusal; returns the
/// status to answer with.
pub(super) async fn refuse(shared: &Shared, refusal: Refusal<'_>, status: Status) -> Status {
    let reason = refusal.reason.name();
    shared
        .metrics
        .agent_refusals
        .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
        .inc();
    if let Some(more) = shared
        .refusals
        .admit(refusal.cluster, refusal.reason, Instant::now())
    {
        tracing::warn!(
            actor = refusal.actor,
            action = refusal.action,
            cluster = refusal.cluster,
            reason,
            more_in_last_window = more,
            "agent refused: {}",
            status.message()
        );
    }
    if refusal.reason.audited() {
        let target = format!("cluster/{}", refusal.cluster);
        let entry = audit::Entry {
            actor: refusal.actor,
            action: refusal.action,
            target: &target,
            detail: String::new(),
            outcome: Outcome::Denied(status.message().to_owned()),
            class: AuditClass::Unprivileged,
        };
        audit::record_on(&shared.node, shared.clock.as_ref(), &shared.audit, entry).await;
    }
    status
}

/// Counts and logs (throttled, under the cluster name `-`) a registration refused for its
/// bootstrap token. Never audited: anyone may call Register, and an audit event is a raft write
/// a stranger could repeat at will.
pub(super) fn refuse_bootstrap(shared: &Shared, refused: &dyn std::fmt::Display) {
    let reason = Reason::BootstrapToken;
    shared
        .metrics
        .agent_refusals
        .get_or_create(&vec![("reason".to_owned(), reason.name().to_owned())])
        .inc();
    if let Some(more) = shared.refusals.admit("-", reason, Instant::now()) {
        tracing::warn!(
            %refused,
            more_in_last_window = more,
            "agent registration refused"
        );
    }
}

/// Which refusals to log: per cluster and reason, the first, then one line per window that
/// says how many were left out.
#[derive(Debug, Default)]
pub(super) struct RefusalLog {
    windows: Mutex<HashMap<(String, Reason), Window>>,
}

#[derive(Debug)]
struct Window {
    opened: Instant,
    suppressed: u64,
}

impl RefusalLog {
    /// `Some(n)` when this refusal is logged, `n` being how many of its kind were left out
    /// since the last line; `None` when it is left out.
    pub(super) fn admit(&self, cluster: &str, reason: Reason, now: Instant) -> Option<u64> {
        let mut windows = self.windows.lock();
        let key = (cluster.to_owned(), reason);
        if let Some(window) = windows.get_mut(&key) {
            if now.saturating_duration_since(window.opened) < LOG_WINDOW {
                window.suppressed += 1;
                return None;
            }
            let suppressed = window.suppressed;
            *window = Window {
                opened: now,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        if windows.len() >= MAX_KEYS {
            windows.retain(|_, w| now.saturating_duration_since(w.opened) < LOG_WINDOW);
        }
        if windows.len() < MAX_KEYS {
            windows.insert(
                key,
                Window {
                    opened: now,
                    suppressed: 0,
                },
            );
        }
        Some(0)
    }
}
