//! Accepting TLS connections: handshakes run concurrently, so a client that connects and says
//! nothing delays no one, and a failed handshake is dropped instead of ending the listener.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to complete its handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in flight beyond which new TCP connections are closed at once, so a flood of
/// idle connections cannot exhaust memory.
const MAX_PENDING_HANDSHAKES: usize = 1024;

type Handshake = (SocketAddr, io::Result<TlsStream<TcpStream>>);

/// A TCP listener whose connections come out TLS-established and, where the configuration
/// asks for client certificates, verified. Serve tonic with
/// `Server::builder().serve_with_incoming(service, listener.into_stream())`: tonic then
/// exposes the peer's certificates through `Request::peer_certs()`.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    pending: JoinSet<Handshake>,
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("local_addr", &self.tcp.local_addr().ok())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl TlsListener {
    /// Wraps a bound listener.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> Self {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            pending: JoinSet::new(),
        }
    }

    /// Changes the handshake timeout.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The next connection whose handshake succeeded. Cancel-safe. Failed handshakes (wrong
    /// CA, expired certificate, plain TCP, timeouts) are logged at debug level and skipped;
    /// accept errors are logged and retried, as hyper and axum do.
    pub async fn accept(&mut self) -> (TlsStream<TcpStream>, SocketAddr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => self.start_handshake(stream, peer),
                    Err(error) => accept_error(error).await,
                },
                Some(done) = self.pending.join_next(), if !self.pending.is_empty() => {
                    match done {
                        Ok((peer, Ok(stream))) => return (stream, peer),
                        Ok((peer, Err(error))) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                        }
                        Err(error) => tracing::warn!(%error, "TLS handshake task failed"),
                    }
                }
            }
        }
    }

    /// The accepted connections as a stream, for tonic's `serve_with_incoming`.
    pub fn into_stream(self) -> impl Stream<Item = io::Result<TlsStream<TcpStream>>> {
        futures::stream::unfold(self, |mut listener| async move {
            let (stream, _) = listener.accept().await;
            Some((Ok(stream), listener))
        })
    }

    fn start_handshake(&mut self, stream: TcpStream, peer: SocketAddr) {
        if self.pending.len() >= MAX_PENDING_HANDSHAKES {
            tracing::warn!(%peer, "too many TLS handshakes in flight; connection closed");
            return;
        }
        let acceptor = self.acceptor.clone();
        let timeout = self.handshake_timeout;
        self.pending.spawn(async move {
            let result = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(result) => result,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("handshake took longer than {timeout:?}"),
                )),
            };
            (peer, result)
        });
    }
}

async fn accept_error(error: io::Error) {
    // A connection reset before accept concerns that client only; anything else (EMFILE) is
    // the process's problem, and retrying at once would spin.
    let per_connection = matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    );
    if !per_connection {
        tracing::error!(%error, "accepting TCP connections failed; retrying in 1s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
