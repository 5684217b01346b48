//! Agent registration against a hub with TLS, over real sockets: a bootstrap token and a
//! certificate signing request get a client certificate for the token's cluster, with which
//! the agent's sync stream is served; a token works once and not after it expires; and the
//! issued serial is recorded in the replicated state.

use crate::support::secure;

use std::time::Duration;

use anyhow::Result;
use flotilla_hub::clock::ManualClock;
use secure::{SecureHub, SyncStream};
use tonic::Code;

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn a_token_and_a_csr_get_a_certificate_that_streams_the_tokens_cluster() -> Result<()> {
    let hub = SecureHub::start(|_| {}).await?;
    let token = hub.add_cluster("edge-1", HOUR).await?;
    let identity = hub.register(&token, "edge-1").await?;

    let serial = identity.serial()?;
    let recorded = hub.state(|s| s.pki.certificates.get(&serial).map(|c| c.cluster.clone()));
    assert_eq!(recorded.as_deref(), Some("edge-1"));

    // The certificate opens the cluster's stream: the hub answers with its welcome.
    SyncStream::open(hub.channel(Some(&identity)).await?, "edge-1").await?;
    Ok(())
}

#[tokio::test]
async fn a_replayed_token_is_refused() -> Result<()> {
    let hub = SecureHub::start(|_| {}).await?;
    let token = hub.add_cluster("edge-1", HOUR).await?;
    hub.register(&token, "edge-1").await?;
    let replay = hub
        .register(&token, "edge-1")
        .await
        .err()
        .expect("a used token registered a second agent");
    assert_eq!(replay.code(), Code::PermissionDenied, "{replay:?}");
    assert!(replay.message().contains("used"), "{}", replay.message());
    Ok(())
}

#[tokio::test]
async fn an_expired_token_is_refused() -> Result<()> {
    let clock = ManualClock::new(flotilla_hub::clock::system().now());
    let hub = SecureHub::start(|config| config.clock = clock.clone()).await?;
    let token = hub.add_cluster("edge-1", Duration::from_secs(60)).await?;
    clock.advance(61_000);
    let late = hub
        .register(&token, "edge-1")
        .await
        .err()
        .expect("an expired token registered an agent");
    assert_eq!(late.code(), Code::PermissionDenied, "{late:?}");
    assert!(late.message().contains("expired"), "{}", late.message());
    Ok(())
}

#[tokio::test]
async fn a_token_signs_only_its_own_cluster() -> Result<()> {
    let hub = SecureHub::start(|_| {}).await?;
    hub.add_cluster("edge-2", HOUR).await?;
    let token = hub.add_cluster("edge-1", HOUR).await?;
    let refused = hub
        .register(&token, "edge-2")
        .await
        .err()
        .expect("edge-1's token got a certificate for edge-2");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    // A refused request does not burn the token.
    hub.register(&token, "edge-1").await?;
    Ok(())
}

#[tokio::test]
async fn garbage_is_not_a_token() -> Result<()> {
    let hub = SecureHub::start(|_| {}).await?;
    hub.add_cluster("edge-1", HOUR).await?;
    let refused = hub
        .register("fltb_not-a-token", "edge-1")
        .await
        .err()
        .expect("garbage registered an agent");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    Ok(())
}
