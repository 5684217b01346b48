//! One agent instance streams for a cluster across the whole hub group, with real hub
//! processes: a second instance saying hello on another node while the first streams is
//! refused (`ALREADY_EXISTS`), the first instance failing over to a third node is let in at
//! once, and the second gets in once every stream of the first has ended.

use crate::support::hub_processes as processes;
use crate::support::sync as support;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_proto::v1::agent_sync_client::AgentSyncClient;
use flotilla_proto::v1::{
    AgentMessage, ClusterIdentity, Hello, HubMessage, agent_message, hub_message,
};
use processes::HubProcesses;
use support::{PATIENCE, init_tracing, register};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

const UID: &str = "3f1e2d4c-5b6a-4978-8a9b-0c1d2e3f4a5b";

/// An open stream: dropping it closes the agent's side.
struct Open {
    _out: mpsc::Sender<AgentMessage>,
    _inbound: Streaming<HubMessage>,
}

/// Says hello as agent `instance` of cluster `edge` on the node at `api`, with heartbeats slow
/// enough that the test need send none; the welcome, or the refusal.
async fn hello(api: &str, instance: &str) -> Result<Result<Open, Status>> {
    let mut client = AgentSyncClient::connect(format!("http://{api}")).await?;
    let (out, rx) = mpsc::channel(4);
    out.send(AgentMessage {
        kind: Some(agent_message::Kind::Hello(Hello {
            cluster: "edge".into(),
            agent_version: "test".into(),
            heartbeat_interval_ms: 30_000,
            identity: Some(ClusterIdentity {
                kube_system_uid: UID.into(),
                unreadable: String::new(),
            }),
            instance: instance.into(),
            ..Hello::default()
        })),
    })
    .await?;
    let mut inbound = match client.sync(ReceiverStream::new(rx)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Ok(Err(status)),
    };
    match inbound.message().await {
        Ok(Some(HubMessage {
            kind: Some(hub_message::Kind::Welcome(_)),
        })) => Ok(Ok(Open {
            _out: out,
            _inbound: inbound,
        })),
        Ok(other) => bail!("expected a welcome, got {other:?}"),
        Err(status) => Ok(Err(status)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_on_another_node_is_refused_while_the_first_streams() -> Result<()> {
    init_tracing();
    let hubs = HubProcesses::start(3)?;
    hubs.leader().await?;
    hubs.propose(&register("edge")).await?;
    let apis = hubs.api_addresses();

    let first = hello(&apis[0], "first")
        .await?
        .map_err(|s| anyhow::anyhow!("the first agent was refused: {s:?}"))?;
    let refused = hello(&apis[1], "second")
        .await?
        .err()
        .context("a second agent streamed for the cluster on another node")?;
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    assert!(
        refused.message().contains("another agent already streams"),
        "{refused:?}"
    );

    // The first agent, its connection to node 1 cut without either side noticing, fails over.
    let moved = hello(&apis[2], "first")
        .await?
        .map_err(|s| anyhow::anyhow!("the first agent's failover was refused: {s:?}"))?;

    // Once the first agent is gone everywhere, the second gets in.
    drop(first);
    drop(moved);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match hello(&apis[1], "second").await? {
            Ok(_) => break,
            Err(status) if status.code() == Code::AlreadyExists => {}
            Err(status) => bail!("the second agent was refused otherwise: {status:?}"),
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the second agent was still refused {PATIENCE:?} after the first left");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
