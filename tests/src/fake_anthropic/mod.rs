//! A fake Anthropic (Messages API and OAuth token endpoint) for running the
//! real Claude Code offline against tokens the broker hands out.
//!
//! Claude Code talks only to fixed host names (`api.anthropic.com`,
//! `platform.claude.com`), so the fake does not listen on a port of its own:
//! [`FakeAnthropic::command`] prepares a program to run in private
//! namespaces ([`namespace`]) where those names resolve to loopback and
//! `127.0.0.1:443` is served by this fake, over TLS with a throw-away CA
//! (`ca.pem`, trusted through `NODE_EXTRA_CA_CERTS`). Every program gets a
//! namespace of its own; the fake serves all of them.
//!
//! What it answers is what Claude Code 2.1.332 was observed to need:
//!
//! * `POST /v1/messages` — a one-message SSE stream ("pong") for a bearer
//!   token the fake authorization server considers valid (issued, not
//!   expired, not revoked), else `401 authentication_error`; or, when a test
//!   asked for it, held until the token is dead and then answered with a 401
//!   or with a call of a tool that does not exist (Claude Code answers that
//!   with an error result in a second request of the same session);
//! * `POST /v1/oauth/token` (Claude Code's own refresh) — recorded, and
//!   answered `400 invalid_grant`, what the real server says to a placeholder
//!   refresh token. A test that sees one has failed;
//! * everything else (`/api/oauth/profile`, `/api/claude_code/settings`, …):
//!   `404`, which Claude Code tolerates.
//!
//! For a tool pointed at the broker's proxy instead,
//! [`FakeAnthropic::command_relayed`] relays the namespace's `127.0.0.1:443`
//! to the proxy, and [`FakeAnthropic::serve_plain_on_loopback`] serves the
//! same answers (and the same request log) as the proxy's plain-HTTP upstream.
//!
//! Every request is recorded (host, method, path, bearer token, status) so
//! tests can check which token each one carried. The bearer token is recorded
//! because these are throw-away test tokens; the records never leave the test.

pub(crate) mod namespace;
mod relay;
mod routes;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::fake_chatgpt::tls::Tls;
use crate::fake_server::FakeAuthServer;

/// The host names the hosts file maps to loopback: the API, the token
/// endpoint's host, and the others Claude Code knows (so that nothing would
/// ever look further, even with non-essential traffic switched back on).
pub const HOST_NAMES: &[&str] = &[
    "api.anthropic.com",
    "platform.claude.com",
    "console.anthropic.com",
    "claude.ai",
    "statsig.anthropic.com",
    "mcp-proxy.anthropic.com",
];

/// One request the fake saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicRequest {
    pub at: Instant,
    /// The `Host` header.
    pub host: String,
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Authorization: Bearer` token, if any.
    pub bearer: Option<String>,
    /// Whether `anthropic-beta` named the OAuth beta (`oauth-2025-04-20`),
    /// which marks the token as a subscription login, not an API key.
    pub oauth_beta: bool,
    /// The `x-api-key` header, if any (Claude Code sends `ANTHROPIC_API_KEY`
    /// there; through the broker's proxy it must not arrive).
    pub api_key: Option<String>,
    /// The status answered.
    pub status: u16,
    /// How the answer was held back, if it was (see
    /// [`FakeAnthropic::hold_next_message`]).
    pub held: Option<Hold>,
}

impl AnthropicRequest {
    /// A model request (`POST /v1/messages`).
    pub fn is_message(&self) -> bool {
        self.method == "POST" && self.path.split('?').next() == Some("/v1/messages")
    }

    /// A request to the OAuth token endpoint (Claude Code refreshing itself).
    pub fn is_token_request(&self) -> bool {
        self.path.starts_with("/v1/oauth/token") || self.host.starts_with("platform.claude.com")
    }
}

/// What a held `POST /v1/messages` is answered with once its token is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// `401`: the session must find a new token to retry with.
    Unauthorized,
    /// `200` with a call of a non-existent tool: the session sends a second
    /// request (with the tool's error) and must find a new token for it
    /// without being told its token is dead.
    ToolCall,
}

pub(crate) struct Shared {
    pub auth: FakeAuthServer,
    pub log: Mutex<Vec<AnthropicRequest>>,
    /// Holds for the next messages, in order.
    pub holds: Mutex<VecDeque<Hold>>,
}

/// A running fake; stops when dropped.
pub struct FakeAnthropic {
    shared: Arc<Shared>,
    tls: Arc<rustls::ServerConfig>,
    runtime: tokio::runtime::Handle,
    ca_path: PathBuf,
    hosts_path: PathBuf,
    lifecycle: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl FakeAnthropic {
    /// Generates a throw-away CA (`dir/anthropic-ca.pem`) and a hosts file
    /// (`dir/anthropic-hosts`), and starts the fake's runtime. Tokens are
    /// checked against `auth`.
    pub fn start(auth: FakeAuthServer, dir: &Path) -> Self {
        let ca_path = dir.join("anthropic-ca.pem");
        let tls = Tls::generate_for(&ca_path, HOST_NAMES).expect("fake anthropic: test CA");
        let hosts_path = dir.join("anthropic-hosts");
        let hosts = format!(
            "127.0.0.1 localhost\n::1 localhost\n127.0.0.1 {}\n",
            HOST_NAMES.join(" ")
        );
        std::fs::write(&hosts_path, hosts).expect("fake anthropic: write the hosts file");
        let shared = Arc::new(Shared {
            auth,
            log: Mutex::new(Vec::new()),
            holds: Mutex::new(VecDeque::new()),
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fake-anthropic".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fake anthropic: tokio runtime");
                let _ = handle_tx.send(rt.handle().clone());
                rt.block_on(async move {
                    let _ = stop_rx.await;
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("fake anthropic: spawn thread");
        let runtime = handle_rx.recv().expect("fake anthropic: runtime started");
        FakeAnthropic {
            shared,
            tls: tls.server_config,
            runtime,
            ca_path,
            hosts_path,
            lifecycle: Some((stop_tx, thread)),
        }
    }

    /// `program`, to run in a private network whose `api.anthropic.com`,
    /// `platform.claude.com`, … are this fake (see [`namespace`]). Set its
    /// environment (`NODE_EXTRA_CA_CERTS` = [`ca_path`](Self::ca_path)) and
    /// run it as usual. Fails when this machine does not allow unprivileged
    /// user namespaces (the error names the fix).
    pub fn command(&self, program: &Path) -> std::io::Result<Command> {
        let mut cmd = Command::new(program);
        let shared = self.shared.clone();
        let tls = self.tls.clone();
        namespace::isolate_and_serve(
            &mut cmd,
            &self.hosts_path,
            self.runtime.clone(),
            move |listener| routes::serve(listener, tls, shared),
        )?;
        Ok(cmd)
    }

    /// Like [`command`](Self::command), but the namespace's `127.0.0.1:443`
    /// is relayed (plain TCP) to `target` in the test's network instead of
    /// being served by the fake: for a tool pointed at a local endpoint
    /// (`http://127.0.0.1:443`), such as the broker's proxy, that must still
    /// run offline.
    pub fn command_relayed(&self, program: &Path, target: SocketAddr) -> std::io::Result<Command> {
        let mut cmd = Command::new(program);
        let channel = namespace::isolate(&mut cmd, &self.hosts_path)?;
        let runtime = self.runtime.clone();
        std::thread::Builder::new()
            .name("fake-anthropic-relay".into())
            .spawn(move || {
                let Ok(listener) = namespace::receive_listener(&channel) else {
                    return;
                };
                if listener.set_nonblocking(true).is_err() {
                    return;
                }
                runtime.spawn(async move {
                    if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                        relay::relay(listener, target).await;
                    }
                });
            })?;
        Ok(cmd)
    }

    /// Serves the fake with plain HTTP on a loopback port of the test's own
    /// network (the same answers and request log as inside the namespaces);
    /// returns its origin, `http://127.0.0.1:PORT`. For an upstream behind
    /// the broker's proxy.
    pub fn serve_plain_on_loopback(&self) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("fake anthropic: bind");
        let addr = listener
            .local_addr()
            .expect("fake anthropic: local address");
        listener
            .set_nonblocking(true)
            .expect("fake anthropic: nonblocking");
        let shared = self.shared.clone();
        let _guard = self.runtime.enter();
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("fake anthropic: listener");
        self.runtime.spawn(routes::serve_plain(listener, shared));
        format!("http://{addr}")
    }

    /// Whether programs can be isolated on this machine: runs `/bin/true`
    /// through [`command`](Self::command). `Err` explains how to allow it.
    pub fn check_isolation(&self) -> Result<(), String> {
        namespace::check_isolation(|program| self.command(program))
    }

    /// The throw-away CA's PEM file (give it to the program as
    /// `NODE_EXTRA_CA_CERTS`).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<AnthropicRequest> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every `POST /v1/messages` so far.
    pub fn messages(&self) -> Vec<AnthropicRequest> {
        self.requests()
            .into_iter()
            .filter(AnthropicRequest::is_message)
            .collect()
    }

    /// Every request to the token endpoint so far.
    pub fn token_requests(&self) -> Vec<AnthropicRequest> {
        self.requests()
            .into_iter()
            .filter(AnthropicRequest::is_token_request)
            .collect()
    }

    /// Clears the request log.
    pub fn clear_requests(&self) {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Holds back the answer to the next `POST /v1/messages` (after those
    /// already held) until the token it carried is no longer valid at the
    /// authorization server, then answers it as `hold` says: the session
    /// outlives the token it started with, and its next request shows where
    /// it gets a new one.
    pub fn hold_next_message(&self, hold: Hold) {
        self.shared
            .holds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(hold);
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.lifecycle.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}
