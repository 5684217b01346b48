use super::*;
use crate::state::Command;
use crate::state::health::{ApplyFailure, HealthKey, HealthReport};
use crate::state::tests::{apply_ok, fleet, render, rev, t};

/// The content `commit` wants on `cluster` for bundle `app`.
fn content(state: &State, commit: &str, cluster: &str) -> super::super::source::BlobHash {
    state.revisions[&rev(commit)]
        .bundles_for(cluster)
        .expect("rendered")["app"]
}

fn report(
    cluster: &str,
    applied: Option<super::super::source::BlobHash>,
    health: Health,
    at: u64,
) -> HealthReport {
    HealthReport {
        key: HealthKey {
            cluster: cluster.into(),
            bundle: "app".into(),
        },
        applied,
        health,
        message: format!("{health:?} at {at}"),
        drifted: Vec::new(),
        failed: None,
        last_drift: None,
        drift_corrections: 0,
        added: Vec::new(),
        at: t(at),
    }
}

fn record(state: &mut State, reports: Vec<HealthReport>) {
    apply_ok(state, Command::RecordHealth { reports });
}

/// Pins stage `prod` to `commit` and gives it to cluster `a`, as a rollout would.
fn give_a(state: &mut State, commit: &str, at: u64) {
    apply_ok(
        state,
        Command::PinStage {
            stage: "prod".into(),
            revision: rev(commit),
            change: crate::state::stage::StageChange::Track,
            by: "alice".into(),
            reason: "next".into(),
            at: t(at),
        },
    );
    apply_ok(
        state,
        Command::AssignRevision {
            clusters: vec!["a".into()],
            revision: rev(commit),
            at: t(at),
        },
    );
}

fn newest<'a>(state: &'a State, cluster: &str) -> &'a Delivery {
    state.clusters[cluster]
        .deliveries
        .last()
        .expect("a delivery")
}

#[test]
fn a_delivery_records_given_applied_healthy_and_the_last_problem_before() {
    let mut state = fleet();
    for name in ["a", "b", "c"] {
        let delivery = newest(&state, name);
        assert_eq!((delivery.commit.as_str(), delivery.given_at), ("c1", t(21)));
        assert_eq!((delivery.applied_at, delivery.healthy_at), (None, None));
    }
    let (a, b, c) = (
        content(&state, "c1", "a"),
        content(&state, "c1", "b"),
        content(&state, "c1", "c"),
    );

    // a: applied and healthy in one report.
    record(&mut state, vec![report("a", Some(a), Health::Healthy, 100)]);
    assert_eq!(newest(&state, "a").applied_at, Some(t(100)));
    assert_eq!(newest(&state, "a").healthy_at, Some(t(100)));
    assert_eq!(newest(&state, "a").problem, None);

    // b: applied, then Degraded, then Healthy: the problem stays as what happened on the way.
    record(
        &mut state,
        vec![report("b", Some(b), Health::Progressing, 100)],
    );
    assert_eq!(newest(&state, "b").applied_at, Some(t(100)));
    assert_eq!(newest(&state, "b").healthy_at, None);
    record(
        &mut state,
        vec![report("b", Some(b), Health::Degraded, 110)],
    );
    let problem = newest(&state, "b").problem.clone().expect("a problem");
    assert_eq!(problem.at, t(110));
    assert_eq!(problem.message, "bundle app: Degraded: Degraded at 110");
    record(&mut state, vec![report("b", Some(b), Health::Healthy, 120)]);
    assert_eq!(newest(&state, "b").healthy_at, Some(t(120)));
    assert_eq!(newest(&state, "b").applied_at, Some(t(100)));
    // Once Healthy, later reports change nothing of the delivery.
    record(
        &mut state,
        vec![report("b", Some(b), Health::Degraded, 130)],
    );
    assert_eq!(newest(&state, "b").healthy_at, Some(t(120)));
    assert_eq!(newest(&state, "b").problem, Some(problem));

    // c: the API server refuses the apply.
    let mut refused = report("c", None, Health::Unknown, 100);
    refused.failed = Some(ApplyFailure {
        content: Some(c),
        errors: vec!["v1/ConfigMap app/app: data: Invalid value".into()],
        permanent: true,
    });
    record(&mut state, vec![refused]);
    let delivery = newest(&state, "c");
    assert_eq!((delivery.applied_at, delivery.healthy_at), (None, None));
    assert_eq!(
        delivery.problem.as_ref().map(|p| p.message.as_str()),
        Some("bundle app: apply failed: v1/ConfigMap app/app: data: Invalid value")
    );
}

#[test]
fn a_new_revision_starts_a_new_delivery_and_old_content_does_not_count_for_it() {
    let mut state = fleet();
    let old = content(&state, "c1", "a");
    record(
        &mut state,
        vec![report("a", Some(old), Health::Healthy, 100)],
    );
    give_a(&mut state, "c2", 200);
    let deliveries = &state.clusters["a"].deliveries;
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0].healthy_at, Some(t(100)));
    assert_eq!(
        (deliveries[1].commit.as_str(), deliveries[1].given_at),
        ("c2", t(200))
    );
    // The agent still reports the old content: c2 is neither applied nor healthy.
    record(
        &mut state,
        vec![report("a", Some(old), Health::Healthy, 210)],
    );
    assert_eq!(newest(&state, "a").applied_at, None);
    let new = content(&state, "c2", "a");
    record(
        &mut state,
        vec![report("a", Some(new), Health::Healthy, 220)],
    );
    assert_eq!(newest(&state, "a").healthy_at, Some(t(220)));
    // Giving the same commit again records nothing new.
    give_a(&mut state, "c2", 300);
    assert_eq!(state.clusters["a"].deliveries.len(), 2);
    assert_eq!(newest(&state, "a").given_at, t(200));
}

#[test]
fn a_cluster_keeps_its_newest_deliveries_only() {
    let mut state = fleet();
    let commits: Vec<String> = (0..DELIVERIES_KEPT + 3).map(|i| format!("n{i}")).collect();
    for (i, commit) in commits.iter().enumerate() {
        render(&mut state, commit, &["a", "b", "c"]);
        give_a(&mut state, commit, 1_000 + i as u64);
    }
    let kept: Vec<&str> = state.clusters["a"]
        .deliveries
        .iter()
        .map(|d| d.commit.as_str())
        .collect();
    let newest: Vec<&str> = commits[commits.len() - DELIVERIES_KEPT..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(kept, newest);
    assert!(state.clusters["a"].deliveries.capacity() <= DELIVERIES_KEPT);
}

/// Renders `commit` with the very content `c1` has for every cluster: a commit that changes
/// nothing these clusters hold (a README, another stage's overlay).
fn render_unchanged(state: &mut State, commit: &str) {
    crate::state::tests::render_with(state, commit, &["a", "b", "c"], |cluster| {
        format!("c1 {cluster}")
    });
}

fn online(state: &mut State, cluster: &str) {
    apply_ok(
        state,
        Command::SetLiveness {
            cluster: cluster.into(),
            online: true,
            at: t(50),
        },
    );
}

#[test]
fn a_commit_that_changes_nothing_a_reporting_cluster_holds_is_applied_and_healthy_when_given() {
    let mut state = fleet();
    online(&mut state, "a");
    let c1 = content(&state, "c1", "a");
    record(
        &mut state,
        vec![report("a", Some(c1), Health::Healthy, 100)],
    );
    render_unchanged(&mut state, "same");
    assert_eq!(content(&state, "same", "a"), c1, "the same content");
    give_a(&mut state, "same", 200);
    let delivery = newest(&state, "a");
    assert_eq!(delivery.commit, "same");
    assert_eq!(
        (delivery.applied_at, delivery.healthy_at),
        (Some(t(200)), Some(t(200))),
        "the agent had nothing to apply: it holds the commit's content, Healthy"
    );
    // An offline agent's reports are not current: nothing is judged until it reports.
    let mut state = fleet();
    let c1 = content(&state, "c1", "a");
    record(
        &mut state,
        vec![report("a", Some(c1), Health::Healthy, 100)],
    );
    render_unchanged(&mut state, "same");
    give_a(&mut state, "same", 200);
    assert_eq!(newest(&state, "a").applied_at, None);
}

#[test]
fn a_commit_given_again_after_another_starts_a_new_delivery() {
    let mut state = fleet();
    give_a(&mut state, "c2", 200);
    give_a(&mut state, "c1", 300);
    let commits: Vec<(&str, Timestamp)> = state.clusters["a"]
        .deliveries
        .iter()
        .map(|d| (d.commit.as_str(), d.given_at))
        .collect();
    assert_eq!(commits, [("c1", t(21)), ("c2", t(200)), ("c1", t(300))]);
}
