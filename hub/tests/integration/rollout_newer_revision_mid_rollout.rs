//! A newer revision arriving while a rollout is in progress: by default it waits for the running
//! rollout to complete and then rolls out (`supersede: afterRollout`); a stage with
//! `supersede: immediate` abandons the running rollout for it.

use crate::support::rollout;
use crate::support::sync as support;

use anyhow::Result;
use flotilla_hub::state::State;
use flotilla_hub::state::rollout::RolloutStatus;
use flotilla_hub::state::source::RevisionRef;
use rollout::{RolloutFleet, healthy_at};

const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: steady
    clusterSelector: {matchLabels: {stage: steady}}
    track: {branch: main}
    rollout: {soak: 5s}
  - name: eager
    clusterSelector: {matchLabels: {stage: eager}}
    track: {branch: main}
    rollout: {soak: 5s, supersede: immediate}
bundles:
  - name: app
    path: bundles/app
    namespace: app
    variables: {release: \"1\", fail: \"false\"}
";

/// A stage's rollouts, oldest first: (target commit, status).
fn rollouts(state: &State, stage: &str) -> Vec<(String, RolloutStatus)> {
    state
        .rollouts
        .values()
        .filter(|r| r.stage == stage)
        .map(|r| (r.to.commit.clone(), r.status.clone()))
        .collect()
}

/// The stage's rollout to `commit` is in progress (its clusters being given it, or soaking).
fn running(state: &State, stage: &str, commit: &str) -> bool {
    state
        .rollouts
        .values()
        .any(|r| r.stage == stage && r.to.commit == commit && r.status == RolloutStatus::Running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_revision_waits_for_the_running_rollout_or_supersedes_it_as_the_stage_says()
-> Result<()> {
    support::init_tracing();
    let (fleet, _) =
        RolloutFleet::start(SPEC, &[&[("stage", "steady")], &[("stage", "eager")]]).await?;
    let second = fleet.release("2", None)?;
    fleet
        .wait_for("both stages rolling out release 2", |s| {
            running(s, "steady", &second) && running(s, "eager", &second)
        })
        .await?;
    let third = fleet.release("3", None)?;
    fleet
        .wait_for("both stages at release 3", |s| {
            healthy_at(s, "sim-0", &third)
                && healthy_at(s, "sim-1", &third)
                && rollouts(s, "steady").len() == 2
                && rollouts(s, "steady")
                    .iter()
                    .chain(rollouts(s, "eager").iter())
                    .all(|(_, status)| !matches!(status, RolloutStatus::Running))
        })
        .await?;
    let state = fleet.hub().node().state();
    let revision = |commit: &str| RevisionRef {
        source: "origin".into(),
        commit: commit.to_owned(),
    };
    assert_eq!(
        rollouts(&state, "steady"),
        [
            (second.clone(), RolloutStatus::Completed),
            (third.clone(), RolloutStatus::Completed)
        ],
        "steady finished release 2 before starting release 3"
    );
    assert!(state.stages["steady"].passed.contains(&revision(&second)));
    let eager = rollouts(&state, "eager");
    let superseder = state
        .rollouts
        .iter()
        .find(|(_, r)| r.stage == "eager" && r.to.commit == third)
        .map(|(id, _)| *id);
    assert_eq!(
        eager,
        [
            (
                second.clone(),
                RolloutStatus::Superseded {
                    by: superseder.unwrap_or_default()
                }
            ),
            (third.clone(), RolloutStatus::Completed)
        ],
        "eager dropped release 2 for release 3"
    );
    assert!(!state.stages["eager"].passed.contains(&revision(&second)));
    drop(state);
    fleet.shutdown().await;
    Ok(())
}
