//! Single-caller latencies: a cached token over a persistent connection, over a
//! fresh connection each time, and from the client-side cache.

use std::path::Path;
use std::time::Duration;

use oauth_broker_client::proto::{encode_frame, Request, Response, TokenGrant};
use oauth_broker_client::{AccessToken, CachingClient, Client, ExposeSecret, SecretString};

use super::latency::{sample, samples, Latency};
use super::raw::PingPong;
use super::setup::connect;

/// What every benchmark client asks for (brokerctl's default).
pub const MIN_VALID: Duration = Duration::from_secs(60);

/// Bytes on the wire for one token request and its answer, frame headers
/// included: what the raw baseline sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSizes {
    pub request: usize,
    pub response: usize,
}

impl FrameSizes {
    /// The sizes of `Token { min_valid_secs }` and of the answer carrying `token`.
    pub fn of(token: &AccessToken) -> anyhow::Result<FrameSizes> {
        let request = encode_frame(&Request::Token {
            min_valid_secs: MIN_VALID.as_secs(),
            identity: false,
        })?;
        let grant = TokenGrant {
            access_token: SecretString::from(token.expose_secret().to_owned()),
            token_type: token.token_type().to_owned(),
            expires_at: token
                .expires_at()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs(),
            token_id: token.token_id().to_owned(),
            scopes: token.scopes().to_vec(),
            metadata: token.metadata().clone(),
            id_token: None,
            obtained_at: None,
            refresh_token_id: None,
        };
        let response = encode_frame(&Response::Token(grant))?;
        Ok(FrameSizes {
            request: request.len(),
            response: response.len(),
        })
    }
}

/// Interleaved blocks of measurement, so that both sides of a comparison see
/// the same machine: how fast a wake-up is depends a lot on whether the other
/// core is idle (on a VM a halted vCPU takes tens of microseconds to wake), and
/// that changes from one second to the next with whatever else runs.
const BLOCKS: usize = 20;

/// `token()` on one persistent connection through the real client — the path
/// every integration takes when the broker already holds a valid token — and
/// the raw ping-pong with the same frame sizes, measured in alternating
/// blocks. Returns (raw, cached).
pub fn cached_against_raw(
    socket: &Path,
    dir: &Path,
    frames: FrameSizes,
    warmup: usize,
    iterations: usize,
) -> anyhow::Result<(Latency, Latency)> {
    let mut raw = PingPong::start(dir, frames.request, frames.response)?;
    let mut client = connect(socket)?;
    let per_block = iterations.div_ceil(BLOCKS).max(1);
    let (mut raw_samples, mut cached_samples) = (Vec::new(), Vec::new());
    let mut left = iterations;
    let mut first = true;
    while left > 0 {
        let n = per_block.min(left);
        let warm = if first { warmup } else { 0 };
        first = false;
        raw_samples.extend(samples(warm, n, || raw.round_trip())?);
        cached_samples.extend(samples(warm, n, || client.token(MIN_VALID).map(drop))?);
        left -= n;
    }
    raw.finish()?;
    Ok((Latency::of(raw_samples), Latency::of(cached_samples)))
}

/// Connect, handshake and `token()` on a new connection each time: what a
/// short-lived program (or `brokerctl` minus its process start) pays.
pub fn fresh_connection(
    socket: &Path,
    warmup: usize,
    iterations: usize,
) -> anyhow::Result<Latency> {
    sample(warmup, iterations, || {
        connect(socket)?.token(MIN_VALID)?;
        Ok(())
    })
}

/// A fresh connection whose token request goes out in the hello's write
/// (`connect_and_token`, what `brokerctl token` does): one round trip
/// instead of two.
pub fn fresh_connection_pipelined(
    socket: &Path,
    warmup: usize,
    iterations: usize,
) -> anyhow::Result<Latency> {
    sample(warmup, iterations, || {
        Client::builder()
            .socket(socket)
            .client_name("bench")
            .connect_and_token(MIN_VALID)?;
        Ok(())
    })
}

/// `token()` of a [`CachingClient`] whose cached token is valid: no IPC.
pub fn client_cache(socket: &Path, warmup: usize, iterations: usize) -> anyhow::Result<Latency> {
    let mut client = CachingClient::new(connect(socket)?);
    Ok(sample(warmup, iterations, || {
        client.token(MIN_VALID).map(drop)
    })?)
}
