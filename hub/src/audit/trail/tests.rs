use std::time::{Duration, Instant};

use super::*;
use crate::audit::UNAUTHENTICATED_ACTOR;

const LIMITS: AuditLimits = AuditLimits {
    window: Duration::from_secs(60),
    per_window: 10,
};

fn refusal(actor: &str, action: &str, target: &str, at: u64) -> AuditEvent {
    AuditEvent {
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        detail: String::new(),
        at: Timestamp(at),
        outcome: Outcome::Denied("needs the deployer role".into()),
        class: AuditClass::Unprivileged,
        count: 1,
    }
}

/// Admits `calls` refusals of `actor` at `now`; the events to propose.
fn admit(trail: &AuditTrail, actor: &str, calls: u64, now: Instant) -> Vec<AuditEvent> {
    (0..calls)
        .flat_map(|at| trail.admit(refusal(actor, "pause", "stage/prod", at), now))
        .collect()
}

#[test]
fn an_actors_first_refusals_are_recorded_and_the_rest_become_one_aggregate_with_their_count() {
    let trail = AuditTrail::new(LIMITS);
    let now = Instant::now();
    let recorded = admit(&trail, "token:snoop", 10_500, now);
    assert_eq!(recorded.len(), 10);
    assert!(recorded.iter().all(|e| e.count == 1));
    assert!(
        trail
            .close_windows(now + Duration::from_secs(59), Timestamp(1))
            .is_empty(),
        "the window is still open"
    );

    let closed = trail.close_windows(now + LIMITS.window, Timestamp(70_000));
    assert_eq!(closed.len(), 1);
    let aggregate = &closed[0];
    assert_eq!(
        (
            aggregate.actor.as_str(),
            aggregate.action.as_str(),
            aggregate.target.as_str(),
            aggregate.outcome.name(),
            aggregate.count,
            aggregate.at,
            aggregate.class,
        ),
        (
            "token:snoop",
            "pause",
            "stage/prod",
            "denied",
            10_490,
            Timestamp(70_000),
            AuditClass::Unprivileged
        )
    );
    assert!(
        aggregate.detail.starts_with(
            "10490 more between 1970-01-01T00:00:00.010Z and 1970-01-01T00:00:10.499Z"
        ),
        "{}",
        aggregate.detail
    );
    assert_eq!(aggregate.outcome.reason(), "needs the deployer role");
    assert!(
        trail
            .close_windows(now + 2 * LIMITS.window, Timestamp(1))
            .is_empty(),
        "written once"
    );
}

#[test]
fn the_next_refusal_after_the_window_writes_the_aggregate_first_and_opens_a_new_window() {
    let trail = AuditTrail::new(LIMITS);
    let now = Instant::now();
    admit(&trail, "token:snoop", 15, now);
    let later = trail.admit(
        refusal("token:snoop", "promote", "stage/prod", 99),
        now + LIMITS.window,
    );
    let shown: Vec<(&str, u64)> = later.iter().map(|e| (e.action.as_str(), e.count)).collect();
    assert_eq!(shown, [("pause", 5), ("promote", 1)]);
}

#[test]
fn each_actor_has_its_own_limit() {
    let trail = AuditTrail::new(LIMITS);
    let now = Instant::now();
    assert_eq!(admit(&trail, "token:snoop", 50, now).len(), 10);
    // A flooding token hides neither strangers' refusals nor a looping agent's, nor the reverse.
    assert_eq!(admit(&trail, UNAUTHENTICATED_ACTOR, 50, now).len(), 10);
    assert_eq!(admit(&trail, "agent:cluster edge-1", 50, now).len(), 10);
    assert_eq!(admit(&trail, "token:ci", 1, now).len(), 1);
    let mut closed: Vec<(String, u64)> = trail
        .close_windows(now + LIMITS.window, Timestamp(1))
        .into_iter()
        .map(|e| (e.actor, e.count))
        .collect();
    closed.sort();
    assert_eq!(
        closed,
        [
            ("agent:cluster edge-1".to_owned(), 40),
            ("token:snoop".to_owned(), 40),
            ("unauthenticated".to_owned(), 40),
        ]
    );
}

#[test]
fn privileged_events_are_never_limited() {
    let trail = AuditTrail::new(LIMITS);
    let now = Instant::now();
    let change = AuditEvent {
        outcome: Outcome::Succeeded,
        class: AuditClass::Privileged,
        ..refusal("token:ci", "promote", "stage/prod", 1)
    };
    let recorded: usize = (0..100)
        .map(|_| trail.admit(change.clone(), now).len())
        .sum();
    assert_eq!(recorded, 100);
    assert!(trail.close_all(Timestamp(2)).is_empty());
}

#[test]
fn an_actor_varying_its_targets_gets_a_bounded_number_of_aggregates() {
    let trail = AuditTrail::new(LIMITS);
    let now = Instant::now();
    for i in 0..1_000 {
        trail.admit(
            refusal("token:snoop", "pause", &format!("stage/s{i}"), i),
            now,
        );
    }
    let closed = trail.close_all(Timestamp(5));
    assert_eq!(closed.len(), FOLDS_PER_ACTOR + 1);
    assert_eq!(closed.iter().map(|e| e.count).sum::<u64>(), 990);
    let rest = closed
        .iter()
        .find(|e| e.target == "*")
        .map(|e| (e.action.as_str(), e.count));
    assert_eq!(rest, Some(("*", 990 - FOLDS_PER_ACTOR as u64)));
}

#[test]
fn a_stopping_node_writes_the_aggregates_of_open_windows() {
    let trail = AuditTrail::new(LIMITS);
    let now = Instant::now();
    admit(&trail, "token:snoop", 12, now);
    let closed = trail.close_all(Timestamp(9));
    assert_eq!(closed.iter().map(|e| e.count).collect::<Vec<_>>(), [2]);
}
