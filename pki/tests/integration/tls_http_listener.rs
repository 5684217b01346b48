//! The hub's HTTP listener over Flotilla's TLS: axum serves through `TlsListener` (wrapped in
//! the few lines of `axum::serve::Listener` shown here), and a browser-like client that trusts
//! the group's CA reads a page over HTTP/1.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use axum::Router;
use axum::routing::get;
use flotilla_pki::{ClientAuth, GroupCa, TlsListener, client_config, server_config};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::server::TlsStream;

/// What the hub needs to hand a `TlsListener` to `axum::serve`.
struct AxumTls(TlsListener);

impl axum::serve::Listener for AxumTls {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.0.accept().await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[tokio::test]
async fn axum_serves_https_to_a_client_that_trusts_the_ca() -> Result<()> {
    let ca = GroupCa::generate("test", SystemTime::now())?;
    let node = ca
        .issue_node_certificate(
            1,
            &["localhost".into()],
            Duration::from_secs(3600),
            SystemTime::now(),
        )?
        .tls_identity()?;
    let config = server_config(&node, &ca.trust_root(), ClientAuth::Off)?;
    let tcp = TcpListener::bind("127.0.0.1:0").await?;
    let addr = tcp.local_addr()?;
    let app = Router::new().route("/healthz", get(|| async { "ok" }));
    tokio::spawn(axum::serve(AxumTls(TlsListener::new(tcp, Arc::new(config))), app).into_future());

    let mut client = client_config(&ca.trust_root(), None)?;
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_string(&mut response)).await??;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with("ok"), "{response}");
    Ok(())
}
