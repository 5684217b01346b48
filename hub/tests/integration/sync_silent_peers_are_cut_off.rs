//! Missed heartbeats end a stream whose peer went silent without closing its connection: the
//! hub cuts off an agent that stops sending (and its cluster goes offline within 10 s of its
//! last message, the documented bound of docs/protocol.md, "Liveness"), and an agent leaves a
//! hub node that stops answering (a frozen process, SIGSTOP) for another node.

use crate::support::hub_processes as processes;
use crate::support::sync as support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flotilla_proto::v1::agent_sync_client::AgentSyncClient;
use flotilla_proto::v1::{AgentMessage, Hello, agent_message, hub_message};
use processes::HubProcesses;
use support::*;
use tokio_stream::wrappers::ReceiverStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_ends_the_stream_of_an_agent_that_stops_sending() -> Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let hub = single_hub(dir.path(), None).await?;
    propose_all(&hub, vec![register("quiet")]).await?;

    let mut client = AgentSyncClient::connect(format!("http://{}", hub.api_address())).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(AgentMessage {
        kind: Some(agent_message::Kind::Hello(Hello {
            cluster: "quiet".into(),
            agent_version: "test".into(),
            held: Vec::new(),
            heartbeat_interval_ms: 100,
            max_message_bytes: 0,
            known_index: 0,
            identity: None,
            instance: String::new(),
        })),
    })
    .await?;
    // The hello, sent as the stream opens, is the last message the agent sends.
    let silent = Instant::now();
    let mut inbound = client.sync(ReceiverStream::new(rx)).await?.into_inner();
    let first = inbound.message().await?.context("a welcome")?;
    assert!(matches!(first.kind, Some(hub_message::Kind::Welcome(_))));
    eventually("quiet online", || {
        let online = hub.node().state().clusters["quiet"].online;
        async move { Ok(online.then_some(())) }
    })
    .await?;

    // Keep the connection open (`tx` lives on) but send nothing more.
    let status = loop {
        match tokio::time::timeout(PATIENCE, inbound.message()).await {
            Err(_) => bail!("the hub kept a silent agent's stream open"),
            Ok(Ok(Some(message))) => {
                assert!(matches!(
                    message.kind,
                    Some(hub_message::Kind::Heartbeat(_))
                ));
            }
            Ok(Ok(None)) => bail!("stream ended without a status"),
            Ok(Err(status)) => break status,
        }
    };
    let cut = silent.elapsed();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status}");
    assert_eq!(hub.sync().stats().streams_timed_out, 1);
    // Offline within 10 s of the agent falling silent, the cut included.
    let bound = Duration::from_secs(10);
    while hub.node().state().clusters["quiet"].online {
        if silent.elapsed() > bound {
            bail!(
                "quiet still online {:?} after its agent fell silent (its stream was cut after \
                 {cut:?}); the documented bound is {bound:?}",
                silent.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let offline = silent.elapsed();
    eprintln!(
        "quiet: stream cut {cut:?} and offline {offline:?} after its agent fell silent, {:?} \
         after the cut (bound {bound:?})",
        offline - cut
    );
    assert!(offline <= bound, "offline only after {offline:?}");
    drop(tx);
    hub.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_leaves_a_frozen_hub_node_for_another() -> Result<()> {
    init_tracing();
    let hubs = HubProcesses::start(3)?;
    hubs.leader().await?;
    hubs.propose(&register("sim-0")).await?;
    let sim = sim(1, Duration::from_millis(100)).await?;
    let a = agent(&sim, "sim-0", test_link(hubs.api_addresses(), "sim-0"))?;
    let mut connection = a.link.watch_connection();
    let first = connection
        .wait_for(Option::is_some)
        .await?
        .clone()
        .context("connected")?;
    let frozen = hubs
        .node_at(&first.address)
        .context("a node of the group")?;

    hubs.signal(frozen, "STOP")?;
    let moved = tokio::time::timeout(
        PATIENCE,
        connection.wait_for(|c| c.as_ref().is_some_and(|c| c.address != first.address)),
    )
    .await;
    hubs.signal(frozen, "CONT")?;
    let moved = moved
        .context("the agent stayed with the frozen node")??
        .clone()
        .context("connected")?;
    assert_ne!(moved.node, first.node);
    assert!(a.link.stats().sessions >= 2);
    a.link.shutdown().await;
    Ok(())
}
