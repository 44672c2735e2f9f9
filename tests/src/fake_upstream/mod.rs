//! A fake API upstream on a plain-HTTP loopback port, for the broker's
//! header-injecting proxy: it records which bearer token every request
//! carried (and whether any proxy key reached it), and answers with what the
//! proxy must pass through unchanged:
//!
//! * `/sse` — a `text/event-stream` whose first event is sent at once and
//!   whose last waits until the test calls [`FakeUpstream::release_streams`]
//!   (so a client that sees the first event before the release proves the
//!   proxy does not buffer);
//! * WebSocket upgrades — on a `…/responses` path `426` (Codex then falls back
//!   to SSE, as with ChatGPT's backend in the Codex tests), or, when started
//!   with [`UpstreamOptions::responses_websocket`], `101` and Codex's
//!   Responses-over-WebSocket protocol (`responses_ws`), every message
//!   recorded ([`FakeUpstream::websocket_messages`]); elsewhere `101`, then
//!   every byte received is echoed back on the upgraded connection;
//! * `POST …/responses` from Codex CLI — a Responses-API turn answering
//!   "pong" (the fake ChatGPT backend's); `GET …/models` — an empty list;
//! * `/v1/chat/completions` — an OpenAI-style chat completion (openai-python);
//! * anything else — `200` with a JSON summary (method, path, body length).
//!
//! A request whose token the test marked as refused, or that the token check
//! (the fake authorization server's) rejects, gets `401`.

mod responses_ws;
pub use responses_ws::TOOL_TURN;
mod routes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// What one request looked like on arrival.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The bearer token of `Authorization`, if any.
    pub bearer: Option<String>,
    /// Every header value (lowercase names), for "nothing else changed" and
    /// "no key reached the upstream" checks.
    pub headers: Vec<(String, String)>,
    /// Body bytes received (counted as they streamed).
    pub body_len: u64,
    /// The status answered.
    pub status: u16,
}

/// One message a client sent on a Responses WebSocket.
#[derive(Debug, Clone)]
pub struct WsMessage {
    /// Which upgraded connection (0, 1, … in the order of the upgrades).
    pub connection: usize,
    /// The bearer token the connection's upgrade carried: a WebSocket
    /// presents its credential once, in the handshake.
    pub bearer: Option<String>,
    /// The message's `type` (`response.create`, …).
    pub kind: String,
    /// Its `generate` field (`Some(false)`: a warm-up that wants no output).
    pub generate: Option<bool>,
    /// Its `previous_response_id` (an incremental follow-up on the socket).
    pub previous_response_id: Option<String>,
    /// How many items its `input` holds (a resumed conversation sends its
    /// history).
    pub input_items: usize,
    /// The id of the response it was answered with, if it was answered.
    pub response_id: Option<String>,
}

/// How the fake upstream behaves where there is a choice.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpstreamOptions {
    /// Accept Codex's WebSocket upgrade on `…/responses` and speak the
    /// Responses API over it, instead of answering `426` (which makes Codex
    /// fall back to SSE).
    pub responses_websocket: bool,
}

/// Decides whether a bearer token is valid (the fake authorization server's
/// view).
pub type TokenCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

pub(crate) struct Shared {
    pub check: TokenCheck,
    pub refused: Mutex<Vec<String>>,
    pub log: Mutex<Vec<UpstreamRequest>>,
    pub release: Notify,
    pub released: AtomicBool,
    pub options: UpstreamOptions,
    pub ws_connections: AtomicUsize,
    pub ws_responses: AtomicUsize,
    pub hold_websocket_answers: AtomicBool,
    pub ws_log: Mutex<Vec<WsMessage>>,
    pub ws_seen: Condvar,
}

impl Shared {
    /// Returns once [`FakeUpstream::release_streams`] was called.
    pub(crate) async fn wait_for_release(&self) {
        let notified = self.release.notified();
        if !self.released.load(Ordering::SeqCst) {
            notified.await;
        }
    }
}

/// A running fake upstream; stops when dropped.
pub struct FakeUpstream {
    shared: Arc<Shared>,
    addr: SocketAddr,
    lifecycle: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl FakeUpstream {
    /// Binds `127.0.0.1:0` and serves on a thread of its own; `check` says
    /// which tokens are valid.
    pub fn start(check: TokenCheck) -> Self {
        Self::start_with(check, UpstreamOptions::default())
    }

    /// [`FakeUpstream::start`] with `options`.
    pub fn start_with(check: TokenCheck, options: UpstreamOptions) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("fake upstream: bind");
        listener
            .set_nonblocking(true)
            .expect("fake upstream: nonblocking");
        let addr = listener.local_addr().expect("fake upstream: local_addr");
        let shared = Arc::new(Shared {
            check,
            refused: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            release: Notify::new(),
            released: AtomicBool::new(false),
            options,
            ws_connections: AtomicUsize::new(0),
            ws_responses: AtomicUsize::new(0),
            hold_websocket_answers: AtomicBool::new(false),
            ws_log: Mutex::new(Vec::new()),
            ws_seen: Condvar::new(),
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fake-upstream-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fake upstream: tokio runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("fake upstream: register listener");
                    tokio::select! {
                        _ = routes::serve(listener, app) => {}
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("fake upstream: spawn thread");
        FakeUpstream {
            shared,
            addr,
            lifecycle: Some((stop_tx, thread)),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far (recorded when its answer started).
    pub fn requests(&self) -> Vec<UpstreamRequest> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Answers `401` to every later request carrying `token`.
    pub fn refuse_token(&self, token: &str) {
        self.shared
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(token.to_string());
    }

    /// Every message received on a Responses WebSocket so far, in order.
    pub fn websocket_messages(&self) -> Vec<WsMessage> {
        self.shared
            .ws_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits (up to `timeout`, woken by each recorded message) for the first
    /// WebSocket message that satisfies `pred`; `None` on timeout.
    pub fn wait_for_websocket_message(
        &self,
        timeout: Duration,
        pred: impl Fn(&WsMessage) -> bool,
    ) -> Option<WsMessage> {
        let log = self.shared.ws_log.lock().unwrap_or_else(|e| e.into_inner());
        let (log, _) = self
            .shared
            .ws_seen
            .wait_timeout_while(log, timeout, |log| !log.iter().any(&pred))
            .unwrap_or_else(|e| e.into_inner());
        log.iter().find(|m| pred(m)).cloned()
    }

    /// From now on each Responses WebSocket answer stops after its
    /// `response.created` until [`FakeUpstream::release_streams`]: a test can
    /// hold a request open on its socket while the token rotates.
    pub fn hold_websocket_answers(&self) {
        self.shared
            .hold_websocket_answers
            .store(true, Ordering::SeqCst);
    }

    /// Lets every held `/sse` stream and WebSocket answer (and later ones)
    /// send its last event.
    pub fn release_streams(&self) {
        self.shared.released.store(true, Ordering::SeqCst);
        self.shared.release.notify_waiters();
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.lifecycle.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}
