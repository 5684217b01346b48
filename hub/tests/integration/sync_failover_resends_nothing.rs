//! Killing (SIGKILL) the hub process an agent streams with moves the agent to another node of
//! the group; with nothing changed, nothing is resent: no bundle, no chunk, no removal — only
//! the welcome and heartbeats — and no health is written to raft again.

use crate::support::hub_processes as processes;
use crate::support::sync as support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_core::Health;
use flotilla_hub::state::health::HealthKey;
use processes::HubProcesses;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_agents_hub_node_moves_it_elsewhere_with_nothing_resent() -> Result<()> {
    init_tracing();
    let mut hubs = HubProcesses::start(3)?;
    hubs.leader().await?;
    let sim = sim(1, Duration::from_millis(100)).await?;
    let web = bundle(
        "web",
        vec![
            namespace(),
            config_map("web-config", &[("k", "v")]),
            deployment("web"),
        ],
    )?;
    let release = release("c1", &BTreeMap::from([("sim-0", vec![web.clone()])]))?;
    hubs.put_content(&release.blobs).await?;
    hubs.propose(&register("sim-0")).await?;
    for command in &release.commands {
        hubs.propose(command).await?;
    }

    let a = agent(&sim, "sim-0", test_link(hubs.api_addresses(), "sim-0"))?;
    let key = HealthKey {
        cluster: "sim-0".into(),
        bundle: "web".into(),
    };
    let hash = web.hash();
    let recorded = eventually("web healthy in every replica", || async {
        let mut records = Vec::new();
        for id in hubs.running() {
            records.push(hubs.state(id).await?.health.get(&key).cloned());
        }
        let first = records.first().cloned().flatten();
        Ok(first
            .filter(|r| r.applied == Some(hash) && r.health == Health::Healthy)
            .filter(|r| records.iter().all(|other| other.as_ref() == Some(r))))
    })
    .await?;
    let mut connection = a.link.watch_connection();
    let before_kill = connection.borrow().clone().context("connected")?;
    let victim = hubs
        .node_at(&before_kill.address)
        .context("the agent's node is one of the group")?;
    // Let the snapshot sent at connect settle, then count from here.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = a.link.stats();

    hubs.kill(victim)?;
    let moved = eventually("the agent streaming with another node", || {
        let now = connection.borrow_and_update().clone();
        let victim_address = before_kill.address.clone();
        async move { Ok(now.filter(|c| c.address != victim_address)) }
    })
    .await?;
    // A few heartbeats on the new stream.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = a.link.stats();

    let received = after.messages_received - before.messages_received;
    let heartbeats = after.heartbeats_received - before.heartbeats_received;
    let bytes = after.bytes_received - before.bytes_received;
    eprintln!(
        "failover from node {victim} to node {}: {received} messages ({heartbeats} heartbeats), \
         {bytes} bytes received; {} messages, {} bytes sent",
        moved.node,
        after.messages_sent - before.messages_sent,
        after.bytes_sent - before.bytes_sent,
    );
    assert_eq!(after.sessions - before.sessions, 1, "one new stream");
    assert_eq!(
        after.bundles_received, before.bundles_received,
        "no bundle resent"
    );
    assert_eq!(
        after.chunks_received, before.chunks_received,
        "no chunk resent"
    );
    assert_eq!(after.removals_received, before.removals_received);
    assert_eq!(received, 1 + heartbeats, "only the welcome and heartbeats");

    let state = hubs.state(moved.node).await?;
    assert_eq!(
        state.health.get(&key),
        Some(&recorded),
        "the reconnect wrote no health: nothing changed"
    );
    assert!(
        state.clusters["sim-0"].online,
        "a failover does not take the cluster offline"
    );

    a.link.shutdown().await;
    Ok(())
}
