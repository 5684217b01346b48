use super::*;
use std::collections::BTreeMap;

use crate::state::health::{Health, HealthKey, HealthReport};
use crate::state::notice::NoticeKind;
use crate::state::tests::{apply_err, apply_ok, register, rev, t};
use crate::state::{Command, CommandError};

const GATE: Gate = Gate {
    max_unavailable: 2,
    health_timeout_ms: 1_000,
    on_failure: OnFailure::Rollback,
};

/// The limits every stage has unless it says otherwise.
fn guard() -> DeletionLimits {
    DeletionLimits::of(&flotilla_core::spec::DeletionGuard::default())
}

fn waves() -> Vec<PlannedWave> {
    vec![
        PlannedWave {
            name: "canary".into(),
            clusters: vec!["a".into()],
            soak_ms: 100,
        },
        PlannedWave {
            name: "rest".into(),
            clusters: vec!["b".into(), "c".into()],
            soak_ms: 0,
        },
    ]
}

fn start(to: &str, await_approval: bool, supersede: bool, at: u64) -> Command {
    Command::StartRollout {
        stage: "prod".into(),
        to: rev(to),
        waves: waves(),
        gate: GATE,
        guard: guard(),
        change: StageChange::Promote,
        await_approval,
        supersede,
        by: "alice".into(),
        reason: "release".into(),
        at: t(at),
    }
}

fn step(rollout: u64, step: RolloutStep, at: u64) -> Command {
    Command::RolloutStep {
        rollout,
        step,
        at: t(at),
    }
}

fn assign(wave: usize, clusters: &[&str]) -> RolloutStep {
    RolloutStep::Assign {
        wave,
        clusters: clusters.iter().map(|c| (*c).to_owned()).collect(),
    }
}

fn healthy(clusters: &[&str]) -> RolloutStep {
    RolloutStep::Healthy {
        clusters: clusters.iter().map(|c| (*c).to_owned()).collect(),
    }
}

fn status(rollout: u64, action: RolloutAction, at: u64) -> Command {
    Command::SetRolloutStatus {
        rollout,
        action,
        by: "bob".into(),
        reason: action.verb().into(),
        at: t(at),
    }
}

/// The state fixture with its clusters' agents connected.
fn fleet() -> State {
    let mut state = crate::state::tests::fleet();
    for cluster in ["a", "b", "c"] {
        online(&mut state, cluster, true, 1);
    }
    state
}

fn online(state: &mut State, cluster: &str, online: bool, at: u64) {
    apply_ok(
        state,
        Command::SetLiveness {
            cluster: cluster.into(),
            online,
            at: t(at),
        },
    );
}

/// The clusters' agents report what they are assigned applied, with `health`.
fn report(state: &mut State, clusters: &[&str], health: Health, at: u64) {
    let reports = clusters
        .iter()
        .flat_map(|cluster| {
            state
                .desired_bundles(cluster)
                .into_iter()
                .map(|(bundle, hash)| HealthReport {
                    key: HealthKey {
                        cluster: (*cluster).to_owned(),
                        bundle,
                    },
                    applied: Some(hash),
                    health,
                    message: health.to_string(),
                    drifted: Vec::new(),
                    failed: None,
                    last_drift: None,
                    drift_corrections: 0,
                    added: Vec::new(),
                    at: t(at),
                })
        })
        .collect();
    apply_ok(state, Command::RecordHealth { reports });
}

/// The notices recorded: kind, stage, commit and rollout.
fn notices(state: &State) -> Vec<(NoticeKind, String, String, Option<u64>)> {
    state
        .notices
        .recent
        .iter()
        .map(|n| {
            (
                n.kind,
                n.stage.clone().unwrap_or_default(),
                n.commit.clone().unwrap_or_default(),
                n.rollout,
            )
        })
        .collect()
}

fn notice(
    kind: NoticeKind,
    commit: &str,
    rollout: u64,
) -> (NoticeKind, String, String, Option<u64>) {
    (kind, "prod".into(), commit.into(), Some(rollout))
}

fn assigned(state: &State, cluster: &str) -> String {
    state.clusters[cluster]
        .assigned
        .as_ref()
        .map(|r| r.commit.clone())
        .unwrap_or_default()
}

#[test]
fn a_rollout_pins_its_stage_then_passes_wave_by_wave_after_each_soak() {
    let mut state = fleet();
    let id = state.next_rollout_id;
    apply_ok(&mut state, start("c2", false, false, 100));
    let stage = &state.stages["prod"];
    assert_eq!(stage.pinned, Some(rev("c2")));
    let pin = stage.history.last().expect("history");
    assert_eq!(
        (pin.by.as_str(), pin.change, pin.rollout),
        ("alice", StageChange::Promote, Some(id))
    );
    assert_eq!(
        assigned(&state, "a"),
        "c1",
        "nothing assigned before a step"
    );

    apply_err(&mut state, step(id, assign(1, &["b"]), 101));
    apply_err(&mut state, step(id, assign(0, &["b"]), 101));
    apply_ok(&mut state, step(id, assign(0, &["a"]), 101));
    assert_eq!(assigned(&state, "a"), "c2");
    apply_err(&mut state, step(id, assign(0, &["a"]), 102));
    apply_err(
        &mut state,
        step(id, RolloutStep::WaveHealthy { wave: 1 }, 102),
    );
    apply_err(&mut state, step(id, RolloutStep::WaveDone { wave: 0 }, 102));
    // Marked healthy only once its agent reports the target applied and Healthy.
    let early = apply_err(&mut state, step(id, healthy(&["a"]), 140));
    assert!(matches!(early, CommandError::Outdated(_)), "{early}");
    report(&mut state, &["a"], Health::Healthy, 149);
    apply_ok(&mut state, step(id, healthy(&["a"]), 150));
    apply_err(&mut state, step(id, healthy(&["a"]), 151));
    // The soak begins once it has been Healthy for the settle period.
    let unsettled = apply_err(
        &mut state,
        step(id, RolloutStep::WaveHealthy { wave: 0 }, 1_149),
    );
    assert!(
        matches!(unsettled, CommandError::Outdated(_)),
        "{unsettled}"
    );
    apply_ok(
        &mut state,
        step(id, RolloutStep::WaveHealthy { wave: 0 }, 1_150),
    );
    let err = apply_err(
        &mut state,
        step(id, RolloutStep::WaveDone { wave: 0 }, 1_249),
    );
    assert!(err.to_string().contains("soaks until 1250"), "{err}");
    apply_ok(
        &mut state,
        step(id, RolloutStep::WaveDone { wave: 0 }, 1_250),
    );
    assert_eq!(state.rollouts[&id].current, 1);

    apply_ok(&mut state, step(id, assign(1, &["b", "c"]), 1_251));
    report(&mut state, &["b", "c"], Health::Healthy, 1_252);
    apply_ok(&mut state, step(id, healthy(&["b", "c"]), 1_252));
    apply_ok(
        &mut state,
        step(id, RolloutStep::WaveHealthy { wave: 1 }, 2_252),
    );
    apply_ok(
        &mut state,
        step(id, RolloutStep::WaveDone { wave: 1 }, 2_252),
    );
    let rollout = &state.rollouts[&id];
    assert_eq!(rollout.status, RolloutStatus::Completed);
    assert!(state.stages["prod"].passed.contains(&rev("c2")));
    apply_err(&mut state, status(id, RolloutAction::Pause, 304));
    assert_eq!(
        notices(&state),
        [
            notice(NoticeKind::RolloutStarted, "c2", id),
            notice(NoticeKind::RolloutCompleted, "c2", id)
        ]
    );
    assert_eq!(state.notices.recent[1].at, t(2_252));
}

#[test]
fn a_cluster_is_given_the_target_only_where_it_has_bundles() {
    let mut state = fleet();
    register(&mut state, "d");
    let id = state.next_rollout_id;
    let mut planned = waves();
    planned[1].clusters.push("d".into());
    apply_ok(
        &mut state,
        Command::StartRollout {
            stage: "prod".into(),
            to: rev("c2"),
            waves: planned,
            gate: GATE,
            guard: guard(),
            change: StageChange::Track,
            await_approval: false,
            supersede: false,
            by: "controller:rollout".into(),
            reason: "branch moved".into(),
            at: t(100),
        },
    );
    apply_ok(&mut state, step(id, assign(0, &["a"]), 101));
    report(&mut state, &["a"], Health::Healthy, 101);
    apply_ok(&mut state, step(id, healthy(&["a"]), 102));
    apply_ok(
        &mut state,
        step(id, RolloutStep::WaveHealthy { wave: 0 }, 1_102),
    );
    apply_ok(
        &mut state,
        step(id, RolloutStep::WaveDone { wave: 0 }, 1_202),
    );
    let err = apply_err(&mut state, step(id, assign(1, &["b", "d"]), 1_203));
    assert!(
        err.to_string()
            .contains("cluster 'd' is not waiting for the target"),
        "{err}"
    );
    assert_eq!(assigned(&state, "b"), "c1");
}

#[test]
fn a_cluster_leaving_healthy_restarts_the_soak_and_its_clock() {
    let mut state = fleet();
    let id = state.next_rollout_id;
    apply_ok(&mut state, start("c2", false, false, 100));
    apply_ok(&mut state, step(id, assign(0, &["a"]), 101));
    report(&mut state, &["a"], Health::Healthy, 101);
    apply_ok(&mut state, step(id, healthy(&["a"]), 102));
    apply_ok(
        &mut state,
        step(id, RolloutStep::WaveHealthy { wave: 0 }, 1_102),
    );
    let unhealthy = |at| {
        step(
            id,
            RolloutStep::Unhealthy {
                clusters: vec!["a".into()],
            },
            at,
        )
    };
    let still = apply_err(&mut state, unhealthy(1_140));
    assert!(matches!(still, CommandError::Outdated(_)), "{still}");
    report(&mut state, &["a"], Health::Progressing, 1_149);
    apply_ok(&mut state, unhealthy(1_150));
    let rollout = &state.rollouts[&id];
    assert_eq!(rollout.waves[0].healthy_at, None);
    assert_eq!(rollout.clusters["a"].clock_from, t(1_150));
    apply_err(
        &mut state,
        step(id, RolloutStep::WaveDone { wave: 0 }, 1_500),
    );
}

#[test]
fn a_paused_rollout_takes_no_step_and_resuming_restarts_the_clocks() {
    let mut state = fleet();
    let id = state.next_rollout_id;
    apply_ok(&mut state, start("c2", false, false, 100));
    apply_ok(&mut state, step(id, assign(0, &["a"]), 101));
    apply_ok(&mut state, status(id, RolloutAction::Pause, 110));
    assert!(matches!(
        &state.rollouts[&id].status,
        RolloutStatus::Paused { by, .. } if by == "bob"
    ));
    apply_err(&mut state, step(id, healthy(&["a"]), 120));
    apply_err(&mut state, status(id, RolloutAction::Pause, 121));
    apply_err(&mut state, status(id, RolloutAction::Approve, 121));
    apply_ok(&mut state, status(id, RolloutAction::Resume, 5_000));
    let rollout = &state.rollouts[&id];
    assert_eq!(rollout.status, RolloutStatus::Running);
    assert_eq!(rollout.clusters["a"].clock_from, t(5_000));
    assert_eq!(rollout.progressed_at, t(5_000));
}

#[test]
fn a_rollout_awaiting_approval_changes_nothing_until_approved() {
    let mut state = fleet();
    let id = state.next_rollout_id;
    apply_ok(&mut state, start("c2", true, false, 100));
    assert_eq!(state.rollouts[&id].status, RolloutStatus::AwaitingApproval);
    assert_eq!(state.stages["prod"].pinned, Some(rev("c1")));
    apply_err(&mut state, step(id, assign(0, &["a"]), 101));
    assert_eq!(
        notices(&state),
        [notice(NoticeKind::RolloutAwaitingApproval, "c2", id)]
    );
    apply_ok(&mut state, status(id, RolloutAction::Approve, 102));
    assert_eq!(
        notices(&state)[1..],
        [notice(NoticeKind::RolloutStarted, "c2", id)]
    );
    assert!(state.notices.recent[1].message.contains("approved by bob"));
    let stage = &state.stages["prod"];
    assert_eq!(stage.pinned, Some(rev("c2")));
    let pin = stage.history.last().expect("history");
    assert_eq!((pin.by.as_str(), pin.at), ("bob", t(102)));
    assert_eq!(state.rollouts[&id].started_at, Some(t(102)));
    apply_ok(&mut state, step(id, assign(0, &["a"]), 103));
}

/// Renders `commit` for a, b and c with `bundles` (name and object names) each; the objects'
/// content is `data`, so equal bundles and data make equal blobs.
fn render_with(state: &mut State, commit: &str, data: &str, bundles: &[(&str, &[&str])]) {
    apply_ok(
        state,
        Command::RecordFetch {
            source: "main".into(),
            url: "file:///repo".into(),
            commit: commit.into(),
            at: t(30),
        },
    );
    let mut rendered = BTreeMap::new();
    let mut blobs = Vec::new();
    for cluster in ["a", "b", "c"] {
        let mut of_cluster = BTreeMap::new();
        for (bundle, objects) in bundles {
            let blob = crate::state::tests::bundle_blob(bundle, objects, data);
            of_cluster.insert((*bundle).to_owned(), blob.hash);
            blobs.push(blob);
        }
        rendered.insert(cluster.to_owned(), of_cluster);
    }
    apply_ok(
        state,
        Command::RecordRender {
            revision: rev(commit),
            outcome: crate::state::RenderOutcome::Rendered {
                bundles: rendered,
                index: crate::state::source::test_index(&blobs),
                staged: None,
                spec: crate::state::tests::SPEC.to_owned(),
                charts: Default::default(),
            },
            at: t(31),
        },
    );
}

#[test]
fn a_deleting_rollout_is_held_as_it_applies_whatever_its_proposer_asked() {
    let mut state = fleet();
    render_with(&mut state, "empty", "", &[]);
    let id = state.next_rollout_id;
    // Proposed to run at once (a stage approving by itself): apply judges and holds it.
    apply_ok(&mut state, start("empty", false, false, 100));
    let rollout = &state.rollouts[&id];
    assert_eq!(rollout.status, RolloutStatus::AwaitingApproval);
    let hold = rollout.deletion_hold.clone().expect("held");
    assert!(hold.no_bundles);
    let held = notices(&state);
    assert_eq!(
        held.last(),
        Some(&notice(NoticeKind::DeletionGuardHolding, "empty", id))
    );
    assert_eq!((hold.clusters, hold.pruning_clusters), (3, 3));
    assert_eq!(state.stages["prod"].pinned, Some(rev("c1")), "not pinned");
    apply_err(&mut state, step(id, assign(0, &["a"]), 101));
    let refused = apply_err(&mut state, status(id, RolloutAction::ApproveByPolicy, 102));
    assert!(
        matches!(refused, CommandError::HeldByDeletionGuard { .. }),
        "{refused}"
    );
    apply_ok(&mut state, status(id, RolloutAction::Approve, 103));
    assert_eq!(state.rollouts[&id].status, RolloutStatus::Running);
    assert_eq!(state.stages["prod"].pinned, Some(rev("empty")));
    apply_ok(&mut state, step(id, assign(0, &["a"]), 104));
    assert_eq!(
        state.rollouts[&id].deletion_hold.as_ref(),
        Some(&hold),
        "the record of what was approved stays"
    );
}

#[test]
fn the_guard_counts_objects_across_bundles_and_each_check_can_be_off() {
    let mut state = fleet();
    // c1 and c2 hold one object, `app`, in bundle `app`. Moving it to another bundle prunes
    // nothing, though bundle `app` leaves every cluster.
    render_with(&mut state, "moved", "moved", &[("web", &["app"])]);
    let limits = |removals: Option<guard::Limit>| DeletionLimits {
        max_bundle_removals: removals,
        ..guard()
    };
    let verdict = |state: &State, to: &str, limits: DeletionLimits| {
        let clusters = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        guard::verdict(state, "prod", &clusters, &rev(to), limits)
    };
    let hold = verdict(&state, "moved", limits(Some(guard::Limit::Percent(10)))).expect("held");
    assert_eq!(hold.pruning_clusters, 0);
    assert_eq!(hold.removals[0].bundle, "app");
    assert_eq!(verdict(&state, "moved", limits(None)), None, "removals off");
    assert_eq!(
        verdict(&state, "moved", limits(Some(guard::Limit::Percent(100)))),
        None,
        "100% never holds"
    );
    // Two objects where there was one, then none of the old: 1 of 1 pruned.
    render_with(
        &mut state,
        "renamed",
        "renamed",
        &[("app", &["other", "more"])],
    );
    let hold = verdict(&state, "renamed", guard()).expect("held");
    assert_eq!((hold.pruning[0].pruned, hold.pruning[0].of), (1, 1));
    assert_eq!(verdict(&state, "renamed", DeletionLimits::OFF), None);
    assert_eq!(
        verdict(&state, "c2", guard()),
        None,
        "new content, same objects"
    );

    // An unchanged bundle counts in the cluster's total: `app` leaving is 1 of 4 objects.
    let web: (&str, &[&str]) = ("web", &["web-1", "web-2", "web-3"]);
    render_with(&mut state, "base", "same", &[("app", &["app"]), web]);
    render_with(&mut state, "no-app", "same", &[web]);
    apply_ok(
        &mut state,
        Command::PinStage {
            stage: "prod".into(),
            revision: rev("base"),
            change: StageChange::Track,
            by: "alice".into(),
            reason: "a base with two bundles".into(),
            at: t(40),
        },
    );
    let any = DeletionLimits {
        max_pruned_objects: Some(guard::Limit::Count(0)),
        ..DeletionLimits::OFF
    };
    let hold = verdict(&state, "no-app", any).expect("held");
    assert_eq!((hold.pruning[0].pruned, hold.pruning[0].of), (1, 4));
    let hold = verdict(&state, "no-app", guard()).expect("held for the bundle leaving");
    assert_eq!(hold.pruning_clusters, 0, "1 of 4 is within 50%");
}

#[test]
fn rolling_back_returns_clusters_pins_back_and_marks_the_target_failed() {
    let mut state = fleet();
    let id = state.next_rollout_id;
    apply_ok(&mut state, start("c2", false, false, 100));
    apply_ok(&mut state, step(id, assign(0, &["a"]), 101));
    let back = |to: &str| Command::RollBack {
        stage: "prod".into(),
        to: rev(to),
        clusters: vec!["a".into()],
        by: "controller:rollout".into(),
        reason: "wave canary: a Degraded".into(),
        at: t(200),
    };
    apply_ok(&mut state, back("c1"));
    assert!(matches!(
        &state.rollouts[&id].status,
        RolloutStatus::RolledBack { reason } if reason.contains("Degraded")
    ));
    for cluster in ["a", "b", "c"] {
        assert_eq!(assigned(&state, cluster), "c1", "{cluster}");
    }
    let stage = &state.stages["prod"];
    assert_eq!(stage.pinned, Some(rev("c1")));
    assert!(stage.failed.contains(&rev("c2")));
    assert!(!stage.failed.contains(&rev("c1")));
    let pin = stage.history.last().expect("history");
    assert_eq!((pin.change, pin.rollout), (StageChange::Rollback, Some(id)));
    // The notice is about what the stage left: the rollout's target.
    assert_eq!(
        notices(&state),
        [
            notice(NoticeKind::RolloutStarted, "c2", id),
            notice(NoticeKind::RolloutRolledBack, "c2", id)
        ]
    );
    let err = apply_err(&mut state, back("c1"));
    assert!(err.to_string().contains("already pinned"), "{err}");
}

#[test]
fn a_second_rollout_is_refused_unless_it_supersedes_and_keeps_the_first_start() {
    let mut state = fleet();
    let first = state.next_rollout_id;
    apply_ok(&mut state, start("c2", false, false, 100));
    let err = apply_err(&mut state, start("c2", false, false, 101));
    assert_eq!(
        err,
        CommandError::RolloutActive {
            stage: "prod".into(),
            rollout: first
        }
    );
    let err = apply_err(
        &mut state,
        Command::PinStage {
            stage: "prod".into(),
            revision: rev("c1"),
            change: StageChange::Promote,
            by: "x".into(),
            reason: "y".into(),
            at: t(102),
        },
    );
    assert!(matches!(err, CommandError::RolloutActive { .. }), "{err}");
    apply_ok(&mut state, start("c2", false, true, 103));
    assert_eq!(
        state.rollouts[&first].status,
        RolloutStatus::Superseded { by: first + 1 }
    );
    let kinds: Vec<_> = notices(&state).into_iter().map(|n| (n.0, n.3)).collect();
    assert_eq!(
        kinds[kinds.len() - 2..],
        [
            (NoticeKind::RolloutSuperseded, Some(first)),
            (NoticeKind::RolloutStarted, Some(first + 1))
        ]
    );
    let second = &state.rollouts[&(first + 1)];
    assert!(second.is_active());
    assert_eq!(
        second.from,
        Some(rev("c1")),
        "rolls back to where the first began"
    );
}

#[test]
fn a_rollout_to_the_pinned_revision_with_nothing_running_is_refused() {
    let mut state = fleet();
    let err = apply_err(&mut state, start("c1", false, false, 100));
    assert!(err.to_string().contains("already pinned"), "{err}");
}

#[test]
fn a_rollout_with_no_cluster_completes_at_once_and_passes_its_target() {
    let mut state = fleet();
    let id = state.next_rollout_id;
    apply_ok(
        &mut state,
        Command::StartRollout {
            stage: "prod".into(),
            to: rev("c2"),
            waves: Vec::new(),
            gate: GATE,
            guard: guard(),
            change: StageChange::Promote,
            await_approval: false,
            supersede: false,
            by: "controller:rollout".into(),
            reason: "a stage without clusters".into(),
            at: t(100),
        },
    );
    assert_eq!(state.rollouts[&id].status, RolloutStatus::Completed);
    assert!(state.stages["prod"].passed.contains(&rev("c2")));
}

#[test]
fn a_failure_pauses_or_returns_every_moved_cluster_as_the_gate_says() {
    for on_failure in [OnFailure::Pause, OnFailure::Rollback] {
        let mut state = fleet();
        let id = state.next_rollout_id;
        apply_ok(
            &mut state,
            Command::StartRollout {
                stage: "prod".into(),
                to: rev("c2"),
                waves: waves(),
                gate: Gate { on_failure, ..GATE },
                guard: guard(),
                change: StageChange::Promote,
                await_approval: false,
                supersede: false,
                by: "alice".into(),
                reason: "release".into(),
                at: t(100),
            },
        );
        apply_ok(&mut state, step(id, assign(0, &["a"]), 101));
        apply_ok(
            &mut state,
            Command::FailRollout {
                rollout: id,
                reason: "cluster a is Degraded".into(),
                by: "controller:rollout".into(),
                at: t(102),
            },
        );
        let actions: Vec<&str> = state
            .audit
            .since(0)
            .map(|(_, e)| e)
            .map(|e| e.action.as_str())
            .collect();
        match on_failure {
            OnFailure::Pause => {
                assert!(matches!(
                    &state.rollouts[&id].status,
                    RolloutStatus::Paused { reason, .. } if reason == "failed: cluster a is Degraded"
                ));
                assert_eq!(assigned(&state, "a"), "c2", "a pause moves nobody");
                assert!(!state.stages["prod"].failed.contains(&rev("c2")));
                assert_eq!(actions, ["promote", "rollout.fail"]);
                assert_eq!(
                    notices(&state),
                    [
                        notice(NoticeKind::RolloutStarted, "c2", id),
                        notice(NoticeKind::RolloutFailed, "c2", id)
                    ]
                );
                assert!(
                    state.notices.recent[1]
                        .message
                        .contains("failed (paused): cluster a is Degraded")
                );
            }
            OnFailure::Rollback => {
                assert!(matches!(
                    state.rollouts[&id].status,
                    RolloutStatus::RolledBack { .. }
                ));
                assert_eq!(assigned(&state, "a"), "c1");
                assert_eq!(state.stages["prod"].pinned, Some(rev("c1")));
                assert!(state.stages["prod"].failed.contains(&rev("c2")));
                assert_eq!(actions, ["promote", "rollout.fail", "rollback"]);
                assert_eq!(
                    notices(&state),
                    [
                        notice(NoticeKind::RolloutStarted, "c2", id),
                        notice(NoticeKind::RolloutFailed, "c2", id),
                        notice(NoticeKind::RolloutRolledBack, "c2", id)
                    ]
                );
            }
        }
        apply_err(
            &mut state,
            Command::FailRollout {
                rollout: id,
                reason: "again".into(),
                by: "controller:rollout".into(),
                at: t(103),
            },
        );
    }
}

fn abandon(rollout: u64, at: u64) -> Command {
    Command::AbandonRollout {
        rollout,
        reason: "stage `prod` is not declared".into(),
        by: "controller:rollout".into(),
        at: t(at),
    }
}

#[test]
fn abandoning_ends_an_active_rollout_and_pins_a_moved_stage_back_to_its_start() {
    // Running, one cluster moved: the stage goes back to c1, the cluster keeps c2, nothing
    // is marked failed, and a rollout that ended cannot be abandoned.
    let mut state = fleet();
    let id = state.next_rollout_id;
    apply_ok(&mut state, start("c2", false, false, 100));
    apply_ok(&mut state, step(id, assign(0, &["a"]), 101));
    apply_ok(&mut state, abandon(id, 102));
    assert!(matches!(
        &state.rollouts[&id].status,
        RolloutStatus::Abandoned { reason } if reason.contains("not declared")
    ));
    let stage = &state.stages["prod"];
    assert_eq!(stage.pinned, Some(rev("c1")));
    let pin = stage.history.last().expect("history");
    assert_eq!((pin.change, pin.rollout), (StageChange::Rollback, Some(id)));
    assert!(pin.reason.starts_with(&format!("rollout {id} abandoned:")));
    assert!(stage.failed.is_empty());
    assert_eq!(assigned(&state, "a"), "c2");
    assert_eq!(state.active_rollout("prod"), None);
    assert_eq!(
        notices(&state).last(),
        Some(&notice(NoticeKind::RolloutAbandoned, "c2", id))
    );
    let (_, event) = state.audit.since(0).last().expect("audited");
    assert_eq!(
        (event.action.as_str(), event.target.as_str()),
        ("rollout.abandon", "stage/prod")
    );
    apply_err(&mut state, abandon(id, 103));
    apply_err(&mut state, step(id, assign(1, &["b"]), 103));

    // Awaiting approval: the stage never moved, so its pin stays.
    let waiting = state.next_rollout_id;
    apply_ok(&mut state, start("c2", true, false, 200));
    apply_ok(&mut state, abandon(waiting, 201));
    assert_eq!(state.stages["prod"].pinned, Some(rev("c1")));
    apply_err(&mut state, abandon(waiting + 7, 202));
}

/// The fixture's pipeline with stage `prod` asking for approval.
const MANUAL: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: prod
    clusterSelector: {matchLabels: {env: dev}}
    track: {branch: main}
    rollout: {approval: manual}
bundles:
  - name: app
    path: app
";

#[test]
fn a_controller_decision_made_before_the_stage_asked_for_approval_is_refused() {
    let mut state = fleet();
    // A commit that makes the stage manual renders before the controller's decision applies.
    apply_ok(
        &mut state,
        Command::RecordFetch {
            source: "main".into(),
            url: "file:///repo".into(),
            commit: "c3".into(),
            at: t(30),
        },
    );
    let blob = crate::state::tests::bundle_blob("app", &["app"], "c3");
    let bundles = ["a", "b", "c"]
        .iter()
        .map(|c| {
            (
                (*c).to_owned(),
                BTreeMap::from([("app".to_owned(), blob.hash)]),
            )
        })
        .collect();
    apply_ok(
        &mut state,
        Command::RecordRender {
            revision: rev("c3"),
            outcome: crate::state::RenderOutcome::Rendered {
                bundles,
                index: crate::state::source::test_index(&[blob]),
                staged: None,
                spec: MANUAL.to_owned(),
                charts: Default::default(),
            },
            at: t(31),
        },
    );
    let by_controller = |await_approval| Command::StartRollout {
        stage: "prod".into(),
        to: rev("c2"),
        waves: waves(),
        gate: GATE,
        guard: guard(),
        change: StageChange::Track,
        await_approval,
        supersede: false,
        by: "controller:rollout".into(),
        reason: "branch moved".into(),
        at: t(100),
    };
    let refused = apply_err(&mut state, by_controller(false));
    assert!(matches!(refused, CommandError::Outdated(_)), "{refused}");
    let id = state.next_rollout_id;
    apply_ok(&mut state, by_controller(true));
    let policy = Command::SetRolloutStatus {
        rollout: id,
        action: RolloutAction::ApproveByPolicy,
        by: "controller:rollout".into(),
        reason: "the stage no longer asks for approval".into(),
        at: t(101),
    };
    let refused = apply_err(&mut state, policy);
    assert!(matches!(refused, CommandError::Outdated(_)), "{refused}");
    // A person approves.
    apply_ok(&mut state, status(id, RolloutAction::Approve, 102));
}

#[test]
fn a_revision_that_removes_a_bundle_is_applied_once_the_agent_has_pruned_it() {
    let mut state = fleet();
    online(&mut state, "a", true, 50);
    report(&mut state, &["a"], Health::Healthy, 100);
    render_with(&mut state, "empty", "", &[]);
    apply_ok(
        &mut state,
        Command::PinStage {
            stage: "prod".into(),
            revision: rev("empty"),
            change: StageChange::Track,
            by: "alice".into(),
            reason: "the bundle is gone".into(),
            at: t(200),
        },
    );
    apply_ok(
        &mut state,
        Command::AssignRevision {
            clusters: vec!["a".into()],
            revision: rev("empty"),
            at: t(200),
        },
    );
    let newest = |state: &State| state.clusters["a"].deliveries.last().cloned();
    let given = newest(&state).expect("a delivery");
    assert_eq!(given.commit, "empty");
    assert_eq!(
        given.applied_at, None,
        "the agent still reports the removed bundle's objects applied"
    );
    // The agent pruned the bundle: it reports holding nothing of it.
    let bundle = state.revisions[&rev("c1")]
        .bundles_for("a")
        .and_then(|b| b.keys().next().cloned())
        .expect("a holds a bundle at c1");
    apply_ok(
        &mut state,
        Command::RecordHealth {
            reports: vec![HealthReport {
                key: HealthKey {
                    cluster: "a".into(),
                    bundle,
                },
                applied: None,
                health: Health::Healthy,
                message: String::new(),
                drifted: Vec::new(),
                failed: None,
                last_drift: None,
                drift_corrections: 0,
                added: Vec::new(),
                at: t(300),
            }],
        },
    );
    assert_eq!(newest(&state).expect("a delivery").applied_at, Some(t(300)));
}
