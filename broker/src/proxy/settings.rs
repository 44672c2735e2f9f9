//! One `[[proxy]]` table of the config file: where the header-injecting proxy
//! listens, where it forwards, and its limits.
//!
//! Why the defaults: a request body is streamed, never held, up to
//! `max_body_bytes` (a runaway upload must not reach the provider on the
//! account's behalf without bound); only a body of at most
//! `replay_body_bytes` is buffered, because only such a request can be sent a
//! second time after an upstream 401.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Default cap on a request body (streamed): 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 << 20;
/// Default size up to which a body is buffered so that the request can be
/// retried once after an upstream 401: 4 MiB (a long chat request with its
/// whole history fits).
pub const DEFAULT_REPLAY_BODY_BYTES: u64 = 4 << 20;
/// Default cap on open connections per proxy: far more than a few tools
/// need, far fewer than the daemon's file descriptors (a local user holding
/// idle connections must not starve the broker's own socket).
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// One `[[proxy]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `127.0.0.1:PORT` (`[::1]:PORT`, `localhost:PORT`; loopback only) or
    /// an absolute Unix socket path.
    pub listen: String,
    /// Where requests go: the base URL the request path is appended to. The
    /// preset's API base when absent (required for `generic`).
    pub upstream: Option<String>,
    /// Extra headers set on every upstream request (beside the preset's).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Largest request body forwarded (streamed); larger ones get 413.
    pub max_body_bytes: Option<u64>,
    /// Bodies up to this size are buffered so that a request refused with 401
    /// can be retried once with a fresh token; larger ones are streamed and a
    /// 401 is passed through.
    pub replay_body_bytes: Option<u64>,
    /// Most connections open at once; one more is answered 503 and closed.
    pub max_connections: Option<usize>,
}

impl ProxyConfig {
    /// The body cap.
    pub fn max_body(&self) -> u64 {
        self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES)
    }

    /// The connection cap (at least 1).
    pub fn max_connections(&self) -> usize {
        self.max_connections
            .unwrap_or(DEFAULT_MAX_CONNECTIONS)
            .max(1)
    }

    /// The replay buffer cap (never above the body cap).
    pub fn replay_body(&self) -> u64 {
        self.replay_body_bytes
            .unwrap_or(DEFAULT_REPLAY_BODY_BYTES)
            .min(self.max_body())
    }
}
