use super::*;

fn refusal<'a>(actor: &'a str) -> Entry<'a> {
    Entry {
        actor,
        action: "agent.sync",
        target: "cluster/edge-2",
        detail: String::new(),
        outcome: Outcome::Denied("refused".into()),
    }
}

fn admitted(trail: &AuditTrail, actor: &str, calls: u32, now: Instant) -> usize {
    (0..calls)
        .filter(|_| trail.admit(&refusal(actor), now))
        .count()
}

#[test]
fn unauthenticated_refusals_are_recorded_up_to_the_budget_per_minute() {
    let trail = AuditTrail::default();
    let now = Instant::now();
    let over = UNAUTHENTICATED_PER_MINUTE + 5;
    assert_eq!(
        admitted(&trail, UNAUTHENTICATED_ACTOR, over, now),
        UNAUTHENTICATED_PER_MINUTE as usize
    );
    assert_eq!(trail.unauthenticated.lock().suppressed, 5);
}

#[test]
fn agents_refusals_have_their_own_budget_per_minute_and_it_refills() {
    let trail = AuditTrail::default();
    let now = Instant::now();
    let over = UNAUTHENTICATED_PER_MINUTE + 5;
    let agent = "agent:cluster edge-1";
    assert_eq!(
        admitted(&trail, agent, over, now),
        UNAUTHENTICATED_PER_MINUTE as usize
    );
    assert_eq!(trail.agents.lock().suppressed, 5);
    // A looping agent has not used up the strangers' budget.
    assert_eq!(admitted(&trail, UNAUTHENTICATED_ACTOR, 1, now), 1);
    // A minute later the agent's refusals are recorded again.
    assert_eq!(admitted(&trail, agent, 1, now + Duration::from_secs(60)), 1);
}

#[test]
fn operators_refusals_and_agents_successes_are_never_limited() {
    let trail = AuditTrail::default();
    let now = Instant::now();
    let calls = UNAUTHENTICATED_PER_MINUTE * 3;
    assert_eq!(admitted(&trail, "token:ci", calls, now), calls as usize);
    let allowed = Entry {
        outcome: Outcome::Succeeded,
        ..refusal("agent:cluster edge-1")
    };
    assert!((0..calls).all(|_| trail.admit(&allowed, now)));
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
