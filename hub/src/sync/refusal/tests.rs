use std::time::{Duration, Instant};

use super::{LOG_WINDOW, Reason, RefusalLog};

#[test]
fn a_retrying_agent_costs_one_log_line_a_minute() {
    let log = RefusalLog::default();
    let start = Instant::now();
    assert_eq!(log.admit("dev-1", Reason::IdentityConflict, start), Some(0));
    // 130 more attempts within the window: none logged.
    let logged = (1..=130u64)
        .filter_map(|i| {
            log.admit(
                "dev-1",
                Reason::IdentityConflict,
                start + Duration::from_millis(100 * i),
            )
        })
        .count();
    assert_eq!(logged, 0);
    // The first after the window says how many were left out.
    assert_eq!(
        log.admit("dev-1", Reason::IdentityConflict, start + LOG_WINDOW),
        Some(130)
    );
    assert_eq!(
        log.admit(
            "dev-1",
            Reason::IdentityConflict,
            start + LOG_WINDOW + Duration::from_secs(1)
        ),
        None
    );
}

#[test]
fn other_clusters_and_reasons_are_logged_on_their_own() {
    let log = RefusalLog::default();
    let now = Instant::now();
    assert_eq!(log.admit("dev-1", Reason::IdentityConflict, now), Some(0));
    assert_eq!(log.admit("dev-1", Reason::StreamHeld, now), Some(0));
    assert_eq!(log.admit("prod-1", Reason::IdentityConflict, now), Some(0));
    assert_eq!(log.admit("dev-1", Reason::IdentityConflict, now), None);
}

#[test]
fn five_thousand_garbage_registrations_cost_one_log_line_and_no_audit_event() {
    let log = RefusalLog::default();
    let start = Instant::now();
    let logged = (0..5_000u64)
        .filter_map(|i| {
            log.admit(
                "-",
                Reason::BootstrapToken,
                start + Duration::from_micros(40 * i),
            )
        })
        .count();
    assert_eq!(logged, 1, "the first is logged, the rest counted");
    assert!(
        !Reason::BootstrapToken.audited(),
        "strangers write no audit events"
    );
}
