//! Closing a TCP connection from inside a request handler.
//!
//! Why: the most dangerous failure for a broker is "the request reached the
//! server, but no answer came back" — a reset or EOF instead of an HTTP
//! response. axum handlers cannot express that: they always produce a
//! response. So every accepted socket is wrapped in a [`DroppableStream`]
//! whose [`ConnectionControl`] reaches the handler as
//! `ConnectInfo<ConnectionControl>`. A handler that calls
//! [`ConnectionControl::drop_connection`] makes every later read, write and
//! flush on that socket fail; hyper then abandons the connection before a
//! single byte of the response is written, and the socket is closed. The
//! client sees EOF / reset on a request it fully sent — also on a keep-alive
//! connection, since the whole connection dies, not just one exchange.
//!
//! The listener also counts connections: accepted, and finished (the stream
//! dropped because hyper is done with it — every byte the peer sent was read
//! and handled, or the connection failed). A test that killed a client can
//! so wait until the server has processed everything the dead process sent
//! ([`FakeAuthServer::wait_until_settled`](super::FakeAuthServer::wait_until_settled)).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::state::Shared;

/// The handle a handler uses to kill its own connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionControl {
    dropped: Arc<AtomicBool>,
}

impl ConnectionControl {
    /// From now on the connection fails every I/O; no response is sent.
    pub(crate) fn drop_connection(&self) {
        self.dropped.store(true, Ordering::SeqCst);
    }

    fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
    }
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection dropped by fault injection",
    )
}

/// A TCP stream that fails all I/O once its [`ConnectionControl`] says so.
#[derive(Debug)]
pub(crate) struct DroppableStream {
    inner: TcpStream,
    control: ConnectionControl,
    /// Declared after `inner`: the socket is closed before it is counted.
    _finished: FinishedOnDrop,
}

/// Counts the connection as finished when hyper drops its stream.
#[derive(Debug)]
struct FinishedOnDrop(Arc<Shared>);

impl Drop for FinishedOnDrop {
    fn drop(&mut self) {
        self.0.update(|i| i.stats.connections_finished += 1);
    }
}

impl AsyncRead for DroppableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.control.is_dropped() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for DroppableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.control.is_dropped() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.control.is_dropped() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.control.is_dropped() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.control.is_dropped() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A TCP listener whose connections are [`DroppableStream`]s.
#[derive(Debug)]
pub(crate) struct DroppableListener {
    inner: TcpListener,
    shared: Arc<Shared>,
}

impl DroppableListener {
    pub(crate) fn new(inner: TcpListener, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
}

impl Listener for DroppableListener {
    type Io = DroppableStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((inner, addr)) => {
                    let _ = inner.set_nodelay(true);
                    self.shared.update(|i| i.stats.connections_accepted += 1);
                    let io = DroppableStream {
                        inner,
                        control: ConnectionControl::default(),
                        _finished: FinishedOnDrop(self.shared.clone()),
                    };
                    return (io, addr);
                }
                // Like axum's own listener: transient accept errors (e.g.
                // EMFILE) must not stop the server.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl Connected<IncomingStream<'_, DroppableListener>> for ConnectionControl {
    fn connect_info(stream: IncomingStream<'_, DroppableListener>) -> Self {
        stream.io().control.clone()
    }
}
