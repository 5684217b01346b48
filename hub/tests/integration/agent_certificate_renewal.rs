//! An agent renews its client certificate before it expires: with a three-second lifetime the
//! agent's renewal loop gets a new certificate (a fresh key, authenticated by the current one)
//! at two thirds of it, stores it, and streams with it after the first one has expired.

use crate::support::secure;

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use flotilla_agent::ClusterUid;
use flotilla_agent::hub::AgentIdentity;
use flotilla_agent::hub::identity::renew_loop;
use flotilla_pki::CredentialStore;
use secure::{SecureHub, SyncStream, wait_state};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_short_lived_certificate_is_renewed_before_it_expires() -> Result<()> {
    let lifetime = Duration::from_secs(3);
    let hub = SecureHub::start(|config| config.registration.agent_cert_lifetime = lifetime).await?;
    let token = hub.add_cluster("edge-1", Duration::from_secs(3600)).await?;
    let state_dir = tempfile::tempdir()?;
    let store = CredentialStore::in_dir(state_dir.path());
    let hubs = vec![hub.api()];
    let identity = AgentIdentity::establish(
        store.clone(),
        "edge-1",
        &hubs,
        Some(&hub.ca_pem()?),
        Some(&token),
        &ClusterUid::Known("edge-1-kube-system".into()),
    )
    .await?;
    let first = store
        .load()?
        .context("no stored credentials")?
        .certificate()?;
    let (renew_at, expires) = identity.renewal()?;
    assert!(renew_at < expires, "renewal is due only after expiry");

    let stop = CancellationToken::new();
    let renewing = tokio::spawn(renew_loop(identity.clone(), hubs, stop.clone()));
    wait_state(&hub, "a second certificate for edge-1", |s| {
        s.pki
            .certificates
            .values()
            .filter(|c| c.cluster == "edge-1")
            .count()
            >= 2
    })
    .await?;
    // The hub records the new serial before the agent has its answer: wait for the file.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stored = store
            .load()?
            .context("no stored credentials")?
            .certificate()?;
        if stored.serial != first.serial {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stored certificate was not replaced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Past the first certificate's expiry, the agent's current one still opens its stream.
    let past_expiry = first
        .not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(past_expiry + Duration::from_millis(500)).await;
    let channel = identity
        .endpoint(&hub.api())
        .map_err(anyhow::Error::msg)?
        .connect()
        .await?;
    SyncStream::open(channel, "edge-1").await?;
    stop.cancel();
    renewing.await?;
    Ok(())
}
