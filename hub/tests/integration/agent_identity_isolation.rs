//! On a hub with TLS an agent acts only for the cluster its verified certificate names: a
//! certificate from another CA gets no stream, a hello or a report naming another cluster is
//! refused and audited (one by one up to the node's limit per actor and window), and removing
//! the cluster revokes its certificates at once — its open stream is closed and reconnecting is
//! refused, even after a cluster of the same name is added again.

use crate::support::secure;

use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_hub::audit::DEFAULT_PER_WINDOW;
use flotilla_hub::state::Command;
use flotilla_proto::v1::{AgentMessage, ReportBatch, agent_message};
use secure::{AgentIdentityPem, SecureHub, SyncStream, denials, wait_state};
use tonic::Code;

const HOUR: Duration = Duration::from_secs(3600);

/// A hub with clusters `edge-1` and `edge-2`, and a registered certificate for `edge-1`.
async fn hub_with_agent() -> Result<(SecureHub, AgentIdentityPem)> {
    let hub = SecureHub::start(|_| {}).await?;
    hub.add_cluster("edge-2", HOUR).await?;
    let token = hub.add_cluster("edge-1", HOUR).await?;
    let identity = hub.register(&token, "edge-1").await?;
    Ok((hub, identity))
}

#[tokio::test]
async fn a_certificate_from_another_ca_gets_no_stream() -> Result<()> {
    let (hub, _) = hub_with_agent().await?;
    let forged = AgentIdentityPem::forged("edge-1")?;
    let outcome = match hub.channel(Some(&forged)).await {
        Ok(channel) => SyncStream::open(channel, "edge-1").await.map(|_| ()).err(),
        Err(_) => Some(tonic::Status::unavailable("handshake refused")),
    };
    assert!(
        outcome.is_some(),
        "an agent with another CA's certificate got a stream"
    );
    assert!(hub.hub.sync().clusters().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_stream_without_a_certificate_is_refused() -> Result<()> {
    let (hub, _) = hub_with_agent().await?;
    let refused = SyncStream::open(hub.channel(None).await?, "edge-1")
        .await
        .err()
        .context("a stream without a certificate was served")?;
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    Ok(())
}

#[tokio::test]
async fn a_hello_naming_another_cluster_is_refused_and_audited() -> Result<()> {
    let (hub, identity) = hub_with_agent().await?;
    let refused = SyncStream::open(hub.channel(Some(&identity)).await?, "edge-2")
        .await
        .err()
        .context("edge-1's certificate opened edge-2's stream")?;
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("edge-1"),
        "{}",
        refused.message()
    );
    wait_state(&hub, "the impersonation audited", |s| {
        !denials(s, "cluster/edge-2").is_empty()
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_flood_of_foreign_hellos_is_audited_one_by_one_only_up_to_the_limit() -> Result<()> {
    let (hub, identity) = hub_with_agent().await?;
    let channel = hub.channel(Some(&identity)).await?;
    let budget = DEFAULT_PER_WINDOW as usize;
    for _ in 0..budget + 10 {
        let refused = SyncStream::open(channel.clone(), "edge-2")
            .await
            .err()
            .context("edge-1's certificate opened edge-2's stream")?;
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    }
    // Each refusal is answered after its record is applied (or skipped): the count is final.
    let recorded = hub.state(|s| denials(s, "cluster/edge-2").len());
    assert_eq!(recorded, budget, "refusals recorded one by one in a window");
    Ok(())
}

#[tokio::test]
async fn a_report_for_another_cluster_ends_the_stream_and_is_audited() -> Result<()> {
    let (hub, identity) = hub_with_agent().await?;
    let mut stream = SyncStream::open(hub.channel(Some(&identity)).await?, "edge-1").await?;
    let report = flotilla_proto::v1::Report {
        bundle: "web".into(),
        cluster: "edge-2".into(),
        at_ms: 1,
        event: Some(flotilla_proto::v1::report::Event::Health(
            flotilla_proto::v1::HealthReport {
                health: "Healthy".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    stream
        .out
        .send(AgentMessage {
            kind: Some(agent_message::Kind::Reports(ReportBatch {
                reports: vec![report],
            })),
        })
        .await?;
    let ended = stream.until_end(Duration::from_secs(10)).await?;
    let status = ended.context("the stream ended without a status")?;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    wait_state(&hub, "the foreign report audited", |s| {
        !denials(s, "cluster/edge-2").is_empty()
    })
    .await?;
    let recorded = hub.state(|s| s.health.keys().any(|k| k.cluster == "edge-2"));
    assert!(!recorded, "edge-1's agent recorded health for edge-2");
    Ok(())
}

#[tokio::test]
async fn removing_a_cluster_closes_its_stream_and_refuses_its_certificate() -> Result<()> {
    let (hub, identity) = hub_with_agent().await?;
    let mut stream = SyncStream::open(hub.channel(Some(&identity)).await?, "edge-1").await?;
    let clock = hub.clock.clone();
    hub.hub
        .node()
        .propose(&Command::RemoveCluster {
            name: "edge-1".into(),
            at: clock.now(),
        })
        .await?;
    let serial = identity.serial()?;
    assert!(
        hub.state(|s| s.pki.revoked.contains(&serial)),
        "serial not revoked"
    );

    let ended = stream.until_end(Duration::from_secs(10)).await?;
    let status = ended.context("the stream ended without a status")?;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // Added again under the same name: the old certificate stays refused.
    hub.hub
        .node()
        .propose(&Command::RegisterCluster {
            name: "edge-1".into(),
            labels: Default::default(),
            at: clock.now(),
        })
        .await?;
    let refused = SyncStream::open(hub.channel(Some(&identity)).await?, "edge-1")
        .await
        .err()
        .context("a removed cluster's certificate reconnected")?;
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    Ok(())
}
