//! A cluster whose agent is gone is marked offline also when the hub node that held its stream
//! died with it (and so can no longer say the stream ended): here that node is the leader, so
//! the group must elect another leader, whose liveness controller decides from the presence
//! reports of the surviving nodes.

use crate::support::hub_processes as processes;
use crate::support::sync as support;

use std::time::Duration;

use anyhow::{Context, Result};
use processes::HubProcesses;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_goes_offline_when_the_leader_holding_its_stream_dies() -> Result<()> {
    init_tracing();
    let mut hubs = HubProcesses::start(3)?;
    let leader = hubs.leader().await?;
    hubs.propose(&register("sim-0")).await?;
    let sim = sim(1, Duration::from_millis(100)).await?;
    // The agent knows only the leader, so once that node is gone no node streams with it.
    let a = agent(
        &sim,
        "sim-0",
        test_link(vec![hubs.apis[&leader].clone()], "sim-0"),
    )?;
    eventually("sim-0 online", || async {
        Ok(hubs.state(leader).await?.clusters["sim-0"]
            .online
            .then_some(()))
    })
    .await?;

    hubs.kill(leader)?;
    let survivor = *hubs.running().first().context("survivors")?;
    let new_leader = hubs.leader().await?;
    assert_ne!(new_leader, leader);
    eventually("sim-0 offline on the surviving nodes", || async {
        let state = hubs.state(survivor).await?;
        Ok((!state.clusters["sim-0"].online).then_some(()))
    })
    .await?;
    assert!(
        a.link.watch_connection().borrow().is_none(),
        "the agent could not have reached another node"
    );
    a.link.shutdown().await;
    Ok(())
}
