//! Mutual TLS between hub nodes: a node whose certificate comes from the group's CA joins and
//! catches up; a node with another CA's certificate is added but never hears from the group;
//! the peer listener refuses callers presenting another CA's certificate, and an agent's
//! certificate from the group's own CA (agents may not speak raft).

use crate::support::secure;

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use flotilla_consensus::transport::net::Security;
use flotilla_hub::config::{Bootstrap, NodeConfig, SecurityConfig, TlsSettings};
use flotilla_hub::node::GroupClient;
use flotilla_hub::node::{Node, NodeHandle};
use flotilla_pki::{CaPem, GroupCa};
use flotilla_proto::v1::GroupStatusRequest;
use flotilla_proto::v1::hub_group_client::HubGroupClient;
use secure::AgentIdentityPem;
use tempfile::TempDir;

fn config(id: u64, dir: &TempDir, ca: &CaPem, bootstrap: Bootstrap) -> NodeConfig {
    let mut config = NodeConfig::new(id, dir.path().join(format!("node-{id}")), "127.0.0.1:0");
    config.bootstrap = bootstrap;
    config.security = SecurityConfig::Tls(TlsSettings {
        ca: Some(ca.clone()),
        ..TlsSettings::new()
    });
    config
}

async fn wait_applied(node: &NodeHandle, what: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while node.applied_index() == 0 || node.state().members.is_empty() {
        if tokio::time::Instant::now() > deadline {
            bail!("{what}: node {} never caught up", node.id());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn operator(ca: GroupCa) -> Result<Security> {
    Ok(Security::operator(ca, "127.0.0.1")?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_the_groups_ca_joins_and_one_of_another_ca_never_catches_up() -> Result<()> {
    flotilla_pki::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let group_ca = GroupCa::generate("flotilla", SystemTime::now())?.to_pem();
    let other_ca = GroupCa::generate("flotilla", SystemTime::now())?.to_pem();
    let first = Node::start(config(1, &dir, &group_ca, Bootstrap::Single)).await?;
    let trusted = Node::start(config(2, &dir, &group_ca, Bootstrap::Join)).await?;
    let stranger = Node::start(config(3, &dir, &other_ca, Bootstrap::Join)).await?;

    first.add_member(2, trusted.address()).await?;
    wait_applied(&trusted, "the node with the group's CA").await?;

    // Two of three voters are enough to add the third; it never hears a word it trusts.
    first.add_member(3, stranger.address()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stranger.applied_index(), 0, "the stranger caught up");
    assert!(stranger.state().members.is_empty());
    assert!(first.state().members.contains_key(&3));
    for node in [stranger, trusted, first] {
        node.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn the_peer_listener_refuses_other_cas_and_agents() -> Result<()> {
    flotilla_pki::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let group_ca = GroupCa::generate("flotilla", SystemTime::now())?;
    let node = Node::start(config(1, &dir, &group_ca.to_pem(), Bootstrap::Single)).await?;

    // An operator holding the group's CA is a peer.
    let own = GroupClient::with_security(
        node.address(),
        &operator(GroupCa::from_pem(&group_ca.to_pem())?)?,
    )?
    .status()
    .await?;
    assert_eq!(own.id, 1);

    let other = GroupCa::generate("flotilla", SystemTime::now())?;
    let refused = GroupClient::with_security(node.address(), &operator(other)?)?
        .status()
        .await;
    assert!(refused.is_err(), "a peer of another CA was answered");

    // An agent's certificate from the same CA passes the handshake but not the identity check.
    let key = flotilla_pki::AgentKey::generate()?;
    let issued = group_ca.sign_agent_csr(
        &key.csr_pem("edge-1")?,
        "edge-1",
        Duration::from_secs(600),
        SystemTime::now(),
    )?;
    let agent = AgentIdentityPem {
        certificate_pem: issued.certificate_pem,
        private_key_pem: key.private_key_pem(),
    };
    let channel = secure::channel(node.address(), group_ca.certificate_pem(), Some(&agent)).await?;
    let status = HubGroupClient::new(channel)
        .status(GroupStatusRequest::default())
        .await
        .err()
        .context("an agent certificate was answered on the peer listener")?;
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    node.shutdown().await;
    Ok(())
}
