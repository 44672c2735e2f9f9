//! One framed connection to the broker over a tokio `UnixStream`.
//!
//! Framing is the protocol crate's [`FrameBuffer`], as in the blocking client
//! and the broker; only the reads and writes are async here.

use crate::deadline::Deadline;
use crate::frames::{decode_response, push_frame, READ_CHUNK};
use crate::{exchange, peer, Error};
use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
use ::tokio::net::UnixStream;
use ::tokio::time::{sleep, timeout};
use oauth_broker_proto::{FrameBuffer, FrameError, Hello, Request, Response, Welcome};
use std::future::Future;
use std::io;
use std::path::Path;
use std::time::Duration;

/// A connection that completed the handshake. Its `Debug` shows how much is
/// buffered, never the bytes (they are tokens).
#[derive(Debug)]
pub(crate) struct Connection {
    stream: UnixStream,
    inbox: FrameBuffer,
}

impl Connection {
    /// Connects and performs the handshake, all within `limit`. With `first`,
    /// that request goes out in the same write as the hello (see the blocking
    /// client's `Connection::open`).
    pub(crate) async fn open(
        path: &Path,
        client_name: &str,
        limit: Duration,
        first: Option<&Request>,
    ) -> Result<(Connection, Welcome), Error> {
        if let Some(message) = crate::discovery::socket_path_too_long(path) {
            return Err(Error::Config { message });
        }
        let deadline = Deadline::after(limit, "connect");
        let stream =
            within(&deadline, connect(path))
                .await?
                .map_err(|source| Error::Unreachable {
                    path: path.to_path_buf(),
                    source,
                })?;
        // Before anything is sent: the socket might be an impostor's.
        let peer_uid = stream
            .peer_cred()
            .map_err(|source| Error::Io { source })?
            .uid();
        peer::check(path, peer_uid)?;
        let handshake = Deadline::after(deadline.remaining()?, "handshake");
        let mut frames = Vec::with_capacity(256);
        push_frame(&mut frames, &Hello::new(client_name))?;
        if let Some(request) = first {
            push_frame(&mut frames, request)?;
        }
        let mut conn = Connection {
            stream,
            inbox: FrameBuffer::new(READ_CHUNK),
        };
        conn.write(&frames, &handshake).await?;
        let welcome = exchange::welcome(conn.recv(&handshake).await?)?;
        Ok((conn, welcome))
    }

    /// Writes one request.
    pub(crate) async fn send(
        &mut self,
        request: &Request,
        deadline: &Deadline,
    ) -> Result<(), Error> {
        let mut frame = Vec::with_capacity(128);
        push_frame(&mut frame, request)?;
        self.write(&frame, deadline).await
    }

    async fn write(&mut self, bytes: &[u8], deadline: &Deadline) -> Result<(), Error> {
        within(deadline, self.stream.write_all(bytes))
            .await?
            .map_err(|source| Error::Io { source })
    }

    /// Reads one response, waiting until `deadline` at most.
    pub(crate) async fn recv(&mut self, deadline: &Deadline) -> Result<Response, Error> {
        loop {
            match self.inbox.next_frame(decode_response) {
                Ok(Some(parsed)) => return parsed.map_err(|_| exchange::malformed()),
                Ok(None) => {}
                Err(FrameError::TooLarge { len, .. }) => return Err(exchange::too_large(len)),
                Err(FrameError::Malformed(_)) => return Err(exchange::malformed()),
            }
            let n = within(deadline, self.stream.read(self.inbox.spare()))
                .await?
                .map_err(|source| Error::Io { source })?;
            if n == 0 {
                return Err(Error::Io {
                    source: io::ErrorKind::UnexpectedEof.into(),
                });
            }
            self.inbox.filled(n);
        }
    }
}

/// Runs `future` until `deadline`.
async fn within<F: Future>(deadline: &Deadline, future: F) -> Result<F::Output, Error> {
    timeout(deadline.remaining()?, future)
        .await
        .map_err(|_| deadline.expired())
}

/// Connects, waiting for room while the broker's listen backlog is full (a
/// non-blocking connect to a Unix socket reports that as `WouldBlock` instead of
/// waiting). The caller bounds the wait.
async fn connect(path: &Path) -> io::Result<UnixStream> {
    loop {
        match UnixStream::connect(path).await {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                sleep(Duration::from_millis(10)).await
            }
            other => return other,
        }
    }
}
