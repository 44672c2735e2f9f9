//! Length-prefixed JSON frames as pure functions.

use serde::{de::DeserializeOwned, Serialize};

/// Bytes of the length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// Largest payload accepted or produced (64 KiB). A token response is a few KiB at
/// most; anything larger is a bug or an attack.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced (or produced) payload is larger than [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the {max} byte limit")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not valid JSON for the expected message. The connection can
    /// continue: the frame boundary is known.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Serializes `message` into a complete frame (header + JSON payload).
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_frame_into(&mut out, message)?;
    Ok(out)
}

/// Appends the frame of `message` to `out`, so that several frames can go out
/// in one write (a client's hello and its first request). On error `out` is
/// left as it was.
pub fn encode_frame_into<T: Serialize>(out: &mut Vec<u8>, message: &T) -> Result<(), FrameError> {
    let at = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    let written = serde_json::to_writer(&mut *out, message)
        .map_err(|e| FrameError::Malformed(e.to_string()))
        .and_then(|()| {
            let len = out.len() - at - FRAME_HEADER_LEN;
            if len > MAX_FRAME_LEN {
                return Err(FrameError::TooLarge {
                    len,
                    max: MAX_FRAME_LEN,
                });
            }
            Ok(len)
        });
    match written {
        Ok(len) => {
            out[at..at + FRAME_HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(at);
            Err(e)
        }
    }
}

/// Reads the payload length from a frame header, rejecting oversized frames
/// before a single payload byte is buffered.
pub fn frame_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// Tries to decode one frame from the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some((result, consumed)))`
/// when a whole frame is present — where `result` is the parsed message or a
/// [`FrameError::Malformed`] for a payload that is not a valid message (the caller
/// may answer with an error and keep the connection, since `consumed` bytes can be
/// skipped) — and `Err` for an oversized length, after which the stream cannot be
/// resynchronised.
#[allow(clippy::type_complexity)]
pub fn decode_frame<T: DeserializeOwned>(
    buf: &[u8],
) -> Result<Option<(Result<T, FrameError>, usize)>, FrameError> {
    let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
        return Ok(None);
    };
    let len = frame_len(header.try_into().expect("header slice has 4 bytes"))?;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
        return Ok(None);
    };
    let parsed = decode_payload(payload);
    Ok(Some((parsed, FRAME_HEADER_LEN + len)))
}

/// Parses a payload (without its header) as a message.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(payload).map_err(|e| FrameError::Malformed(e.to_string()))
}
