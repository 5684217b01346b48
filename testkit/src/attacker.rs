//! Hostile clients for the listener tests: TLS connections from a chosen loopback source
//! address — [`ATTACKER`], so a hub's per-peer limits apply to them and not to the legitimate
//! clients on 127.0.0.1 — that trickle HTTP/1 request headers, or hold an HTTP/2 connection
//! open without a request, or say nothing at all after the handshake.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

/// The source address hostile connections come from.
pub const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Which protocol a connection offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `http/1.1`.
    Http1,
    /// `h2`.
    Http2,
}

/// TLS clients trusting one hub's CA, for `127.0.0.1`.
#[derive(Clone)]
pub struct TlsClient {
    http1: TlsConnector,
    http2: TlsConnector,
}

impl TlsClient {
    /// Clients trusting only the CA certificate in `ca_file`.
    pub fn trusting(ca_file: &Path) -> anyhow::Result<TlsClient> {
        let ca = std::fs::read_to_string(ca_file)
            .with_context(|| format!("reading {}", ca_file.display()))?;
        let roots = flotilla_pki::TrustRoot::from_pem(&ca)?;
        let config = |alpn: &[u8]| -> anyhow::Result<TlsConnector> {
            let mut config: ClientConfig = flotilla_pki::client_config(&roots, None)?;
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(TlsConnector::from(Arc::new(config)))
        };
        Ok(TlsClient {
            http1: config(b"http/1.1")?,
            http2: config(b"h2")?,
        })
    }

    /// A TLS connection from `source` to `to`. A hub that refuses the connection at accept
    /// closes it at once, so the handshake fails.
    pub async fn connect(
        &self,
        source: IpAddr,
        to: SocketAddr,
        alpn: Alpn,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = connect_from(source, to).await?;
        let connector = match alpn {
            Alpn::Http1 => &self.http1,
            Alpn::Http2 => &self.http2,
        };
        let name = ServerName::IpAddress(to.ip().into());
        connector.connect(name, tcp).await
    }
}

/// A TCP connection from `source` (any loopback address on Linux) to `to`.
pub async fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

/// How a hostile connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The server closed it, this long after it was established.
    ClosedByServer(Duration),
    /// It was still open when told to stop.
    Stopped,
}

/// What a trickling connection saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trickled {
    /// How it ended.
    pub ended: Ended,
    /// Pieces sent after the first bytes.
    pub pieces: usize,
    /// What the server sent, if anything (an error status before it closed).
    pub answer: String,
}

/// Sends the start of an HTTP/1.1 request, then one more header line every `every`, never
/// finishing the headers, until the server closes the connection or `stop` turns true.
pub async fn trickle_headers<S>(stream: S, every: Duration, stop: watch::Receiver<bool>) -> Trickled
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let head = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n";
    trickle(
        stream,
        head,
        b"x-trickle: aaaaaaaaaaaaaaaa\r\n",
        every,
        stop,
    )
    .await
}

/// Sends an HTTP/1.1 request's complete headers announcing a large body, then one byte of the
/// body every `every`, until the server closes the connection or `stop` turns true.
pub async fn trickle_body<S>(stream: S, every: Duration, stop: watch::Receiver<bool>) -> Trickled
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let head = b"POST /webhook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
                 content-length: 100000\r\n\r\n";
    trickle(stream, head, b" ", every, stop).await
}

async fn trickle<S>(
    mut stream: S,
    head: &[u8],
    piece: &[u8],
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> Trickled
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let established = Instant::now();
    let closed = || Ended::ClosedByServer(established.elapsed());
    let mut seen = Vec::new();
    let mut pieces = 0;
    let ended = async {
        if stream.write_all(head).await.is_err() {
            return closed();
        }
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => return Ended::Stopped,
                read = stream.read(&mut buf) => match read {
                    // Whatever the server says (a 408, a 400), it is ending the connection;
                    // the close follows.
                    Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                    _ => return closed(),
                },
                _ = tick.tick() => {
                    if stream.write_all(piece).await.is_err() {
                        return closed();
                    }
                    pieces += 1;
                }
            }
        }
    }
    .await;
    Trickled {
        ended,
        pieces,
        answer: String::from_utf8_lossy(&seen).into_owned(),
    }
}

/// Completes the HTTP/2 handshake on `stream` and then sends no request, answering the
/// server's pings (the HTTP/2 implementation does), until the server closes the connection or
/// `stop` turns true.
pub async fn hold_http2<S>(stream: S, mut stop: watch::Receiver<bool>) -> anyhow::Result<Ended>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let established = Instant::now();
    let (_sender, connection) = hyper::client::conn::http2::handshake::<
        _,
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(TokioExecutor::new(), TokioIo::new(stream))
    .await?;
    tokio::select! {
        _ = stopped(&mut stop) => Ok(Ended::Stopped),
        _ = connection => Ok(Ended::ClosedByServer(established.elapsed())),
    }
}

/// Says nothing after the handshake until the server closes the connection or `stop` turns
/// true.
pub async fn stay_silent<S>(mut stream: S, mut stop: watch::Receiver<bool>) -> Ended
where
    S: tokio::io::AsyncRead + Unpin,
{
    let established = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return Ended::Stopped,
            read = stream.read(&mut buf) => match read {
                Ok(n) if n > 0 => continue,
                _ => return Ended::ClosedByServer(established.elapsed()),
            },
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
