//! Listing audit events (`ListAudit`, `flotilla audit`); recording them is `crate::audit`.

use flotilla_proto::v1::{AdminAuditEvent, AdminAuditList, AdminListAuditRequest};

use super::caller::Caller;
use crate::auth::Action;
use crate::state::State;
use crate::state::Timestamp;
use crate::state::audit::AuditEvent;

/// Events `ListAudit` returns when the request sets no limit.
const DEFAULT_LIMIT: usize = 100;

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
        count: event.count,
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
        .newest_first()
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
