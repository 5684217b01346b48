//! A cluster's name is bound to the Kubernetes cluster its first agent talks to (the UID of
//! that cluster's kube-system namespace), on a hub with TLS over real sockets: an agent holding
//! the name's credentials but talking to another cluster is refused with both UIDs and what to
//! do, audited within the per-actor limit, counted and shown as the cluster's conflict, while
//! the rightful agent keeps streaming; a registration from another cluster is refused before
//! the token is spent; an identity the agent cannot read is never a match; one agent instance
//! streams per cluster, its own reconnect taking over; and an admin's reset lets a rebuilt
//! cluster in.

use crate::support::secure;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_hub::audit::DEFAULT_PER_WINDOW;
use flotilla_hub::clock::ManualClock;
use flotilla_hub::state::{Command, State};
use flotilla_proto::v1::{ClusterIdentity, Hello};
use secure::{AgentIdentityPem, SecureHub, SyncStream, denials, hello, hello_from, kube_system};
use tonic::Code;

const HOUR: Duration = Duration::from_secs(3600);
const RIGHTFUL: &str = "6c1f0b2e-9a57-4d2e-8f0a-3b1d2c4e5f60";
const OTHER: &str = "0d9e8c7b-6a5f-4e3d-9c2b-1a0f9e8d7c6b";

/// A hub with cluster `edge-1` and a registered certificate for it.
async fn hub_with_agent(clock: Option<Arc<ManualClock>>) -> Result<(SecureHub, AgentIdentityPem)> {
    let hub = SecureHub::start(|config| {
        if let Some(clock) = clock {
            config.clock = clock;
        }
    })
    .await?;
    let token = hub.add_cluster("edge-1", HOUR).await?;
    let identity = hub.register(&token, "edge-1").await?;
    Ok((hub, identity))
}

fn bound(state: &State) -> Option<String> {
    state.clusters["edge-1"]
        .identity
        .as_ref()
        .map(|b| b.kube_system_uid.clone())
}

/// Opens a stream with `hello` presenting `identity`; the refusal, or `None` when served.
async fn refusal(
    hub: &SecureHub,
    identity: &AgentIdentityPem,
    hello: Hello,
) -> Result<Option<tonic::Status>> {
    let channel = hub.channel(Some(identity)).await?;
    Ok(SyncStream::open_with(channel, hello).await.err())
}

#[tokio::test]
async fn an_agent_of_another_cluster_is_refused_naming_both_uids_while_the_rightful_one_streams()
-> Result<()> {
    let (hub, identity) = hub_with_agent(None).await?;
    let channel = hub.channel(Some(&identity)).await?;
    // Slow heartbeats: the test sends none while the impostor loops.
    let patient = Hello {
        heartbeat_interval_ms: 30_000,
        ..hello_from("edge-1", "rightful", RIGHTFUL)
    };
    let mut rightful = SyncStream::open_with(channel, patient).await?;
    assert_eq!(hub.state(bound).as_deref(), Some(RIGHTFUL));
    let binds = hub.state(|s| {
        s.audit
            .since(0)
            .filter(|(_, e)| e.action == "cluster.identity.bind" && e.target == "cluster/edge-1")
            .count()
    });
    assert_eq!(binds, 1, "the binding is audited once");

    // The same credentials, copied to an agent of another cluster, retrying in a loop.
    let attempts = DEFAULT_PER_WINDOW as usize + 10;
    for _ in 0..attempts {
        let refused = refusal(&hub, &identity, hello_from("edge-1", "copy", OTHER))
            .await?
            .context("an agent of another cluster was served")?;
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        let message = refused.message();
        assert!(
            message.contains(RIGHTFUL)
                && message.contains(OTHER)
                && message.contains("flotilla cluster reset-identity edge-1"),
            "{message}"
        );
    }
    assert_eq!(hub.hub.sync().stats().identity_conflicts, attempts as u64);
    // Audited one by one up to the actor's limit (the rest fold into an aggregate later).
    let recorded = hub.state(|s| denials(s, "cluster/edge-1").len());
    assert_eq!(recorded, DEFAULT_PER_WINDOW as usize);
    let conflict = hub
        .state(|s| s.clusters["edge-1"].identity_conflict.clone())
        .context("the conflict is recorded on the cluster")?;
    assert_eq!(conflict.kube_system_uid, OTHER);
    let metrics = hub
        .hub
        .metrics()
        .scrape(
            hub.hub.node(),
            None,
            Default::default(),
            flotilla_hub::state::Timestamp(0),
        )
        .await?;
    assert!(
        metrics.contains(&format!(
            "flotilla_agent_identity_conflicts_total{{cluster=\"edge-1\"}} {attempts}"
        )),
        "{metrics}"
    );
    let status = hub.state(|s| flotilla_hub::status::fleet_status(s, None, 1, Some(1), 0));
    let shown = status
        .clusters
        .iter()
        .find(|c| c.name == "edge-1")
        .and_then(|c| c.identity_conflict.clone())
        .context("the status shows the conflict")?;
    assert!(shown.message.contains("reset-identity edge-1"), "{shown:?}");
    assert_eq!(
        hub.state(bound).as_deref(),
        Some(RIGHTFUL),
        "the binding held"
    );

    // The rightful agent's stream was never interrupted.
    let still = rightful.until_end(Duration::from_secs(1)).await;
    assert!(still.is_err(), "the rightful stream ended: {still:?}");
    Ok(())
}

#[tokio::test]
async fn a_repeated_conflict_is_recorded_again_only_after_a_minute() -> Result<()> {
    let clock = ManualClock::new(flotilla_hub::clock::system().now());
    let (hub, identity) = hub_with_agent(Some(clock.clone())).await?;
    let _rightful = SyncStream::open_with(
        hub.channel(Some(&identity)).await?,
        hello_from("edge-1", "rightful", RIGHTFUL),
    )
    .await?;
    let last_at = |hub: &SecureHub| {
        hub.state(|s| {
            s.clusters["edge-1"]
                .identity_conflict
                .as_ref()
                .map(|c| c.last_at)
        })
    };
    refusal(&hub, &identity, hello_from("edge-1", "copy", OTHER)).await?;
    let first = last_at(&hub).context("a conflict")?;
    clock.advance(30_000);
    refusal(&hub, &identity, hello_from("edge-1", "copy", OTHER)).await?;
    assert_eq!(
        last_at(&hub),
        Some(first),
        "recorded again within the minute"
    );
    clock.advance(31_000);
    refusal(&hub, &identity, hello_from("edge-1", "copy", OTHER)).await?;
    assert!(last_at(&hub) > Some(first), "not recorded after the minute");
    Ok(())
}

#[tokio::test]
async fn a_registration_from_another_cluster_is_refused_and_leaves_the_token() -> Result<()> {
    let (hub, identity) = hub_with_agent(None).await?;
    SyncStream::open_with(
        hub.channel(Some(&identity)).await?,
        hello_from("edge-1", "rightful", RIGHTFUL),
    )
    .await?;
    let token = hub.token("edge-1", HOUR).await?;
    let refused = hub
        .register_from(&token, "edge-1", Some(kube_system(OTHER)))
        .await
        .err()
        .context("an agent of another cluster registered")?;
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains(OTHER), "{}", refused.message());
    // The token was not spent: the rightful cluster's agent still registers with it.
    hub.register_from(&token, "edge-1", Some(kube_system(RIGHTFUL)))
        .await?;
    Ok(())
}

#[tokio::test]
async fn an_identity_the_agent_cannot_read_is_never_a_match() -> Result<()> {
    let (hub, identity) = hub_with_agent(None).await?;
    let unreadable = Hello {
        identity: Some(ClusterIdentity {
            kube_system_uid: String::new(),
            unreadable: "connection refused".into(),
        }),
        instance: "blind".into(),
        ..hello("edge-1")
    };
    // Unbound: served nothing, binds nothing.
    let refused = refusal(&hub, &identity, unreadable.clone())
        .await?
        .context("an agent that cannot see its cluster was served")?;
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("connection refused"),
        "{refused:?}"
    );
    assert_eq!(hub.state(bound), None);
    // Bound: still not served.
    let first = SyncStream::open_with(
        hub.channel(Some(&identity)).await?,
        hello_from("edge-1", "rightful", RIGHTFUL),
    )
    .await?;
    drop(first);
    no_stream(&hub).await?;
    let refused = refusal(&hub, &identity, unreadable)
        .await?
        .context("an unreadable identity matched the bound one")?;
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    // Neither a conflict nor an audited refusal: the cluster's API server is down, that is all.
    assert!(hub.state(|s| s.clusters["edge-1"].identity_conflict.is_none()));
    assert!(hub.state(|s| denials(s, "cluster/edge-1").is_empty()));
    Ok(())
}

#[tokio::test]
async fn an_agent_predating_identities_is_served_only_while_none_is_bound() -> Result<()> {
    let (hub, identity) = hub_with_agent(None).await?;
    let old = SyncStream::open(hub.channel(Some(&identity)).await?, "edge-1").await?;
    assert_eq!(hub.state(bound), None, "an old agent binds nothing");
    drop(old);
    no_stream(&hub).await?;
    SyncStream::open_with(
        hub.channel(Some(&identity)).await?,
        hello_from("edge-1", "new", RIGHTFUL),
    )
    .await?;
    let refused = refusal(&hub, &identity, hello("edge-1"))
        .await?
        .context("an agent without an identity was served for a bound name")?;
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("upgrade"), "{refused:?}");
    Ok(())
}

#[tokio::test]
async fn a_second_instance_is_refused_while_the_first_streams_and_its_own_reconnect_takes_over()
-> Result<()> {
    let (hub, identity) = hub_with_agent(None).await?;
    let mut first = SyncStream::open_with(
        hub.channel(Some(&identity)).await?,
        hello_from("edge-1", "first", RIGHTFUL),
    )
    .await?;
    let refused = refusal(&hub, &identity, hello_from("edge-1", "second", RIGHTFUL))
        .await?
        .context("a second agent of the cluster was served")?;
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    assert!(
        refused.message().contains("another agent already streams"),
        "{refused:?}"
    );
    assert_eq!(hub.hub.sync().stats().streams_held, 1);
    wait_denied(&hub, "stream").await?;

    // The first agent reconnecting (a network cut its old connection has not noticed) gets in
    // at once, and its old stream ends.
    let _again = SyncStream::open_with(
        hub.channel(Some(&identity)).await?,
        hello_from("edge-1", "first", RIGHTFUL),
    )
    .await?;
    first.until_end(Duration::from_secs(5)).await?;
    assert_eq!(hub.hub.sync().clusters(), ["edge-1"]);
    Ok(())
}

#[tokio::test]
async fn a_reset_identity_lets_a_rebuilt_cluster_in() -> Result<()> {
    let (hub, identity) = hub_with_agent(None).await?;
    let old = SyncStream::open_with(
        hub.channel(Some(&identity)).await?,
        hello_from("edge-1", "old", RIGHTFUL),
    )
    .await?;
    drop(old);
    no_stream(&hub).await?;
    // The cluster is rebuilt: a new kube-system UID behind the same name.
    refusal(&hub, &identity, hello_from("edge-1", "rebuilt", OTHER))
        .await?
        .context("the rebuilt cluster's agent was served before the reset")?;
    hub.hub
        .node()
        .propose(&Command::ResetClusterIdentity {
            cluster: "edge-1".into(),
            kube_system_uid: None,
            by: "token:ops".into(),
            at: hub.clock.now(),
        })
        .await?;
    assert!(hub.state(|s| s.clusters["edge-1"].identity_conflict.is_none()));
    SyncStream::open_with(
        hub.channel(Some(&identity)).await?,
        hello_from("edge-1", "rebuilt", OTHER),
    )
    .await?;
    assert_eq!(hub.state(bound).as_deref(), Some(OTHER));
    Ok(())
}

/// Waits until a refusal whose reason mentions `word` is audited for edge-1.
async fn wait_denied(hub: &SecureHub, word: &str) -> Result<()> {
    secure::wait_state(hub, "the refusal audited", |s| {
        denials(s, "cluster/edge-1")
            .iter()
            .any(|d| d.contains(word))
    })
    .await
}

/// Waits until the hub has noticed that every stream the test dropped is gone.
async fn no_stream(hub: &SecureHub) -> Result<()> {
    let deadline = tokio::time::Instant::now() + secure::PATIENCE;
    while !hub.hub.sync().clusters().is_empty() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "a dropped stream is still registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
