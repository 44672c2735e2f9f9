//! One framed connection to the broker over a tokio `UnixStream`.

use crate::deadline::Deadline;
use crate::{exchange, peer, Error};
use ::tokio::io::AsyncWriteExt;
use ::tokio::net::UnixStream;
use ::tokio::time::{sleep, timeout};
use futures_util::{SinkExt, StreamExt};
use oauth_broker_proto::{
    encode_frame, CodecError, FrameCodec, FrameError, Hello, Request, Response, Welcome,
};
use std::future::Future;
use std::io;
use std::path::Path;
use std::time::Duration;
use tokio_util::codec::Framed;

/// A connection that completed the handshake.
#[derive(Debug)]
pub(crate) struct Connection {
    framed: Framed<UnixStream, FrameCodec<Response, Request>>,
}

impl Connection {
    /// Connects and performs the handshake, all within `limit`.
    pub(crate) async fn open(
        path: &Path,
        client_name: &str,
        limit: Duration,
    ) -> Result<(Connection, Welcome), Error> {
        let deadline = Deadline::after(limit, "connect");
        let mut stream =
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
        let hello = encode_frame(&Hello::new(client_name))
            .map_err(|_| Error::protocol("client name too long for a frame"))?;
        within(&handshake, stream.write_all(&hello))
            .await?
            .map_err(|source| Error::Io { source })?;
        let mut conn = Connection {
            framed: Framed::new(stream, FrameCodec::new()),
        };
        let welcome = exchange::welcome(conn.recv(&handshake).await?)?;
        Ok((conn, welcome))
    }

    /// Writes one request.
    pub(crate) async fn send(
        &mut self,
        request: &Request,
        deadline: &Deadline,
    ) -> Result<(), Error> {
        within(deadline, self.framed.send(request.clone()))
            .await?
            .map_err(|e| match e {
                CodecError::Io(source) => Error::Io { source },
                CodecError::Frame(FrameError::TooLarge { len, max }) => Error::Config {
                    message: format!("request of {len} bytes exceeds the {max} byte frame limit"),
                },
                CodecError::Frame(FrameError::Malformed(_)) => {
                    Error::protocol("request could not be encoded")
                }
            })
    }

    /// Reads one response, waiting until `deadline` at most.
    pub(crate) async fn recv(&mut self, deadline: &Deadline) -> Result<Response, Error> {
        match within(deadline, self.framed.next()).await? {
            None => Err(Error::Io {
                source: io::ErrorKind::UnexpectedEof.into(),
            }),
            Some(Ok(Ok(response))) => Ok(response),
            Some(Ok(Err(_)) | Err(CodecError::Frame(FrameError::Malformed(_)))) => {
                Err(exchange::malformed())
            }
            Some(Err(CodecError::Frame(FrameError::TooLarge { len, .. }))) => {
                Err(exchange::too_large(len))
            }
            Some(Err(CodecError::Io(source))) => Err(Error::Io { source }),
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
