//! How the hub's three listeners (peer, API, HTTP) accept connections, so that no client — slow,
//! silent or hostile — can take more than its share of the process:
//!
//! 1. **Admission at TCP accept.** A connection counts against its listener's limit and its
//!    peer's (an IP address; an IPv6 peer's /64) from accept until it closes, TLS handshake
//!    included. One over either limit is closed at once, before any TLS work.
//! 2. **Handshake** within `handshake_timeout`, concurrently: a client that connects and says
//!    nothing delays no one.
//! 3. **Idle**: a connection that moves no byte either way for `idle_timeout` is closed. The
//!    gRPC listeners ping (HTTP/2) after `keepalive_interval` without a frame from the client
//!    and drop one that leaves a ping unanswered for `keepalive_timeout`, so a live client —
//!    an agent's quiet stream, a CLI's idle channel — is never idle; what the idle timeout
//!    catches there is a connection that never starts HTTP/2 or stalls mid-frame. The HTTP
//!    listener does not ping: an idle browser or scraper connection is closed.
//! 4. **HTTP requests** (the HTTP listener): HTTP/1 headers within `header_read_timeout` —
//!    hyper's timer also runs while a keep-alive connection waits for its next request, so it
//!    bounds that wait too — and the whole request, a body trickled byte by byte included,
//!    answered within `request_timeout` (a 408 otherwise). gRPC is HTTP/2 only, and its
//!    streams live as long as their agents.
//! 5. **Streams**: at most `max_concurrent_streams` requests at once on one HTTP/2 connection.
//! 6. Refusals, failed handshakes and timeouts are logged once per 10 s with a count per peer
//!    (`listener/tally.rs`), never a line each.
//!
//! Servers are built on top in `transport/net.rs`: tonic (`serve`) and axum through hyper-util
//! (`serve_http`).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

mod admission;
mod connection;
mod tally;

#[cfg(test)]
mod tests;

pub(crate) use connection::Connection;
pub(crate) use tally::{Event, Tally};

use admission::{Admission, Refusal};

/// The connection limits and timeouts of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections open at once, TLS handshakes included; more are closed at accept.
    pub max_connections: usize,
    /// Connections open at once from one peer address (an IPv6 peer's /64).
    pub max_connections_per_peer: usize,
    /// Longest a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// Longest wait for an HTTP/1 request's headers, the wait for a keep-alive connection's
    /// next request included (HTTP listener only: gRPC is HTTP/2).
    pub header_read_timeout: Duration,
    /// Longest an HTTP request, its body included, may take to be answered (HTTP listener
    /// only: gRPC streams live as long as their agents).
    pub request_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// Requests open at once on one HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// The server pings (HTTP/2) a client it has heard nothing from for this long; `None`:
    /// no pings.
    pub keepalive_interval: Option<Duration>,
    /// A ping left unanswered this long drops the connection.
    pub keepalive_timeout: Duration,
}

/// A TLS handshake takes a round trip or two; ten seconds allow for a slow link and a busy
/// hub, and bound what a client that never finishes costs.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pings every 5 s and drops a connection whose ping goes unanswered for 5 s: agents and
/// peers learn of a dead hub, and the hub of a dead agent, within seconds.
const GRPC_KEEPALIVE: Duration = Duration::from_secs(5);

impl ListenerLimits {
    /// The API listener (agents' `Sync` streams, the CLI's `Admin` calls): agents of
    /// thousands of clusters may reach it from one NAT address, so a peer may hold a quarter
    /// of the listener. Every agent holds one connection for as long as it runs.
    pub const fn api() -> Self {
        ListenerLimits {
            max_connections: 16_384,
            max_connections_per_peer: 4_096,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_concurrent_streams: 256,
            keepalive_interval: Some(GRPC_KEEPALIVE),
            keepalive_timeout: GRPC_KEEPALIVE,
        }
    }

    /// The HTTP listener (webhooks, dashboard, metrics): few clients, short requests. Behind a
    /// proxy or ingress every request comes from the proxy's addresses: raise the per-peer
    /// limit there.
    pub const fn http() -> Self {
        ListenerLimits {
            max_connections: 1_024,
            max_connections_per_peer: 64,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_concurrent_streams: 64,
            keepalive_interval: None,
            keepalive_timeout: Duration::from_secs(20),
        }
    }

    /// The peer listener (raft traffic between hub nodes, operators' `flotilla-hub` commands):
    /// a handful of nodes, each holding one connection to every other; many proposals may be
    /// forwarded to the leader at once over one.
    pub const fn peer() -> Self {
        ListenerLimits {
            max_connections: 512,
            max_connections_per_peer: 64,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_concurrent_streams: 1_024,
            keepalive_interval: Some(GRPC_KEEPALIVE),
            keepalive_timeout: GRPC_KEEPALIVE,
        }
    }

    /// Why these limits cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("maxConnections", self.max_connections == 0),
            ("maxConnectionsPerPeer", self.max_connections_per_peer == 0),
            ("maxConcurrentStreams", self.max_concurrent_streams == 0),
            ("handshakeTimeout", self.handshake_timeout.is_zero()),
            ("headerReadTimeout", self.header_read_timeout.is_zero()),
            ("requestTimeout", self.request_timeout.is_zero()),
            ("idleTimeout", self.idle_timeout.is_zero()),
            ("keepaliveTimeout", self.keepalive_timeout.is_zero()),
            (
                "keepaliveInterval",
                self.keepalive_interval.is_some_and(|i| i.is_zero()),
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, zero)| *zero) {
            return Err(format!("{key} must be positive"));
        }
        if let Some(interval) = self.keepalive_interval
            && self.idle_timeout <= interval
        {
            return Err(format!(
                "idleTimeout ({:?}) must be longer than keepaliveInterval ({interval:?}), or a \
                 live client waiting for the next ping is closed as idle",
                self.idle_timeout
            ));
        }
        Ok(())
    }
}

/// What turns an admitted TCP connection into the one a server is given.
pub(crate) trait Handshake: Clone + Send + Sync + 'static {
    /// The established connection.
    type Io: Send + 'static;

    /// Establishes `tcp`.
    fn handshake(
        &self,
        tcp: Connection<TcpStream>,
    ) -> impl Future<Output = io::Result<Self::Io>> + Send;

    /// Which HTTP the connection speaks.
    fn protocol(io: &Self::Io) -> Protocol;
}

/// Which HTTP a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Whatever its first bytes say (plain connections: HTTP/1.1, or HTTP/2 with prior
    /// knowledge).
    Detect,
    /// HTTP/1.1: a TLS client that did not choose `h2` by ALPN.
    Http1,
    /// HTTP/2, chosen by ALPN.
    Http2,
}

/// No handshake: plain HTTP/2 or HTTP (`--insecure`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plain;

impl Handshake for Plain {
    type Io = Connection<TcpStream>;

    fn handshake(
        &self,
        tcp: Connection<TcpStream>,
    ) -> impl Future<Output = io::Result<Self::Io>> + Send {
        std::future::ready(Ok(tcp))
    }

    fn protocol(_: &Self::Io) -> Protocol {
        Protocol::Detect
    }
}

/// A TLS handshake with the listener's configuration.
#[derive(Clone)]
pub(crate) struct Tls(TlsAcceptor);

impl Tls {
    /// TLS as `config` says (certificate, client certificates, ALPN).
    pub(crate) fn new(config: Arc<ServerConfig>) -> Self {
        Tls(TlsAcceptor::from(config))
    }
}

impl Handshake for Tls {
    type Io = TlsStream<Connection<TcpStream>>;

    fn handshake(
        &self,
        tcp: Connection<TcpStream>,
    ) -> impl Future<Output = io::Result<Self::Io>> + Send {
        self.0.accept(tcp)
    }

    fn protocol(io: &Self::Io) -> Protocol {
        match io.get_ref().1.alpn_protocol() {
            Some(b"h2") => Protocol::Http2,
            _ => Protocol::Http1,
        }
    }
}

/// A bound listener that hands out admitted, established connections.
pub(crate) struct Listener<H: Handshake> {
    tcp: TcpListener,
    handshake: H,
    limits: ListenerLimits,
    admission: Arc<Admission>,
    tally: Arc<Tally>,
    cut: CancellationToken,
    pending: JoinSet<Option<(H::Io, IpAddr)>>,
    log: tokio::time::Interval,
}

impl<H: Handshake> Listener<H> {
    /// Accepts on `tcp` as `limits` say; `name` labels its log lines. Cancelling `cut` fails
    /// every connection it handed out at once.
    pub(crate) fn new(
        name: &'static str,
        tcp: TcpListener,
        handshake: H,
        limits: ListenerLimits,
        cut: CancellationToken,
    ) -> Self {
        let interval = tally::LOG_INTERVAL;
        let mut log = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        log.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Listener {
            tcp,
            handshake,
            limits,
            admission: Admission::new(limits.max_connections, limits.max_connections_per_peer),
            tally: Arc::new(Tally::new(name, limits, interval)),
            cut,
            pending: JoinSet::new(),
            log,
        }
    }

    /// What this listener counts, for its servers to add to.
    pub(crate) fn tally(&self) -> Arc<Tally> {
        self.tally.clone()
    }

    /// The next admitted connection whose handshake succeeded, with its peer. Cancel-safe.
    pub(crate) async fn accept(&mut self) -> (H::Io, IpAddr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => self.admit(stream, peer),
                    Err(error) => accept_error(error).await,
                },
                Some(done) = self.pending.join_next(), if !self.pending.is_empty() => {
                    match done {
                        Ok(Some(established)) => return established,
                        Ok(None) => {}
                        Err(error) => tracing::warn!(%error, "connection handshake task failed"),
                    }
                }
                _ = self.log.tick() => self.tally.flush(),
            }
        }
    }

    /// The accepted connections as a stream, for tonic's `serve_with_incoming`.
    pub(crate) fn into_stream(self) -> impl Stream<Item = io::Result<H::Io>> {
        futures::stream::unfold(self, |mut listener| async move {
            let (io, _) = listener.accept().await;
            Some((Ok(io), listener))
        })
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let permit = match self.admission.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                // Dropping the stream closes it: the client learns at once, and the listen
                // queue keeps draining.
                let event = match refusal {
                    Refusal::PeerLimit => Event::PeerLimit,
                    Refusal::ListenerLimit => Event::ListenerLimit,
                };
                self.tally
                    .record(event, admission::peer_key(peer.ip()), None);
                return;
            }
        };
        let ip = permit.peer();
        let _ = stream.set_nodelay(true);
        let connection = Connection::new(
            stream,
            permit,
            self.tally.clone(),
            self.cut.clone(),
            self.limits.idle_timeout,
        );
        let handshake = self.handshake.clone();
        let timeout = self.limits.handshake_timeout;
        let tally = self.tally.clone();
        self.pending.spawn(async move {
            let error = match tokio::time::timeout(timeout, handshake.handshake(connection)).await {
                Ok(Ok(io)) => return Some((io, ip)),
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("took longer than {timeout:?}"),
            };
            tally.record(Event::HandshakeFailed, ip, Some(error));
            None
        });
    }
}

impl<H: Handshake> Drop for Listener<H> {
    fn drop(&mut self) {
        self.tally.flush();
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
