//! A `tokio-util` codec over the pure frame functions, for async users.

use crate::frame::{self, FrameError, FRAME_HEADER_LEN};
use bytes::{Buf, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use std::marker::PhantomData;
use tokio_util::codec::{Decoder, Encoder};

/// Decodes frames into `In` and encodes `Out` into frames.
///
/// A payload that is not a valid `In` is yielded as `Err(FrameError::Malformed)`
/// inside `Ok(Some(..))`, so a server can answer `bad_request` and keep the
/// connection; an oversized length is a hard decoder error.
#[derive(Debug)]
pub struct FrameCodec<In, Out> {
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> FrameCodec<In, Out> {
    /// A new codec.
    pub fn new() -> Self {
        FrameCodec {
            _types: PhantomData,
        }
    }
}

impl<In, Out> Default for FrameCodec<In, Out> {
    fn default() -> Self {
        Self::new()
    }
}

/// Errors of the codec: I/O or an unrecoverable framing error.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The transport failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The peer broke framing (oversized length).
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl<In: DeserializeOwned, Out> Decoder for FrameCodec<In, Out> {
    type Item = Result<In, FrameError>;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        if src.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let header: [u8; FRAME_HEADER_LEN] = src[..FRAME_HEADER_LEN].try_into().expect("4 bytes");
        let len = frame::frame_len(header)?;
        if src.len() < FRAME_HEADER_LEN + len {
            src.reserve(FRAME_HEADER_LEN + len - src.len());
            return Ok(None);
        }
        src.advance(FRAME_HEADER_LEN);
        let payload = src.split_to(len);
        Ok(Some(frame::decode_payload(&payload)))
    }
}

impl<In, Out: Serialize> Encoder<Out> for FrameCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), Self::Error> {
        let bytes = frame::encode_frame(&item)?;
        dst.extend_from_slice(&bytes);
        Ok(())
    }
}
