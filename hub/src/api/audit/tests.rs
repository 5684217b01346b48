use super::*;

#[test]
fn unauthenticated_refusals_are_recorded_up_to_the_budget_per_minute() {
    let trail = AuditTrail::default();
    let admitted = (0..UNAUTHENTICATED_PER_MINUTE + 5)
        .filter(|_| trail.admit_unauthenticated())
        .count();
    assert_eq!(admitted, UNAUTHENTICATED_PER_MINUTE as usize);
    assert_eq!(trail.budget.lock().suppressed, 5);
}

#[test]
fn an_event_shows_its_outcome_and_reason() {
    let event = AuditEvent {
        actor: "token:ci".into(),
        action: "promote".into(),
        target: "stage/prod".into(),
        detail: String::new(),
        at: Timestamp(5),
        outcome: Outcome::Denied("needs the deployer role".into()),
    };
    let shown = to_proto(7, &event);
    assert_eq!(
        (shown.seq, shown.outcome.as_str(), shown.reason.as_str()),
        (7, "denied", "needs the deployer role")
    );
    assert_eq!(stage_of(&event), Some("prod"));
}
