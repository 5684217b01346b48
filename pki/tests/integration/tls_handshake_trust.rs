//! Real TLS handshakes over loopback: who is let in, who is refused, and what identity the
//! server reads from the client's certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use flotilla_pki::{
    ClientAuth, GroupCa, IdentityError, PeerCertificate, PeerIdentity, TlsIdentity, TlsListener,
    TrustRoot, client_config, peer_certificate, server_config,
};
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn group_ca() -> GroupCa {
    GroupCa::generate("test", SystemTime::now() - DAY).expect("generate CA")
}

/// The identity of hub node `node`, reachable as `localhost` and `127.0.0.1`.
fn node(ca: &GroupCa, node: u64) -> TlsIdentity {
    ca.issue_node_certificate(
        node,
        &["localhost".into(), "127.0.0.1".into()],
        HOUR,
        SystemTime::now(),
    )
    .expect("issue node certificate")
    .tls_identity()
    .expect("node identity")
}

/// An agent identity for `cluster`, as registration produces it: a fresh key, a CSR, signed by
/// `ca` at `issued` for `lifetime`.
fn agent(ca: &GroupCa, cluster: &str, issued: SystemTime, lifetime: Duration) -> TlsIdentity {
    let key = flotilla_pki::AgentKey::generate().expect("agent key");
    let csr = key.csr_pem(cluster).expect("csr");
    let issued = ca
        .sign_agent_csr(&csr, cluster, lifetime, issued)
        .expect("sign csr");
    TlsIdentity::from_pem(&issued.certificate_pem, &key.private_key_pem()).expect("identity")
}

/// What the server saw of one connection: the verified peer certificate, or the handshake
/// error.
type Outcome = std::result::Result<std::result::Result<PeerCertificate, IdentityError>, String>;

/// Accepts one connection with `config` and answers `pong` to its `ping`.
async fn serve_once(
    config: rustls::ServerConfig,
) -> Result<(SocketAddr, tokio::task::JoinHandle<Outcome>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let handle = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer = peer_certificate(tls.get_ref().1.peer_certificates());
        let mut ping = [0; 4];
        tls.read_exact(&mut ping).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok(peer)
    });
    Ok((addr, handle))
}

/// Connects as `localhost`, sends `ping` and expects `pong`. In TLS 1.3 the server judges the
/// client's certificate after the client's handshake is done, so a refusal shows on the read.
async fn dial(addr: SocketAddr, host: &str, config: rustls::ClientConfig) -> Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(host.to_owned())?;
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    tls.write_all(b"ping").await?;
    let mut pong = [0; 4];
    tls.read_exact(&mut pong)
        .await
        .context("reading the answer")?;
    if &pong != b"pong" {
        return Err(anyhow!("unexpected answer {pong:?}"));
    }
    Ok(())
}

async fn exchange(
    server: rustls::ServerConfig,
    host: &str,
    client: rustls::ClientConfig,
) -> Result<(Result<()>, Outcome)> {
    let (addr, handle) = serve_once(server).await?;
    let dialled = dial(addr, host, client).await;
    let seen = tokio::time::timeout(Duration::from_secs(10), handle).await??;
    Ok((dialled, seen))
}

#[tokio::test]
async fn an_agent_with_a_ca_signed_certificate_is_let_in_as_its_cluster() -> Result<()> {
    let ca = group_ca();
    let server = server_config(&node(&ca, 1), &ca.trust_root(), ClientAuth::Optional)?;
    let agent = agent(&ca, "prod-eu-1", SystemTime::now(), HOUR);
    let client = client_config(&ca.trust_root(), Some(&agent))?;
    let (dialled, seen) = exchange(server, "localhost", client).await?;
    dialled?;
    let peer = seen.map_err(|e| anyhow!(e))??;
    assert_eq!(peer.identity, PeerIdentity::Cluster("prod-eu-1".into()));
    Ok(())
}

#[tokio::test]
async fn a_self_signed_certificate_claiming_a_cluster_is_refused() -> Result<()> {
    let ca = group_ca();
    let server = server_config(&node(&ca, 1), &ca.trust_root(), ClientAuth::Optional)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = vec![SanType::URI(
        "spiffe://flotilla/cluster/prod-eu-1".try_into()?,
    )];
    let forged = params.self_signed(&key)?;
    let forged = TlsIdentity::from_pem(&forged.pem(), &key.serialize_pem())?;
    let client = client_config(&ca.trust_root(), Some(&forged))?;
    let (dialled, seen) = exchange(server, "localhost", client).await?;
    assert!(dialled.is_err(), "the forged client got an answer");
    let refused = seen.expect_err("the server accepted a self-signed client");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    Ok(())
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() -> Result<()> {
    let ca = group_ca();
    let other = group_ca();
    let server = server_config(&node(&ca, 1), &ca.trust_root(), ClientAuth::Required)?;
    let stranger = agent(&other, "prod-eu-1", SystemTime::now(), HOUR);
    let client = client_config(&ca.trust_root(), Some(&stranger))?;
    let (dialled, seen) = exchange(server, "localhost", client).await?;
    assert!(dialled.is_err(), "the other CA's client got an answer");
    let refused = seen.expect_err("the server accepted another CA's client");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    Ok(())
}

#[tokio::test]
async fn an_expired_agent_certificate_is_refused() -> Result<()> {
    let ca = group_ca();
    let server = server_config(&node(&ca, 1), &ca.trust_root(), ClientAuth::Optional)?;
    let expired = agent(&ca, "prod-eu-1", SystemTime::now() - 2 * HOUR, HOUR);
    let client = client_config(&ca.trust_root(), Some(&expired))?;
    let (dialled, seen) = exchange(server, "localhost", client).await?;
    assert!(dialled.is_err(), "the expired client got an answer");
    let refused = seen.expect_err("the server accepted an expired certificate");
    assert!(refused.contains("certificate expired"), "{refused}");
    Ok(())
}

#[tokio::test]
async fn a_client_without_certificate_is_refused_where_one_is_required() -> Result<()> {
    let ca = group_ca();
    let server = server_config(&node(&ca, 1), &ca.trust_root(), ClientAuth::Required)?;
    let client = client_config(&ca.trust_root(), None)?;
    let (dialled, seen) = exchange(server, "localhost", client).await?;
    assert!(dialled.is_err());
    let refused = seen.expect_err("the server accepted a client without certificate");
    assert!(refused.contains("no certificates"), "{refused}");
    Ok(())
}

#[tokio::test]
async fn a_client_without_certificate_is_let_in_anonymously_where_optional() -> Result<()> {
    let ca = group_ca();
    let server = server_config(&node(&ca, 1), &ca.trust_root(), ClientAuth::Optional)?;
    let client = client_config(&ca.trust_root(), None)?;
    let (dialled, seen) = exchange(server, "localhost", client).await?;
    dialled?;
    assert_eq!(
        seen.map_err(|e| anyhow!(e))?,
        Err(IdentityError::NoCertificate)
    );
    Ok(())
}

#[tokio::test]
async fn hub_nodes_authenticate_each_other() -> Result<()> {
    let ca = group_ca();
    let server = server_config(&node(&ca, 1), &ca.trust_root(), ClientAuth::Required)?;
    let client = client_config(&ca.trust_root(), Some(&node(&ca, 2)))?;
    let (dialled, seen) = exchange(server, "127.0.0.1", client).await?;
    dialled?;
    let peer = seen.map_err(|e| anyhow!(e))??;
    assert_eq!(peer.identity, PeerIdentity::HubNode(2));
    Ok(())
}

#[tokio::test]
async fn a_client_refuses_a_server_of_another_ca() -> Result<()> {
    let ca = group_ca();
    let impostor = group_ca();
    let server = server_config(&node(&impostor, 1), &impostor.trust_root(), ClientAuth::Off)?;
    let client = client_config(&ca.trust_root(), None)?;
    let (dialled, _) = exchange(server, "localhost", client).await?;
    let refused = format!(
        "{:#}",
        dialled.expect_err("the client trusted another CA's server")
    );
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    Ok(())
}

#[tokio::test]
async fn a_client_refuses_a_server_certificate_for_another_host() -> Result<()> {
    let ca = group_ca();
    let elsewhere = ca
        .issue_node_certificate(1, &["hub-1.example.com".into()], HOUR, SystemTime::now())?
        .tls_identity()?;
    let server = server_config(&elsewhere, &ca.trust_root(), ClientAuth::Off)?;
    let client = client_config(&ca.trust_root(), None)?;
    let (dialled, _) = exchange(server, "localhost", client).await?;
    let refused = format!(
        "{:#}",
        dialled.expect_err("the client accepted a wrong host name")
    );
    assert!(refused.contains("not valid for name"), "{refused}");
    Ok(())
}

#[tokio::test]
async fn an_agent_certificate_cannot_serve_as_a_hub() -> Result<()> {
    let ca = group_ca();
    let agent = agent(&ca, "localhost", SystemTime::now(), HOUR);
    let server = server_config(&agent, &ca.trust_root(), ClientAuth::Off)?;
    let client = client_config(&ca.trust_root(), None)?;
    let (dialled, _) = exchange(server, "localhost", client).await?;
    let refused = format!(
        "{:#}",
        dialled.expect_err("an agent certificate served TLS")
    );
    // Agent certificates carry the client-authentication purpose only.
    assert!(
        refused.contains("does not allow extended key usage for server authentication"),
        "{refused}"
    );
    Ok(())
}

#[tokio::test]
async fn the_listener_skips_failed_handshakes_and_serves_the_next_client() -> Result<()> {
    let ca = group_ca();
    let config = server_config(&node(&ca, 1), &ca.trust_root(), ClientAuth::Required)?;
    let tcp = TcpListener::bind("127.0.0.1:0").await?;
    let addr = tcp.local_addr()?;
    let mut listener = TlsListener::new(tcp, Arc::new(config));

    // A client that connects and never speaks, and one that speaks plain text.
    let _silent = TcpStream::connect(addr).await?;
    let mut plain = TcpStream::connect(addr).await?;
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").await?;
    // A client of another CA.
    let stranger = agent(&group_ca(), "c1", SystemTime::now(), HOUR);
    let refused = tokio::spawn(dial(
        addr,
        "localhost",
        client_config(&ca.trust_root(), Some(&stranger))?,
    ));
    let good = agent(&ca, "c2", SystemTime::now(), HOUR);
    let accepted = tokio::spawn(dial(
        addr,
        "localhost",
        client_config(&ca.trust_root(), Some(&good))?,
    ));

    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await?;
    let peer = peer_certificate(stream.get_ref().1.peer_certificates())?;
    assert_eq!(peer.identity, PeerIdentity::Cluster("c2".into()));
    let mut ping = [0; 4];
    stream.read_exact(&mut ping).await?;
    stream.write_all(b"pong").await?;
    accepted.await??;
    assert!(refused.await?.is_err(), "the other CA's client got through");
    Ok(())
}

#[test]
fn a_trust_root_must_be_a_pem_certificate() {
    let error = TrustRoot::from_pem("nothing here").expect_err("not a certificate");
    assert!(error.to_string().contains("CA certificate"), "{error}");
    let error = TlsIdentity::from_pem("nothing", "nothing").expect_err("not an identity");
    assert!(error.to_string().contains("certificate"), "{error}");
}
