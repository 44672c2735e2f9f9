//! A fake GitHub (`api.github.com`, `github.com`) and Copilot API
//! (`api.githubcopilot.com`) for running the real GitHub Copilot CLI offline
//! against tokens the broker hands out.
//!
//! Like [`crate::fake_anthropic`], it serves programs that run in private
//! namespaces of their own (user, network, mount: see
//! `fake_anthropic::namespace`), where these host names resolve to loopback
//! and `127.0.0.1:443` is this fake, over TLS with a throw-away CA
//! (`NODE_EXTRA_CA_CERTS`).
//!
//! What it answers is what Copilot CLI 1.0.102 was observed to need:
//!
//! * `GET api.github.com/copilot_internal/user` — the account's Copilot
//!   entitlement and API base; every `api.github.com` request with a token
//!   the fake authorization server does not consider valid gets `401 Bad
//!   credentials`; other `api.github.com` paths (`team_customizations`,
//!   `managed_settings`, the release check
//!   `/repos/github/copilot-cli/releases`) get `404`, which it tolerates;
//! * `GET api.githubcopilot.com/models` — a model list; `POST …/responses` —
//!   a Responses-API SSE stream saying "pong" for a valid bearer token, else
//!   `401`; or, when a test asked for it, held until the token is dead and
//!   then answered with a `401` or with a call of a tool that does not exist
//!   (Copilot answers that with a second request in the same session);
//! * `POST github.com/login/oauth/access_token` (a refresh of its own) —
//!   recorded and answered the way GitHub answers a refresh token it does not
//!   know (`200 {"error":"bad_refresh_token"}`). A test that sees one has
//!   failed;
//! * everything else (telemetry, MCP): `404`.
//!
//! Every request is recorded (host, method, path, bearer token, status).

mod routes;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::fake_anthropic::namespace;
use crate::fake_chatgpt::tls::Tls;
use crate::fake_server::FakeAuthServer;

/// The host names the hosts file maps to loopback: GitHub's, the Copilot
/// API's, and the telemetry and proxy hosts Copilot CLI knows (so that
/// nothing would ever look further).
pub const HOST_NAMES: &[&str] = &[
    "api.github.com",
    "github.com",
    "api.githubcopilot.com",
    "api.individual.githubcopilot.com",
    "telemetry.githubcopilot.com",
    "telemetry.individual.githubcopilot.com",
    "proxy.githubcopilot.com",
    "copilot-telemetry.githubusercontent.com",
    "raw.githubusercontent.com",
    "objects.githubusercontent.com",
    "uploads.github.com",
];

/// The GitHub login the fake's tokens belong to.
pub const LOGIN: &str = "octo-tester";

/// One request the fake saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopilotRequest {
    pub at: Instant,
    /// The `Host` header, without a port.
    pub host: String,
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The token of `Authorization: Bearer …` or `Authorization: token …`.
    pub bearer: Option<String>,
    /// The status answered.
    pub status: u16,
    /// How the answer was held back, if it was.
    pub held: Option<Hold>,
}

impl CopilotRequest {
    /// A model request (`POST api.githubcopilot.com/responses`).
    pub fn is_model_request(&self) -> bool {
        self.method == "POST"
            && self.host == "api.githubcopilot.com"
            && self.path.split('?').next() == Some("/responses")
    }

    /// A request to GitHub's OAuth endpoints (a login or refresh of its own).
    pub fn is_token_request(&self) -> bool {
        self.host == "github.com" && self.path.starts_with("/login/")
    }

    /// A request that carried a GitHub token: to `api.github.com` or the
    /// Copilot API.
    pub fn is_api_request(&self) -> bool {
        self.host == "api.github.com" || self.host == "api.githubcopilot.com"
    }
}

/// What a held `POST /responses` is answered with once its token is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// `401`: the session must find a new token to retry with.
    Unauthorized,
    /// `200` with a call of a non-existent tool: the session sends a second
    /// request, which shows where it finds a token for it.
    ToolCall,
}

pub(crate) struct Shared {
    pub auth: FakeAuthServer,
    pub log: Mutex<Vec<CopilotRequest>>,
    pub holds: Mutex<VecDeque<Hold>>,
}

/// A running fake; stops when dropped.
pub struct FakeCopilot {
    shared: Arc<Shared>,
    tls: Arc<rustls::ServerConfig>,
    runtime: tokio::runtime::Handle,
    ca_path: PathBuf,
    hosts_path: PathBuf,
    lifecycle: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl FakeCopilot {
    /// Generates a throw-away CA (`dir/copilot-ca.pem`) and a hosts file
    /// (`dir/copilot-hosts`), and starts the fake's runtime. Tokens are
    /// checked against `auth`.
    pub fn start(auth: FakeAuthServer, dir: &Path) -> Self {
        let ca_path = dir.join("copilot-ca.pem");
        let tls = Tls::generate_for(&ca_path, HOST_NAMES).expect("fake copilot: test CA");
        let hosts_path = dir.join("copilot-hosts");
        let hosts = format!(
            "127.0.0.1 localhost\n::1 localhost\n127.0.0.1 {}\n",
            HOST_NAMES.join(" ")
        );
        std::fs::write(&hosts_path, hosts).expect("fake copilot: write the hosts file");
        let shared = Arc::new(Shared {
            auth,
            log: Mutex::new(Vec::new()),
            holds: Mutex::new(VecDeque::new()),
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fake-copilot".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fake copilot: tokio runtime");
                let _ = handle_tx.send(rt.handle().clone());
                rt.block_on(async move {
                    let _ = stop_rx.await;
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("fake copilot: spawn thread");
        let runtime = handle_rx.recv().expect("fake copilot: runtime started");
        FakeCopilot {
            shared,
            tls: tls.server_config,
            runtime,
            ca_path,
            hosts_path,
            lifecycle: Some((stop_tx, thread)),
        }
    }

    /// `program`, to run in a private network whose GitHub and Copilot hosts
    /// are this fake. Fails when this machine does not allow unprivileged
    /// user namespaces.
    pub fn command(&self, program: &Path) -> std::io::Result<Command> {
        let mut cmd = Command::new(program);
        let channel = namespace::isolate(&mut cmd, &self.hosts_path)?;
        let shared = self.shared.clone();
        let tls = self.tls.clone();
        let runtime = self.runtime.clone();
        std::thread::Builder::new()
            .name("fake-copilot-accept".into())
            .spawn(move || {
                let Ok(listener) = namespace::receive_listener(&channel) else {
                    return;
                };
                if listener.set_nonblocking(true).is_err() {
                    return;
                }
                runtime.spawn(async move {
                    if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                        routes::serve(listener, tls, shared).await;
                    }
                });
            })?;
        Ok(cmd)
    }

    /// Whether programs can be isolated on this machine. `Err` explains how
    /// to allow it.
    pub fn check_isolation(&self) -> Result<(), String> {
        let outcome = self
            .command(Path::new("/bin/true"))
            .and_then(|mut cmd| cmd.status());
        match outcome {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("/bin/true in the private namespaces exited {status}")),
            Err(e) => Err(format!(
                "cannot run a program in private user, network and mount namespaces ({e}); \
                 allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, \
                 and on Ubuntu 23.10+ kernel.apparmor_restrict_unprivileged_userns=0) or run as root"
            )),
        }
    }

    /// The throw-away CA's PEM file (`NODE_EXTRA_CA_CERTS`).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<CopilotRequest> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every `POST /responses` so far.
    pub fn model_requests(&self) -> Vec<CopilotRequest> {
        self.requests()
            .into_iter()
            .filter(CopilotRequest::is_model_request)
            .collect()
    }

    /// Every request to GitHub's OAuth endpoints so far.
    pub fn token_requests(&self) -> Vec<CopilotRequest> {
        self.requests()
            .into_iter()
            .filter(CopilotRequest::is_token_request)
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

    /// Holds back the answer to the next `POST /responses` (after those
    /// already held) until the token it carried is dead, then answers it as
    /// `hold` says.
    pub fn hold_next_model_request(&self, hold: Hold) {
        self.shared
            .holds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(hold);
    }
}

impl Drop for FakeCopilot {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.lifecycle.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}
