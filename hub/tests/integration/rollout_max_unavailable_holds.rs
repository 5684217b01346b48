//! `maxUnavailable` holds at every instant of a rollout: the hub's raft log is replayed entry by
//! entry after the run, and after every entry at most `maxUnavailable` clusters of the stage are
//! offline or not Healthy at what they are assigned — an offline cluster counting as one.

use crate::support::rollout;
use crate::support::sync as support;

use anyhow::{Context, Result};
use flotilla_hub::state::rollout::RolloutStatus;
use rollout::{RolloutFleet, newest_rollout, timeline};
use support::{agent, test_link};

const SPEC: &str = "\
apiVersion: flotilla.dev/v1
kind: Fleet
stages:
  - name: prod
    clusterSelector: {matchLabels: {env: prod}}
    track: {branch: main}
    rollout: {maxUnavailable: 2, healthTimeout: 1m}
bundles:
  - name: app
    path: bundles/app
    namespace: app
    variables: {release: \"1\", fail: \"false\"}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_unavailable_clusters_are_unhealthy_at_any_entry_offline_ones_included()
-> Result<()> {
    support::init_tracing();
    let prod: &[(&str, &str)] = &[("env", "prod")];
    let (mut fleet, _) = RolloutFleet::start(SPEC, &[prod, prod, prod, prod, prod]).await?;
    // sim-4's agent goes away: the cluster goes offline and takes one of the two slots.
    rollout::stop_agent(fleet.agents.remove(4)).await;
    fleet
        .wait_for("sim-4 offline", |s| !s.clusters["sim-4"].online)
        .await?;
    let second = fleet.release("2", None)?;
    fleet
        .wait_for("sim-0 to sim-3 at release 2", |s| {
            (0..4).all(|i| rollout::healthy_at(s, &format!("sim-{i}"), &second))
        })
        .await?;
    {
        let state = fleet.hub().node().state();
        let (_, rollout) = newest_rollout(&state, "prod").context("a rollout")?;
        assert_eq!(
            rollout.status,
            RolloutStatus::Running,
            "sim-4 holds the wave"
        );
        assert!(
            rollout.clusters.contains_key("sim-4"),
            "an offline cluster of the wave is given the revision at once: it was unavailable anyway"
        );
    }
    // sim-4 comes back with a fresh agent, applies release 2, and the rollout completes.
    let url = fleet.hub().api_address().to_string();
    fleet
        .agents
        .push(agent(&fleet.sim, "sim-4", test_link(vec![url], "sim-4"))?);
    fleet
        .wait_for("the rollout completed", |s| {
            newest_rollout(s, "prod").is_some_and(|(_, r)| r.status == RolloutStatus::Completed)
        })
        .await?;

    let data = fleet.shutdown().await;
    let instants = timeline(data.path(), "prod")?;
    let rolling: Vec<_> = instants.iter().filter(|i| i.rolling).collect();
    assert!(!rolling.is_empty(), "the log holds the rollout");
    let mut most = 0;
    for instant in &rolling {
        most = most.max(instant.unavailable.len());
        assert!(
            instant.unavailable.len() <= 2,
            "entry {} ({}): {:?} unavailable at once",
            instant.index,
            instant.kind,
            instant.unavailable
        );
    }
    assert_eq!(most, 2, "the rollout used both slots");
    // While sim-4 was offline (unavailable), only one other cluster was ever being updated:
    // had offline clusters not counted, two would have been.
    let while_offline = rolling
        .iter()
        .filter(|i| i.unavailable.iter().any(|c| c == "sim-4"))
        .map(|i| i.unavailable.len())
        .max();
    assert_eq!(while_offline, Some(2));
    Ok(())
}
