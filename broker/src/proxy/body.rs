//! Request and response bodies: streamed frame by frame (hyper's own
//! `Incoming`, never collected), except a small request body, which is kept so
//! that the request can be sent again after an upstream 401.
//!
//! Why `Limited`: the cap on a streamed body is enforced as it flows, so a
//! chunked upload without `Content-Length` cannot exceed it either (the
//! upstream request then fails instead of being completed, and the tool gets
//! the same 413 as for a declared length: see `cut_at_cap`).

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Empty, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};

/// Any error a body may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every request and response the proxy produces.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// An upstream response body, passed through as it arrives.
pub fn passthrough(body: Incoming) -> ProxyBody {
    body.map_err(BoxError::from).boxed()
}

/// Whether `error` (an upstream request's failure) comes from the body cap:
/// the `Limited` error is somewhere in its source chain.
pub fn cut_at_cap(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<LengthLimitError>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// A tool's request body, ready to be sent (once or, if kept, twice).
pub enum RequestBody {
    /// Small enough to keep: the request is replayable.
    Kept(Bytes),
    /// Streamed through; `None` once sent.
    Streamed(Option<ProxyBody>),
}

/// Why a request body is refused.
#[derive(Debug)]
pub enum BodyRefusal {
    /// `Content-Length` above the cap.
    TooLarge {
        /// The cap.
        cap: u64,
    },
    /// The body could not be read (client gone, bad framing).
    Unreadable,
}

impl RequestBody {
    /// Reads what must be read of `body` given its `Content-Length`.
    pub async fn prepare(
        body: Incoming,
        headers: &HeaderMap,
        max: u64,
        replay: u64,
    ) -> Result<RequestBody, BodyRefusal> {
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(BodyRefusal::TooLarge { cap: max });
        }
        if body.is_end_stream() {
            return Ok(RequestBody::Kept(Bytes::new()));
        }
        match declared {
            Some(n) if n <= replay => {
                let collected = Limited::new(body, n as usize)
                    .collect()
                    .await
                    .map_err(|_| BodyRefusal::Unreadable)?;
                Ok(RequestBody::Kept(collected.to_bytes()))
            }
            _ => Ok(RequestBody::Streamed(Some(
                Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX)).boxed(),
            ))),
        }
    }

    /// Whether the request can be sent again.
    pub fn replayable(&self) -> bool {
        matches!(self, RequestBody::Kept(_))
    }

    /// The body for the next attempt.
    pub fn for_attempt(&mut self) -> ProxyBody {
        match self {
            RequestBody::Kept(bytes) if bytes.is_empty() => empty(),
            RequestBody::Kept(bytes) => full(bytes.clone()),
            RequestBody::Streamed(body) => body.take().unwrap_or_else(empty),
        }
    }
}
