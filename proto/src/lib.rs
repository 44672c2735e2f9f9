//! Wire protocol of oauth-broker.
//!
//! Every message travels in a frame: a `u32` big-endian payload length followed by
//! that many bytes of JSON. Frames are capped at [`MAX_FRAME_LEN`]; a peer that
//! announces more is answered with an error frame and disconnected.
//!
//! The conversation on a connection is:
//!
//! 1. the client sends [`Hello`], the broker answers [`Response::Welcome`] (or an
//!    [`ErrorCode::UnsupportedProtocol`] error frame, then closes);
//! 2. the client sends any number of [`Request`]s; each gets exactly one
//!    [`Response`], in order — except [`Request::Relogin`], which streams
//!    [`Response::Login`] events until a final `logged_in` or `error` event.
//!
//! JSON rather than a binary encoding keeps the protocol evolvable (unknown fields
//! are ignored, additions carry `#[serde(default)]`) and lets agents written in any
//! language speak it in a few lines. This crate does no I/O: framing is
//! [`encode_frame`] (or [`encode_frame_into`]) for sending and a [`FrameBuffer`]
//! that cuts received bytes into frames — the one implementation the broker and
//! both clients use, whatever their I/O (std or tokio).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod frame;
mod frame_buffer;
mod import;
mod login;
mod message;
mod proxy;
mod secret_serde;
mod status;
mod token;

pub use error::{ErrorCode, ErrorFrame};
pub use frame::{
    decode_frame, decode_payload, encode_frame, encode_frame_into, frame_len, FrameError,
    FRAME_HEADER_LEN, MAX_FRAME_LEN,
};
pub use frame_buffer::FrameBuffer;
pub use import::ImportTokens;
pub use login::{LoginEvent, LoginMethod};
pub use message::{Hello, Request, Response, Welcome};
pub use proxy::{ProxyKeyIssued, ProxyKeyStatus, ProxyStatus};
pub use status::{
    EndpointInfo, ForcedRefreshStatus, LastError, ProjectionRestored, ProjectionStatus,
    RestoreOutcome, StatusReport, TokenState, ToolWrote,
};
pub use token::{token_fingerprint, TokenGrant};

/// The protocol version this crate speaks. A broker answers a `Hello` with a
/// different version with [`ErrorCode::UnsupportedProtocol`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Re-exported so that users of the protocol types need not depend on `secrecy`.
pub use secrecy::{ExposeSecret, SecretString};
