//! A fake ChatGPT backend (and OpenAI-style API) on an HTTPS loopback port, for
//! running the real Codex CLI (and SDKs) offline against tokens the broker
//! hands out.
//!
//! What it answers is what Codex CLI 0.169 was observed to need
//! (shared/PROVIDERS.md):
//!
//! * `GET {base}/wham/accounts/check` lists the account with
//!   `workspace_backend_origin` = this server and
//!   `"account_routing_override":"NO_CONSTRAINT"`;
//! * `GET …/codex/models` answers an empty model list;
//! * the WebSocket attempt (`GET …/responses` with `Upgrade: websocket`) gets
//!   `426 Upgrade Required`, on which Codex falls back to HTTPS at once;
//! * requests to `auth.openai.com` (a client that refreshes or revokes on its
//!   own, reaching this server through [`FakeChatGpt::command`]'s private
//!   network) are passed on to the fake authorization server, which counts
//!   and answers them as usual;
//! * `POST …/responses` (any prefix, so custom providers work too) answers a
//!   one-message SSE stream, `GET /v1/models` an empty list — both only for a
//!   bearer token the fake authorization server considers valid (issued, not
//!   expired, not revoked), else `401`;
//! * everything else: `404`.
//!
//! Every request is recorded (host, method, path, bearer token, account header,
//! status) so tests can check which token each one carried. The bearer token
//! is recorded because these are throw-away test tokens; the records never
//! leave the test.

pub(crate) mod routes;
pub(crate) mod tls;

pub use tls::STANDS_IN_FOR;

/// The authorization server's host name among [`STANDS_IN_FOR`].
pub const AUTH_HOST: &str = "auth.openai.com";

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::fake_server::FakeAuthServer;

/// One request the backend saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendRequest {
    pub at: Instant,
    /// The `Host` header (`chatgpt.com`, `auth.openai.com`, `127.0.0.1:PORT`).
    pub host: String,
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Authorization: Bearer` token, if any.
    pub bearer: Option<String>,
    /// The `ChatGPT-Account-ID` header, if any.
    pub account_id: Option<String>,
    /// Whether this was a WebSocket upgrade attempt.
    pub websocket: bool,
    /// The status answered.
    pub status: u16,
    /// Whether the answer was held back (see [`FakeChatGpt::hold_next_turn`]).
    pub held: bool,
}

impl BackendRequest {
    /// A model turn (`POST …/responses`).
    pub fn is_turn(&self) -> bool {
        self.method == "POST" && self.path.ends_with("/responses")
    }

    /// A request to the authorization server's host (a client refreshing or
    /// revoking on its own).
    pub fn is_auth_request(&self) -> bool {
        self.host.split(':').next() == Some(AUTH_HOST)
    }
}

pub(crate) struct Shared {
    pub auth: FakeAuthServer,
    pub account_id: String,
    pub origin: String,
    pub log: Mutex<Vec<BackendRequest>>,
    pub hold_next_turn: AtomicBool,
}

/// A running fake backend; stops when dropped.
pub struct FakeChatGpt {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_path: PathBuf,
    tls: Arc<rustls::ServerConfig>,
    runtime: tokio::runtime::Handle,
    hosts_path: PathBuf,
    lifecycle: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl FakeChatGpt {
    /// Generates a throw-away CA (its PEM goes to `dir/ca.pem`) and a hosts
    /// file mapping [`STANDS_IN_FOR`] to loopback (`dir/chatgpt-hosts`), binds
    /// `127.0.0.1:0` and serves on a thread of its own. Tokens are checked
    /// against `auth`; `account_id` is the ChatGPT account it lists.
    pub fn start(auth: FakeAuthServer, account_id: &str, dir: &Path) -> Self {
        let ca_path = dir.join("ca.pem");
        let tls = tls::Tls::generate(&ca_path).expect("fake chatgpt: generate the test CA");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("fake chatgpt: bind");
        listener
            .set_nonblocking(true)
            .expect("fake chatgpt: set_nonblocking");
        let addr = listener.local_addr().expect("fake chatgpt: local_addr");
        let hosts_path = dir.join("chatgpt-hosts");
        let hosts = format!(
            "127.0.0.1 localhost\n::1 localhost\n127.0.0.1 {}\n",
            STANDS_IN_FOR.join(" ")
        );
        std::fs::write(&hosts_path, hosts).expect("fake chatgpt: write the hosts file");
        let shared = Arc::new(Shared {
            auth,
            account_id: account_id.to_string(),
            origin: format!("https://{addr}"),
            log: Mutex::new(Vec::new()),
            hold_next_turn: AtomicBool::new(false),
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = shared.clone();
        let server_config = tls.server_config.clone();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("fake-chatgpt-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fake chatgpt: tokio runtime");
                let _ = handle_tx.send(rt.handle().clone());
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("fake chatgpt: register listener");
                    tokio::select! {
                        _ = routes::serve(listener, tls.server_config, app) => {}
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("fake chatgpt: spawn thread");
        let runtime = handle_rx.recv().expect("fake chatgpt: runtime started");
        FakeChatGpt {
            shared,
            addr,
            ca_path,
            tls: server_config,
            runtime,
            hosts_path,
            lifecycle: Some((stop_tx, thread)),
        }
    }

    /// `https://127.0.0.1:PORT`
    pub fn origin(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Codex's `chatgpt_base_url`: `https://127.0.0.1:PORT/backend-api/`.
    pub fn chatgpt_base_url(&self) -> String {
        format!("{}/backend-api/", self.origin())
    }

    /// Codex's `openai_base_url` for ChatGPT sign-in (where it lists models).
    pub fn codex_base_url(&self) -> String {
        format!("{}/backend-api/codex", self.origin())
    }

    /// An OpenAI-style API base: `https://127.0.0.1:PORT/v1`.
    pub fn api_base_url(&self) -> String {
        format!("{}/v1", self.origin())
    }

    /// The throw-away CA's PEM file (trust it to reach this server).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The loopback address it serves HTTPS on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its TLS server configuration (the certificate also names
    /// [`STANDS_IN_FOR`]): for terminating TLS in front of another fake, so
    /// that one CA file is all a client has to trust.
    pub fn tls_server_config(&self) -> Arc<rustls::ServerConfig> {
        self.tls.clone()
    }

    /// `program`, to run in a private network (`fake_anthropic`'s namespace
    /// runner) whose `chatgpt.com` and `auth.openai.com` are this fake, on
    /// `127.0.0.1:443`: for a client whose URLs are fixed (OpenClaw). Set its
    /// CA variable to [`ca_path`](Self::ca_path) and run it as usual. Fails
    /// when this machine does not allow unprivileged user namespaces.
    pub fn command(&self, program: &Path) -> std::io::Result<Command> {
        let mut cmd = Command::new(program);
        let shared = self.shared.clone();
        let tls = self.tls.clone();
        crate::fake_anthropic::namespace::isolate_and_serve(
            &mut cmd,
            &self.hosts_path,
            self.runtime.clone(),
            move |listener| routes::serve(listener, tls, shared),
        )?;
        Ok(cmd)
    }

    /// Whether programs can be isolated on this machine (see
    /// [`command`](Self::command)). `Err` explains how to allow it.
    pub fn check_isolation(&self) -> Result<(), String> {
        crate::fake_anthropic::namespace::check_isolation(|program| self.command(program))
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<BackendRequest> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Clears the request log.
    pub fn clear_requests(&self) {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Holds back the answer to the next model turn (`POST …/responses`)
    /// until the token it carried is no longer valid at the authorization
    /// server, then answers it (with 401): the client's run outlives the token
    /// it started with, as a long run does, and its retry shows where it gets
    /// a new one.
    pub fn hold_next_turn(&self) {
        self.shared
            .hold_next_turn
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FakeChatGpt {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.lifecycle.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}
