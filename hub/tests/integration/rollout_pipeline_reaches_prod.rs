//! A three-stage pipeline carries a good commit all the way to prod: dev tracks main, staging
//! promotes from dev by itself once dev ran it Healthy for its soak, prod promotes from staging
//! only when approved — from the dashboard's HTTP action. Real agents on simulated clusters
//! report the health that gates each step.

use crate::support::rollout;
use crate::support::sync as support;

use anyhow::Result;
use flotilla_hub::state::rollout::RolloutStatus;
use flotilla_hub::state::source::RevisionRef;
use flotilla_proto::v1::AdminStageHistoryRequest;
use rollout::{RolloutFleet, assigned, healthy_at, newest_rollout};

const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: dev
    clusterSelector: {matchLabels: {env: dev}}
    track: {branch: main}
    rollout: {soak: 2s}
  - name: staging
    clusterSelector: {matchLabels: {env: staging}}
    promoteFrom: dev
    rollout: {soak: 1s}
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    promoteFrom: staging
    rollout:
      approval: manual
      waves:
        - {name: canary, clusterSelector: {matchLabels: {canary: 'yes'}}, soak: 1s}
      maxUnavailable: 1
      failureAction: rollback
bundles:
  - name: app
    path: bundles/app
    namespace: app
    variables: {release: \"1\", fail: \"false\"}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_commit_goes_from_dev_through_staging_to_prod_after_approval() -> Result<()> {
    support::init_tracing();
    let (fleet, _first) = RolloutFleet::start(
        SPEC,
        &[
            &[("env", "dev")],
            &[("env", "staging")],
            &[("env", "prod"), ("canary", "yes")],
            &[("env", "prod")],
        ],
    )
    .await?;
    let second = fleet.release("2", None)?;
    let revision = RevisionRef {
        source: "origin".into(),
        commit: second.clone(),
    };

    fleet
        .wait_for("dev to pass release 2", |s| {
            s.stages["dev"].passed.contains(&revision)
        })
        .await?;
    {
        // staging is promoted only once dev soaked release 2 Healthy for 2s.
        let state = fleet.hub().node().state();
        let (_, dev) = newest_rollout(&state, "dev").expect("dev rolled out");
        let soaked = dev
            .waves
            .last()
            .and_then(|w| Some((w.healthy_at?, w.done_at?)));
        let (healthy, done) = soaked.expect("dev's wave soaked and passed");
        assert!(
            done.0 >= healthy.0 + 2_000,
            "dev soaked {}ms",
            done.0 - healthy.0
        );
        if let Some((_, staging)) = newest_rollout(&state, "staging") {
            let started = staging.started_at.expect("started");
            assert!(started >= done, "staging started before dev passed");
        }
    }
    fleet
        .wait_for("staging to pass release 2 by itself", |s| {
            s.stages["staging"].passed.contains(&revision)
        })
        .await?;
    fleet
        .wait_for("prod's rollout awaiting approval", |s| {
            newest_rollout(s, "prod").is_some_and(|(_, r)| {
                r.to == revision && r.status == RolloutStatus::AwaitingApproval
            })
        })
        .await?;
    // Waiting for approval changes nothing in prod.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    {
        let state = fleet.hub().node().state();
        assert_ne!(state.stages["prod"].pinned, Some(revision.clone()));
        for cluster in ["sim-2", "sim-3"] {
            assert_ne!(
                assigned(&state, cluster).as_deref(),
                Some(second.as_str()),
                "{cluster}"
            );
        }
    }
    assert_eq!(fleet.release_on(2).await?.as_deref(), Some("1"));

    // Approved from the dashboard: its HTTP action, as the page's Approve button sends it.
    let approved = flotilla_testkit::http::request(
        "POST",
        &format!(
            "http://{}/api/stages/prod/approve",
            fleet.hub().http_address()
        ),
        &[("content-type", "application/json")],
        br#"{"reason": "release 2 looks good in staging"}"#.to_vec(),
    )
    .await?;
    assert_eq!(approved.status, 200, "{}", approved.body);
    let reply: serde_json::Value = serde_json::from_str(&approved.body)?;
    assert_eq!(reply["pinnedRevision"], second.as_str(), "{reply}");
    let mut admin = fleet.admin().await?;
    fleet
        .wait_for("prod to complete release 2", |s| {
            s.stages["prod"].passed.contains(&revision)
        })
        .await?;
    {
        let state = fleet.hub().node().state();
        for cluster in ["sim-0", "sim-1", "sim-2", "sim-3"] {
            assert!(healthy_at(&state, cluster, &second), "{cluster}");
        }
    }
    for cluster in 0..4 {
        assert_eq!(
            fleet.release_on(cluster).await?.as_deref(),
            Some("2"),
            "sim-{cluster}"
        );
    }
    let history = admin
        .stage_history(AdminStageHistoryRequest {
            stage: "prod".into(),
        })
        .await?
        .into_inner();
    let latest = &history.pins[0];
    assert_eq!(
        (
            latest.revision.as_str(),
            latest.change.as_str(),
            latest.by.as_str()
        ),
        (
            second.as_str(),
            "promote",
            flotilla_hub::api::caller::INSECURE_ACTOR
        )
    );
    assert_eq!(latest.reason, "release 2 looks good in staging");
    assert_eq!(latest.rollout_status, "completed");
    let actions: Vec<&str> = history.events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["approve", "await-approval"], "newest first");
    fleet.shutdown().await;
    Ok(())
}
