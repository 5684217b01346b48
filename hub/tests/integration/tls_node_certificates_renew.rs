//! A node renews its own certificate while it runs: with a third of the lifetime left it
//! issues itself a new one, which its listeners present and its peer channels offer from the
//! next handshake on. Long after the first certificates expired, a new API client connects and
//! a node joining the group is reached and caught up over fresh mutual-TLS connections both
//! ways.

use crate::support::ports::free_address;
use crate::support::secure::{self, PATIENCE};

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use flotilla_hub::config::{Bootstrap, NodeConfig, SecurityConfig, TlsSettings};
use flotilla_hub::server::{Hub, HubConfig};
use flotilla_pki::{CaPem, GroupCa, NodeCredentials};
use flotilla_proto::v1::AdminListClustersRequest;
use flotilla_proto::v1::admin_client::AdminClient;
use tempfile::TempDir;

/// Short enough that the test outlives several certificates.
const LIFETIME: Duration = Duration::from_secs(3);

async fn start(id: u64, dir: &TempDir, ca: &CaPem, bootstrap: Bootstrap) -> Result<Hub> {
    let mut node = NodeConfig::new(id, dir.path().join(format!("node-{id}")), &free_address()?);
    node.bootstrap = bootstrap;
    node.security = SecurityConfig::Tls(TlsSettings {
        ca: Some(ca.clone()),
        node_cert_lifetime: LIFETIME,
        ..TlsSettings::new()
    });
    let mut config = HubConfig::new(node);
    config.api_listen = "127.0.0.1:0".into();
    config.http_listen = "127.0.0.1:0".into();
    Ok(Hub::start(config).await?)
}

fn credentials(hub: &Hub) -> Result<NodeCredentials> {
    Ok(hub
        .node()
        .security()
        .tls()
        .context("TLS is on")?
        .credentials())
}

async fn caught_up(hub: &Hub, members: usize) -> Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while hub.node().state().members.len() < members {
        if tokio::time::Instant::now() > deadline {
            bail!("node {} never caught up", hub.node().id());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_renew_their_certificates_and_keep_meeting_new_peers_and_clients() -> Result<()> {
    flotilla_pki::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let ca = GroupCa::generate("flotilla", SystemTime::now())?.to_pem();
    let first = start(1, &dir, &ca, Bootstrap::Single).await?;
    let second = start(2, &dir, &ca, Bootstrap::Join).await?;
    first.node().add_member(2, second.node().address()).await?;
    caught_up(&second, 2).await?;
    let issued = [credentials(&first)?, credentials(&second)?];

    // Past the first certificates' expiry: each node is on a newer one.
    let expired = issued.iter().map(|c| c.not_after).max().context("two")?;
    tokio::time::sleep(expired.duration_since(SystemTime::now())? + LIFETIME).await;
    for (hub, old) in [&first, &second].into_iter().zip(&issued) {
        let now = credentials(hub)?;
        assert_ne!(
            now.serial,
            old.serial,
            "node {} never renewed",
            hub.node().id()
        );
        assert!(now.not_after > SystemTime::now());
    }

    // A new client's handshake meets the renewed server certificate: the call gets as far as
    // asking for a bearer token (a failed handshake would never reach the service).
    let channel = secure::channel(&first.api_address().to_string(), &ca.certificate, None).await?;
    let refused = AdminClient::new(channel)
        .list_clusters(AdminListClustersRequest {})
        .await
        .expect_err("no token given");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");

    // A joining node is reached over new connections: the members offer their renewed client
    // certificates to it, and it to them.
    let third = start(3, &dir, &ca, Bootstrap::Join).await?;
    first.node().add_member(3, third.node().address()).await?;
    caught_up(&third, 3).await?;
    for hub in [&first, &second, &third] {
        hub.shutdown().await;
    }
    Ok(())
}
