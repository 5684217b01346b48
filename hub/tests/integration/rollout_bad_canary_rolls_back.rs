//! A revision that breaks in prod (its Deployment stalls with ProgressDeadlineExceeded in the
//! simulator) stops in prod's canary wave and rolls back by itself: the canary returns to the
//! previous revision, prod's other clusters never see the bad one (checked at every entry of the
//! replayed raft log), and the failed revision is not promoted to prod again.

use crate::support::rollout;
use crate::support::sync as support;

use std::time::Duration;

use anyhow::Result;
use flotilla_hub::state::rollout::RolloutStatus;
use flotilla_hub::state::source::RevisionRef;
use rollout::{RolloutFleet, healthy_at, newest_rollout, timeline};

const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: dev
    clusterSelector: {matchLabels: {env: dev}}
    track: {branch: main}
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    promoteFrom: dev
    rollout:
      waves:
        - {name: canary, clusterSelector: {matchLabels: {canary: 'yes'}}, soak: 2s}
      maxUnavailable: 1
      healthTimeout: 30s
      failureAction: rollback
bundles:
  - name: app
    path: bundles/app
    namespace: app
    variables: {release: \"1\", fail: \"false\"}
";

/// The next release breaks the Deployment on prod clusters only, so dev passes it.
const BROKEN_IN_PROD: &str = "
    overlays:
      - name: prod
        clusterSelector: {matchLabels: {env: prod}}
        variables: {fail: \"true\"}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_failing_in_the_canary_rolls_back_and_goes_no_further() -> Result<()> {
    support::init_tracing();
    let (fleet, first) = RolloutFleet::start(
        SPEC,
        &[
            &[("env", "dev")],
            &[("env", "prod"), ("canary", "yes")],
            &[("env", "prod")],
            &[("env", "prod")],
        ],
    )
    .await?;
    let bad = fleet.release("2", Some(&format!("{SPEC}{BROKEN_IN_PROD}")))?;
    let bad_revision = RevisionRef {
        source: "origin".into(),
        commit: bad.clone(),
    };
    fleet
        .wait_for("prod's rollout of release 2 rolled back", |s| {
            newest_rollout(s, "prod").is_some_and(|(_, r)| {
                r.to == bad_revision && matches!(r.status, RolloutStatus::RolledBack { .. })
            })
        })
        .await?;
    {
        let state = fleet.hub().node().state();
        let (_, rollout) = newest_rollout(&state, "prod").expect("prod rolled out");
        let RolloutStatus::RolledBack { reason } = &rollout.status else {
            unreachable!("checked above")
        };
        assert!(
            reason.contains("cluster sim-1 is Degraded") && reason.contains("progress deadline"),
            "{reason}"
        );
        assert_eq!(rollout.current, 0, "the canary wave never passed");
        assert!(state.stages["prod"].failed.contains(&bad_revision));
        assert!(
            state.stages["dev"].passed.contains(&bad_revision),
            "dev runs it fine"
        );
        let pin = state.stages["prod"].history.last().expect("history");
        assert_eq!(pin.revision.commit, first, "prod is pinned back");
        let audited: Vec<&str> = state
            .audit
            .since(0)
            .map(|(_, e)| e)
            .filter(|e| e.target == "stage/prod")
            .map(|e| e.action.as_str())
            .collect();
        assert_eq!(audited, ["promote", "rollout.fail", "rollback"]);
    }
    fleet
        .wait_for("the canary back to release 1, Healthy", |s| {
            healthy_at(s, "sim-1", &first)
        })
        .await?;
    assert_eq!(fleet.release_on(1).await?.as_deref(), Some("1"));
    // The controller keeps passing over prod; release 2 is never promoted there again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    {
        let state = fleet.hub().node().state();
        let promotions = state
            .rollouts
            .values()
            .filter(|r| r.stage == "prod" && r.to == bad_revision)
            .count();
        assert_eq!(promotions, 1);
    }
    for cluster in [2, 3] {
        assert_eq!(
            fleet.release_on(cluster).await?.as_deref(),
            Some("1"),
            "sim-{cluster}"
        );
    }

    let data = fleet.shutdown().await;
    let instants = timeline(data.path(), "prod")?;
    let mut canary_got_it = false;
    for instant in &instants {
        let holds =
            |c: &str| instant.assigned.get(c).cloned().flatten().as_deref() == Some(bad.as_str());
        canary_got_it |= holds("sim-1");
        assert!(
            !holds("sim-2") && !holds("sim-3"),
            "entry {} ({}) gave release 2 to a prod cluster beyond the canary",
            instant.index,
            instant.kind
        );
        if instant.rolling {
            assert!(
                instant.unavailable.len() <= 1,
                "entry {} ({}): {:?} unavailable at once",
                instant.index,
                instant.kind,
                instant.unavailable
            );
        }
    }
    assert!(canary_got_it, "the canary was given release 2");
    Ok(())
}
