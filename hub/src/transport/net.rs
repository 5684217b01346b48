//! Every channel and server of the hub's gRPC and HTTP traffic is built here, so transport
//! security has one place: mutual TLS between hub nodes, TLS on the API listener (client
//! certificates optional: agents present one, operators a bearer token) and on the HTTP
//! listener, all with certificates from the group's CA — or plain HTTP/2 under `--insecure`.
//!
//! Served connections are *severable*: when the node stops, every connection it accepted fails
//! at once, as it would if the process had died, instead of waiting for long-lived peer streams
//! to end on their own (tonic's graceful shutdown would wait forever for them).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use flotilla_pki::{
    ClientAuth, GroupCa, NodeCredentials, PeerCertificate, PeerIdentity, RotatingIdentity,
    TlsListener, peer_certificate, rotating_client_config, rotating_server_config,
};
use futures::{Stream, StreamExt};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::service::Interceptor;
use tonic::transport::server::{Connected, Router};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Largest gRPC message a hub node accepts or sends (snapshots are chunked below it).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Lifetime of an operator's certificate: one command, or one benchmark run.
const OPERATOR_CERT_LIFETIME: Duration = Duration::from_secs(3600);

/// Names every node certificate carries besides the configured hosts, so a client on the
/// node's own machine can always dial it by these.
pub const LOOPBACK_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// Failures building a channel or server.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The address does not form a valid URI.
    #[error("peer address `{address}` is not HOST:PORT: {detail}")]
    BadAddress {
        /// The address.
        address: String,
        /// Why.
        detail: String,
    },
    /// Binding the listen address failed.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The node certificate could not be issued or the TLS configuration built.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

/// How a node's connections are protected.
#[derive(Debug, Clone)]
pub enum Security {
    /// Plain HTTP/2 and HTTP, no authentication (`--insecure`: local experiments only).
    Plain,
    /// TLS 1.3 with the group CA's certificates.
    Tls(Arc<NodeTls>),
}

impl Security {
    /// An operator's access to a group's peer listeners: a short-lived certificate from the
    /// group's `ca` for node id 0, which is no node's, so the holder of the CA acts as a peer
    /// (`flotilla-hub status`, `member add`). `host` is the host the operator dials.
    pub fn operator(ca: GroupCa, host: &str) -> Result<Security, NetError> {
        let names = [host.to_owned()];
        let tls = NodeTls::issue(ca, 0, &names, OPERATOR_CERT_LIFETIME, SystemTime::now())?;
        Ok(Security::Tls(Arc::new(tls)))
    }

    /// The TLS material, unless plain.
    pub fn tls(&self) -> Option<&Arc<NodeTls>> {
        match self {
            Security::Plain => None,
            Security::Tls(tls) => Some(tls),
        }
    }
}

/// A node's TLS material: the group CA (which also signs agents' certificates), the node's own
/// certificate, and the server configuration of each listener.
pub struct NodeTls {
    ca: GroupCa,
    node: u64,
    names: Vec<String>,
    lifetime: Duration,
    credentials: parking_lot::RwLock<NodeCredentials>,
    identity: Arc<RotatingIdentity>,
    peer: Arc<ServerConfig>,
    api: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeTls")
            .field("ca", &self.ca)
            .field("credentials", &*self.credentials.read())
            .finish_non_exhaustive()
    }
}

impl NodeTls {
    /// Issues node `node` a certificate from `ca` for `names` (every host name or address
    /// peers, agents and operators dial) and builds its listeners' configurations: peers must
    /// present a certificate (mutual TLS), API clients may, HTTP clients do not. Listeners and
    /// peer channels present whichever certificate is current ([`NodeTls::renew`]).
    pub fn issue(
        ca: GroupCa,
        node: u64,
        names: &[String],
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<Self, NetError> {
        let tls = |e: &dyn fmt::Display| NetError::Tls(e.to_string());
        let credentials = ca
            .issue_node_certificate(node, names, lifetime, now)
            .map_err(|e| tls(&e))?;
        let identity = RotatingIdentity::new(&credentials.tls_identity().map_err(|e| tls(&e))?)
            .map_err(|e| tls(&e))?;
        let roots = ca.trust_root();
        let server = |auth, alpn: Option<Vec<Vec<u8>>>| {
            let mut config =
                rotating_server_config(identity.clone(), &roots, auth).map_err(|e| tls(&e))?;
            if let Some(alpn) = alpn {
                config.alpn_protocols = alpn;
            }
            Ok::<_, NetError>(Arc::new(config))
        };
        let mut client = rotating_client_config(&roots, identity.clone()).map_err(|e| tls(&e))?;
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(NodeTls {
            peer: server(ClientAuth::Required, Some(vec![b"h2".to_vec()]))?,
            api: server(ClientAuth::Optional, Some(vec![b"h2".to_vec()]))?,
            http: server(ClientAuth::Off, None)?,
            client: Arc::new(client),
            ca,
            node,
            names: names.to_vec(),
            lifetime,
            credentials: parking_lot::RwLock::new(credentials),
            identity,
        })
    }

    /// Issues this node a fresh certificate for the same names and lifetime and presents it
    /// from the next handshake on, in every listener and peer channel; connections already
    /// made keep theirs.
    pub fn renew(&self, now: SystemTime) -> Result<(), NetError> {
        let tls = |e: &dyn fmt::Display| NetError::Tls(e.to_string());
        let credentials = self
            .ca
            .issue_node_certificate(self.node, &self.names, self.lifetime, now)
            .map_err(|e| tls(&e))?;
        self.identity
            .replace(&credentials.tls_identity().map_err(|e| tls(&e))?)
            .map_err(|e| tls(&e))?;
        *self.credentials.write() = credentials;
        Ok(())
    }

    /// When to renew: with a third of the certificate's lifetime left.
    pub fn renew_at(&self) -> SystemTime {
        self.credentials.read().not_after - self.lifetime / 3
    }

    /// The group's CA, which signs agents' certificates.
    pub fn ca(&self) -> &GroupCa {
        &self.ca
    }

    /// The CA certificate, PEM: what clients trust.
    pub fn ca_pem(&self) -> &str {
        self.ca.certificate_pem()
    }

    /// This node's current certificate and key.
    pub fn credentials(&self) -> NodeCredentials {
        self.credentials.read().clone()
    }

    /// The server configuration of the peer listener (client certificates required).
    pub fn peer_server(&self) -> Arc<ServerConfig> {
        self.peer.clone()
    }

    /// The server configuration of the API listener (client certificates optional).
    pub fn api_server(&self) -> Arc<ServerConfig> {
        self.api.clone()
    }

    /// The server configuration of the HTTP listener (no client certificates).
    pub fn http_server(&self) -> Arc<ServerConfig> {
        self.http.clone()
    }
}

/// The host part of `HOST:PORT` (brackets of an IPv6 address removed): the name a client
/// checks the server's certificate against.
pub fn host_of(address: &str) -> &str {
    let host = match address.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => address,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A lazily connected channel to a hub node at `address` (HOST:PORT): mutual TLS with this
/// node's certificate, or plain HTTP/2.
pub fn channel(address: &str, security: &Security) -> Result<Channel, NetError> {
    let bad = |detail: String| NetError::BadAddress {
        address: address.to_owned(),
        detail,
    };
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    let Security::Tls(tls) = security else {
        return Ok(endpoint.connect_lazy());
    };
    // rustls directly rather than tonic's TLS: the client certificate is resolved at each
    // handshake, so a renewed one is offered on every reconnection.
    let name = ServerName::try_from(host_of(address).to_owned()).map_err(|e| bad(e.to_string()))?;
    let connector = TlsConnector::from(tls.client.clone());
    let target = address.to_owned();
    let connect = tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let (connector, name, target) = (connector.clone(), name.clone(), target.clone());
        async move {
            let tcp = TcpStream::connect(&target).await?;
            tcp.set_nodelay(true)?;
            let stream = connector.connect(name, tcp).await?;
            Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connect))
}

/// Binds the listen address.
pub async fn bind(address: &str) -> Result<TcpListener, NetError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| NetError::Bind {
            address: address.to_owned(),
            source,
        })
}

/// A server builder with the hub's limits.
pub fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
}

/// A server builder for the API listener (agents' streams and the operators' API), with the
/// same limits as the peer server. Agents' streams live long: keepalives find dead ones.
pub fn api_server() -> tonic::transport::Server {
    server()
}

/// Serves `router` on `listener` until `stop` is cancelled; then every accepted connection is
/// cut and the listener closed. With `tls`, connections are TLS (client certificates as the
/// configuration asks) and services see the client's certificate (`Request::peer_certs`).
pub async fn serve(
    router: Router,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    stop: CancellationToken,
) {
    let cut = stop.clone();
    let result = match tls {
        None => {
            let incoming = TcpListenerStream::new(listener)
                .map(move |conn| conn.map(|stream| Severable::new(stream, cut.clone())));
            router
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await
        }
        Some(config) => {
            let incoming = severable(TlsListener::new(listener, config).into_stream(), cut);
            router
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "hub server stopped with an error");
    }
}

fn severable<IO>(
    incoming: impl Stream<Item = io::Result<IO>>,
    cut: CancellationToken,
) -> impl Stream<Item = io::Result<Severable<IO>>> {
    incoming.map(move |conn| conn.map(|stream| Severable::new(stream, cut.clone())))
}

/// Serves an axum router on the HTTP listener until `stop` is cancelled: HTTPS (HTTP/1.1 or
/// HTTP/2, no client certificates) with `tls`, plain HTTP without.
pub async fn serve_http(
    router: axum::Router,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    stop: CancellationToken,
) -> io::Result<()> {
    match tls {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
        Some(config) => {
            axum::serve(HttpsListener(TlsListener::new(listener, config)), router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
    }
}

/// A TLS listener as axum accepts one.
struct HttpsListener(TlsListener);

impl axum::serve::Listener for HttpsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.0.accept().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The verified certificate a gRPC caller presented, if it presented one (always `None` on a
/// plain listener).
pub fn caller_certificate<T>(request: &Request<T>) -> Option<Result<PeerCertificate, Status>> {
    let certs = request.peer_certs()?;
    Some(
        peer_certificate(Some(certs.as_slice()))
            .map_err(|e| Status::unauthenticated(format!("client certificate: {e}"))),
    )
}

/// Lets only hub nodes (and operators holding the CA, who present a hub identity) call the peer
/// listener's services: mutual TLS proves the CA signed the caller's certificate, and this
/// refuses an agent's certificate, which the same CA signs. A plain listener lets everyone in.
#[derive(Debug, Clone, Copy)]
pub struct HubPeersOnly {
    tls: bool,
}

impl HubPeersOnly {
    /// The check for a node with this security.
    pub fn new(security: &Security) -> Self {
        HubPeersOnly {
            tls: security.tls().is_some(),
        }
    }
}

impl Interceptor for HubPeersOnly {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if !self.tls {
            return Ok(request);
        }
        match caller_certificate(&request) {
            Some(Ok(peer)) if matches!(peer.identity, PeerIdentity::HubNode(_)) => Ok(request),
            Some(Ok(peer)) => Err(Status::permission_denied(format!(
                "{} may not use the hub's peer listener",
                peer.identity
            ))),
            Some(Err(status)) => Err(status),
            None => Err(Status::unauthenticated(
                "the peer listener requires a hub node certificate",
            )),
        }
    }
}

/// A connection that fails every read and write once its token is cancelled.
pub struct Severable<IO = TcpStream> {
    io: IO,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<IO> Severable<IO> {
    fn new(io: IO, token: CancellationToken) -> Self {
        Severable {
            io,
            cut: Box::pin(token.cancelled_owned()),
        }
    }

    fn is_cut(&mut self, cx: &mut Context<'_>) -> bool {
        self.cut.as_mut().poll(cx).is_ready()
    }
}

fn severed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "hub node stopped")
}

impl<IO: Connected> Connected for Severable<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Severable<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_cut(cx) {
            return Poll::Ready(Err(severed()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Severable<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_cut(cx) {
            return Poll::Ready(Err(severed()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_cut(cx) {
            return Poll::Ready(Err(severed()));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The address a bound listener actually got (port 0 resolved).
pub fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
    listener.local_addr()
}
