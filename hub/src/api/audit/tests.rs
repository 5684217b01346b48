use super::*;
use crate::state::audit::{AuditClass, Outcome};

#[test]
fn an_event_shows_its_outcome_and_reason() {
    let event = AuditEvent {
        actor: "token:ci".into(),
        action: "promote".into(),
        target: "stage/prod".into(),
        detail: String::new(),
        at: Timestamp(5),
        outcome: Outcome::Denied("needs the deployer role".into()),
        class: AuditClass::Unprivileged,
        count: 1,
    };
    let shown = to_proto(7, &event);
    assert_eq!(
        (shown.seq, shown.outcome.as_str(), shown.reason.as_str()),
        (7, "denied", "needs the deployer role")
    );
    assert_eq!(stage_of(&event), Some("prod"));
}
