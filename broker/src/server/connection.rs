//! One client connection: owns the framing and every timeout.
//!
//! A frame that has started must arrive completely within the request timeout
//! (slow-loris clients are dropped); between requests a connection may idle for the
//! idle timeout; a write that the client does not read within the request timeout
//! drops the client. The read buffer never grows beyond one maximal frame plus one
//! read, because oversized lengths are refused from the header alone.

use bytes::{Buf, BytesMut};
use oauth_broker_proto::{decode_frame, encode_frame, FrameError, Response};
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
    buf: BytesMut,
    request_timeout: Duration,
}

impl Connection {
    /// Wraps an accepted stream.
    pub fn new(stream: UnixStream, request_timeout: Duration) -> Self {
        Connection {
            stream,
            buf: BytesMut::with_capacity(1024),
            request_timeout,
        }
    }

    /// Reads the next message, waiting up to `wait_for_start` for it to begin.
    pub async fn read<T: DeserializeOwned>(
        &mut self,
        wait_for_start: Duration,
    ) -> Result<Incoming<T>, ConnectionError> {
        let mut deadline = Instant::now()
            + if self.buf.is_empty() {
                wait_for_start
            } else {
                self.request_timeout
            };
        loop {
            match decode_frame::<T>(&self.buf) {
                Ok(Some((parsed, consumed))) => {
                    self.buf.advance(consumed);
                    return Ok(match parsed {
                        Ok(message) => Incoming::Message(message),
                        Err(e) => Incoming::Malformed(e.to_string()),
                    });
                }
                Ok(None) => {}
                Err(e) => return Err(ConnectionError::TooLarge(e)),
            }
            let was_empty = self.buf.is_empty();
            let n = timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| ConnectionError::Timeout)??;
            if n == 0 {
                return Ok(Incoming::Closed);
            }
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
