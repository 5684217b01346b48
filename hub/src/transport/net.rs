//! Every channel and server of the hub's gRPC traffic is built here, so transport security has
//! one place to go: today plain HTTP/2 (h2c), mutual TLS between hub nodes later.
//!
//! Served connections are *severable*: when the node stops, every connection it accepted fails
//! at once, as it would if the process had died, instead of waiting for long-lived peer streams
//! to end on their own (tonic's graceful shutdown would wait forever for them).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::{Connected, Router, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint};

/// Largest gRPC message a hub node accepts or sends (snapshots are chunked below it).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

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
}

/// A lazily connected channel to a hub node at `address` (HOST:PORT).
pub fn channel(address: &str) -> Result<Channel, NetError> {
    let endpoint =
        Endpoint::from_shared(format!("http://{address}")).map_err(|e| NetError::BadAddress {
            address: address.to_owned(),
            detail: e.to_string(),
        })?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect_lazy())
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
/// cut and the listener closed.
pub async fn serve(router: Router, listener: TcpListener, stop: CancellationToken) {
    let cut = stop.clone();
    let incoming = TcpListenerStream::new(listener)
        .map(move |conn| conn.map(|stream| Severable::new(stream, cut.clone())));
    let result = router
        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "hub server stopped with an error");
    }
}

/// A connection that fails every read and write once its token is cancelled.
pub struct Severable {
    io: TcpStream,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Severable {
    fn new(io: TcpStream, token: CancellationToken) -> Self {
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

impl Connected for Severable {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for Severable {
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

impl AsyncWrite for Severable {
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
