use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::{LivenessConfig, LivenessJudge};
use crate::state::{Command, State, Timestamp};

fn fleet(online: &[(&str, bool)]) -> State {
    let mut state = State::default();
    for (name, up) in online {
        state
            .apply(&Command::RegisterCluster {
                name: (*name).to_owned(),
                labels: BTreeMap::new(),
                at: Timestamp(1),
            })
            .expect("registered");
        state
            .apply(&Command::SetLiveness {
                cluster: (*name).to_owned(),
                online: *up,
                at: Timestamp(2),
            })
            .expect("liveness");
    }
    state
}

fn config() -> LivenessConfig {
    LivenessConfig {
        offline_after: Duration::from_secs(3),
        check_interval: Duration::from_millis(100),
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn a_cluster_named_by_a_report_goes_online_at_once() {
    let start = Instant::now();
    let judge = LivenessJudge::new(&config(), start);
    let state = fleet(&[("a", false), ("b", false)]);
    let seen = HashMap::from([("a".to_owned(), start)]);
    assert_eq!(
        judge.transitions(start, &seen, &state),
        vec![("a".to_owned(), true)]
    );
}

#[test]
fn a_cluster_goes_offline_once_no_report_named_it_for_offline_after() {
    let start = Instant::now();
    let judge = LivenessJudge::new(&config(), start);
    let state = fleet(&[("a", true)]);
    let seen = HashMap::from([("a".to_owned(), start + secs(5))]);
    assert!(judge.transitions(start + secs(7), &seen, &state).is_empty());
    assert_eq!(
        judge.transitions(start + secs(8), &seen, &state),
        vec![("a".to_owned(), false)]
    );
}

#[test]
fn a_new_leader_listens_for_offline_after_before_marking_anything_offline() {
    let start = Instant::now();
    let judge = LivenessJudge::new(&config(), start);
    let state = fleet(&[("a", true), ("b", true)]);
    let nothing = HashMap::new();
    assert!(
        judge
            .transitions(start + secs(2), &nothing, &state)
            .is_empty()
    );
    let seen_b = HashMap::from([("b".to_owned(), start + secs(1))]);
    assert_eq!(
        judge.transitions(start + secs(3), &seen_b, &state),
        vec![("a".to_owned(), false)]
    );
}

#[test]
fn recorded_flags_are_not_proposed_again() {
    let start = Instant::now();
    let judge = LivenessJudge::new(&config(), start);
    let state = fleet(&[("up", true), ("down", false)]);
    let seen = HashMap::from([("up".to_owned(), start + secs(9))]);
    assert!(
        judge
            .transitions(start + secs(10), &seen, &state)
            .is_empty()
    );
}

#[test]
fn reports_about_unregistered_clusters_change_nothing() {
    let start = Instant::now();
    let judge = LivenessJudge::new(&config(), start);
    let state = fleet(&[]);
    let seen = HashMap::from([("ghost".to_owned(), start)]);
    assert!(judge.transitions(start, &seen, &state).is_empty());
}
