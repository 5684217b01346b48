//! An accepted connection as the servers see it: it holds its place in the listener's counts
//! until dropped, fails at once when its listener is cut (as if the process had died), and
//! fails when no byte has moved either way for the idle timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;

use super::admission::Permit;
use super::tally::{Event, Tally};

/// An admitted connection (the TCP stream under any TLS).
pub(crate) struct Connection<IO = TcpStream> {
    io: IO,
    permit: Permit,
    tally: Arc<Tally>,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    idle: Idle,
}

impl<IO> Connection<IO> {
    pub(crate) fn new(
        io: IO,
        permit: Permit,
        tally: Arc<Tally>,
        cut: CancellationToken,
        idle_timeout: Duration,
    ) -> Self {
        Connection {
            io,
            permit,
            tally,
            cut: Box::pin(cut.cancelled_owned()),
            idle: Idle::new(idle_timeout),
        }
    }

    fn is_cut(&mut self, cx: &mut Context<'_>) -> bool {
        self.cut.as_mut().poll(cx).is_ready()
    }

    /// What a read or write that is still pending should return instead: the idle timeout
    /// fired. Checked on every pending operation, since the server always has one outstanding
    /// (a read, or a write the peer does not take).
    fn pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.idle.expired {
            return Poll::Ready(idle_error(self.idle.timeout));
        }
        if self.idle.poll_expired(cx) {
            self.idle.expired = true;
            self.tally.record(Event::Idle, self.permit.peer(), None);
            return Poll::Ready(idle_error(self.idle.timeout));
        }
        Poll::Pending
    }

    /// A write's outcome: bytes written keep the connection from going idle; a pending write
    /// answers to the idle timeout.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.idle.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.pending(cx).map(Err),
        }
    }
}

/// When bytes last moved, and a timer for when that makes the connection idle.
struct Idle {
    timeout: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
    expired: bool,
}

impl Idle {
    fn new(timeout: Duration) -> Self {
        let last = Instant::now();
        Idle {
            timeout,
            last,
            timer: Box::pin(tokio::time::sleep_until(last + timeout)),
            expired: false,
        }
    }

    fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Whether `timeout` has passed since bytes last moved; if not, the task is woken when it
    /// would have. The timer is moved only here, not on every byte.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = self.last + self.timeout;
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }
}

fn severed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "hub node stopped")
}

fn idle_error(timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no bytes either way for {timeout:?}"),
    )
}

impl<IO: Connected> Connected for Connection<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Connection<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_cut(cx) {
            return Poll::Ready(Err(severed()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.idle.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.pending(cx).map(Err),
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Connection<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_cut(cx) {
            return Poll::Ready(Err(severed()));
        }
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.is_cut(cx) {
            return Poll::Ready(Err(severed()));
        }
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_cut(cx) {
            return Poll::Ready(Err(severed()));
        }
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.pending(cx).map(Err),
            done => done,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
