//! Every channel and server of a node's gRPC and HTTP traffic is built here, so transport
//! security has one place: mutual TLS between hub nodes, TLS on the API listener (client
//! certificates optional: agents present one, operators a bearer token) and on the HTTP
//! listener, all with certificates from the group's CA — or plain HTTP/2 under `--insecure`.
//! Every listener accepts through [`super::listener`]: connection limits and timeouts.
//!
//! Served connections are *severable*: when the node stops, every connection it accepted fails
//! at once, as it would if the process had died, instead of waiting for long-lived peer streams
//! to end on their own (tonic's graceful shutdown would wait forever for them).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flotilla_pki::{
    ClientAuth, GroupCa, NodeCredentials, PeerCertificate, PeerIdentity, RotatingIdentity,
    peer_certificate, rotating_client_config, rotating_server_config,
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use super::listener::{Event, Handshake, Listener, ListenerLimits, Plain, Protocol, Tls};
use super::routes::GrpcRoutes;

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

/// A gRPC server builder with a listener's HTTP/2 limits: streams per connection, and pings
/// that find dead clients (which also keep live ones from being closed as idle).
fn server(limits: &ListenerLimits) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(limits.keepalive_interval)
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
}

/// Serves the gRPC services of `routes` on `listener`, with the HTTP/2 limits of `limits`,
/// until `stop` is cancelled; then every accepted connection is cut and the listener closed.
/// With `tls`, connections are TLS (client certificates as the configuration asks) and
/// services see the client's certificate (`Request::peer_certs`). `name` labels the listener's
/// log lines.
pub async fn serve(
    name: &'static str,
    routes: GrpcRoutes,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    limits: ListenerLimits,
    stop: CancellationToken,
) {
    let cut = stop.clone();
    let server = server(&limits);
    let result = match tls {
        None => {
            let incoming = Listener::new(name, listener, Plain, limits, cut).into_stream();
            server
                .serve_with_incoming_shutdown(routes, incoming, stop.cancelled_owned())
                .await
        }
        Some(config) => {
            let incoming = Listener::new(name, listener, Tls::new(config), limits, cut);
            server
                .serve_with_incoming_shutdown(
                    routes,
                    incoming.into_stream(),
                    stop.cancelled_owned(),
                )
                .await
        }
    };
    if let Err(e) = result {
        tracing::warn!(listener = name, error = %e, "hub server stopped with an error");
    }
}

/// How long HTTP requests in flight when the node stops may take to finish before their
/// connections are cut.
const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serves an HTTP service (the embedder's routes, with its own answer to a request that
/// outlived `limits.request_timeout`) on the HTTP listener until `stop` is cancelled: HTTPS
/// (HTTP/1.1 or HTTP/2 as the client chose by ALPN, no client certificates) with `tls`, plain
/// HTTP without. Requests in flight at the stop get 2 s to finish.
pub async fn serve_http<S, B>(
    service: S,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    limits: ListenerLimits,
    stop: CancellationToken,
) where
    S: HttpService<B>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<tower::BoxError>,
{
    let cut = CancellationToken::new();
    match tls {
        None => {
            let listener = Listener::new("http", listener, Plain, limits, cut.clone());
            serve_http_on(listener, service, &limits, &stop).await;
        }
        Some(config) => {
            let listener = Listener::new("http", listener, Tls::new(config), limits, cut.clone());
            serve_http_on(listener, service, &limits, &stop).await;
        }
    }
    cut.cancel();
}

/// What [`serve_http`] serves: a cloneable tower service of HTTP requests.
pub trait HttpService<B>:
    tower::Service<
        http::Request<hyper::body::Incoming>,
        Response = http::Response<B>,
        Error: Into<tower::BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> HttpService<B> for S where
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error: Into<tower::BoxError>,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The HTTP listener's accept loop: each connection served by hyper with the listener's limits.
async fn serve_http_on<H, S, B>(
    mut listener: Listener<H>,
    service: S,
    limits: &ListenerLimits,
    stop: &CancellationToken,
) where
    H: Handshake,
    H::Io: AsyncRead + AsyncWrite + Unpin,
    S: HttpService<B>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<tower::BoxError>,
{
    // hyper enforces the header read timeout and pings only with a timer.
    let mut detect = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    detect
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    detect
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout);
    let http1 = detect.clone().http1_only();
    let http2 = detect.clone().http2_only();
    let graceful = GracefulShutdown::new();
    let tally = listener.tally();
    loop {
        let (io, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let protocol = H::protocol(&io);
        let builder = match protocol {
            Protocol::Detect => &detect,
            Protocol::Http1 => &http1,
            Protocol::Http2 => &http2,
        };
        let service = TowerToHyperService::new(service.clone());
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let tally = tally.clone();
        tokio::spawn(async move {
            let Err(error) = connection.await else {
                return;
            };
            let timed_out = error
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout);
            if timed_out && protocol != Protocol::Http2 {
                tally.record(Event::HeaderTimeout, peer, None);
            } else {
                tracing::debug!(%peer, %error, "HTTP connection ended with an error");
            }
        });
    }
    // Closes the listening socket (and logs what it counted) before waiting.
    drop(listener);
    if tokio::time::timeout(HTTP_SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("HTTP requests still in flight at the stop are cut");
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

/// The address a bound listener actually got (port 0 resolved).
pub fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
    listener.local_addr()
}
