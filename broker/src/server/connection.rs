//! One client connection: owns the framing and every timeout.
//!
//! A frame that has started must arrive completely within the request timeout
//! (slow-loris clients are dropped); between requests a connection may idle for the
//! idle timeout; a write that the client does not read within the request timeout
//! drops the client. Framing itself is the protocol crate's [`FrameBuffer`], the
//! same the clients use: it never grows beyond one maximal frame, because
//! oversized lengths are refused from the header alone; it keeps a frame that
//! arrived with the previous one (a client may send its hello and first request
//! in one write); and it zeroes consumed bytes (an import carries a refresh
//! token).

use oauth_broker_proto::{decode_payload, encode_frame, FrameBuffer, FrameError, Response};
use serde::de::DeserializeOwned;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::{timeout_at, Instant};

/// What a read produced.
pub enum Incoming<T> {
    /// A well-formed message.
    Message(T),
    /// A complete frame whose payload is not a valid message; the connection can
    /// go on.
    Malformed(String),
    /// The client closed the connection (possibly mid-frame).
    Closed,
}

/// Why a connection must be dropped.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The announced frame length is over the cap.
    #[error("{0}")]
    TooLarge(FrameError),
    /// No complete frame in time.
    #[error("timed out waiting for the client")]
    Timeout,
    /// The socket failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

/// A framed connection.
pub struct Connection {
    stream: UnixStream,
    inbox: FrameBuffer,
    request_timeout: Duration,
}

impl Connection {
    /// Wraps an accepted stream.
    pub fn new(stream: UnixStream, request_timeout: Duration) -> Self {
        Connection {
            stream,
            // Small: a broker holds many idle connections, and requests are
            // tiny; the buffer grows for the rare large one (an import).
            inbox: FrameBuffer::new(1024),
            request_timeout,
        }
    }

    /// Reads the next message, waiting up to `wait_for_start` for it to begin.
    pub async fn read<T: DeserializeOwned>(
        &mut self,
        wait_for_start: Duration,
    ) -> Result<Incoming<T>, ConnectionError> {
        let mut deadline = Instant::now()
            + if self.inbox.is_empty() {
                wait_for_start
            } else {
                self.request_timeout
            };
        loop {
            match self.inbox.next_frame(decode_payload::<T>) {
                Ok(Some(Ok(message))) => return Ok(Incoming::Message(message)),
                Ok(Some(Err(e))) => return Ok(Incoming::Malformed(e.to_string())),
                Ok(None) => {}
                Err(e) => return Err(ConnectionError::TooLarge(e)),
            }
            let was_empty = self.inbox.is_empty();
            let n = timeout_at(deadline, self.stream.read(self.inbox.spare()))
                .await
                .map_err(|_| ConnectionError::Timeout)??;
            if n == 0 {
                return Ok(Incoming::Closed);
            }
            self.inbox.filled(n);
            if was_empty {
                // The frame has started: the rest must follow promptly.
                deadline = Instant::now() + self.request_timeout;
            }
        }
    }

    /// Writes one response, giving up if the client does not read it in time.
    pub async fn write(&mut self, response: &Response) -> Result<(), ConnectionError> {
        let bytes = encode_frame(response).map_err(ConnectionError::TooLarge)?;
        self.write_frame(&bytes).await
    }

    /// Writes one already encoded frame, with the same time limit.
    pub async fn write_frame(&mut self, frame: &[u8]) -> Result<(), ConnectionError> {
        let deadline = Instant::now() + self.request_timeout;
        timeout_at(deadline, self.stream.write_all(frame))
            .await
            .map_err(|_| ConnectionError::Timeout)??;
        Ok(())
    }
}
