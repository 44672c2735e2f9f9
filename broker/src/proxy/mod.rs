//! The header-injecting proxy: a loopback HTTP reverse proxy per `[[proxy]]`
//! table, so that a tool never holds the account's token at all. The tool
//! presents a capability key where it would put its API key; the proxy strips
//! it, injects `Authorization: Bearer <current access token>` (plus the
//! preset's extra headers) and streams the request and the answer through —
//! SSE, chunked bodies and WebSocket upgrades included.
//!
//! Like the projection targets, the proxy is a subscriber of the manager's
//! token snapshot and never sees the refresh token; its only other use of the
//! manager is the `Unauthorized` report a client would make after a 401.
//!
//! * `settings.rs` — the `[[proxy]]` table;
//! * `listen.rs` — loopback TCP or Unix socket;
//! * `upstream.rs` — where requests go, per preset;
//! * `keys.rs` — capability keys (hashed, revocable, counted);
//! * `headers.rs`, `preset_headers.rs` — what changes in a request;
//! * `body.rs` — streamed bodies, the replay buffer and the cap;
//! * `client.rs` — the upstream client (hyper + rustls);
//! * `forward.rs` — one request; `tunnel.rs` — upgraded connections;
//! * `serve.rs` — the accept loop; `refusal.rs` — the proxy's own answers.

pub mod body;
pub mod client;
pub mod forward;
pub mod headers;
pub mod keys;
pub mod listen;
pub mod preset_headers;
pub mod refusal;
pub mod serve;
pub mod settings;
pub mod tunnel;
pub mod upstream;

use crate::clock::Clock;
use crate::manager::{TokenManager, TokenSnapshot};
use http::header::{HeaderName, HeaderValue};
use keys::KeyStore;
use listen::ListenAddr;
use oauth_broker_proto::{ProxyKeyStatus, ProxyStatus};
use settings::ProxyConfig;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use upstream::Upstream;

/// One running proxy: what every request of it needs.
pub struct Instance {
    /// Where it listens (as bound: the real port).
    pub listen: ListenAddr,
    /// Its table.
    pub config: ProxyConfig,
    /// The provider preset (decides the extra headers).
    pub preset: String,
    /// Where requests go.
    pub upstream: Upstream,
    /// The configured extra headers, parsed.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The keys it accepts (shared by all proxies of the account).
    pub keys: Arc<KeyStore>,
    /// The manager's snapshots (the token to inject).
    pub snapshots: watch::Receiver<Arc<TokenSnapshot>>,
    /// For the 401 report and a token the snapshot cannot give.
    pub manager: TokenManager,
    /// "Now" for token validity.
    pub clock: Arc<dyn Clock>,
    /// The pooled upstream client.
    pub client: client::UpstreamClient,
    /// Where its tasks run (connections, tunnels), waited for at shutdown.
    pub tasks: TaskTracker,
    /// Cancelled at shutdown.
    pub shutdown: CancellationToken,
}

/// The account's proxies and keys; cheap to clone.
#[derive(Clone)]
pub struct Proxies {
    keys: Arc<KeyStore>,
    running: Arc<Vec<ProxyStatus>>,
    tasks: TaskTracker,
}

/// A `[[proxy]]` table checked but not yet bound.
pub struct Checked {
    listen: ListenAddr,
    config: ProxyConfig,
    upstream: Upstream,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// Checks the `[[proxy]]` tables (before anything is started, so a mistake
/// stops the daemon with a message naming the table).
pub fn check(configs: &[ProxyConfig], preset: &str) -> anyhow::Result<Vec<Checked>> {
    configs
        .iter()
        .enumerate()
        .map(|(i, config)| {
            let at =
                |why: String| anyhow::anyhow!("[[proxy]] #{} ({}): {why}", i + 1, config.listen);
            Ok(Checked {
                listen: ListenAddr::parse(&config.listen).map_err(at)?,
                upstream: Upstream::resolve(config.upstream.as_deref(), preset).map_err(at)?,
                headers: preset_headers::parse_configured(&config.headers).map_err(at)?,
                config: config.clone(),
            })
        })
        .collect()
}

/// A checked `[[proxy]]` table with its listener bound.
pub struct Bound {
    checked: Checked,
    listener: listen::Listener,
    bound: ListenAddr,
}

/// Binds every checked proxy. Called before the manager (or any other task)
/// starts, like the broker's own socket: a Unix socket is bound under a
/// process-wide umask, which must not race with files created elsewhere.
pub fn bind(checked: Vec<Checked>) -> anyhow::Result<Vec<Bound>> {
    checked
        .into_iter()
        .map(|c| {
            let (listener, bound) = listen::bind(&c.listen).map_err(|e| {
                anyhow::anyhow!(
                    "[[proxy]] listen = {:?}: cannot listen: {e}",
                    c.config.listen
                )
            })?;
            tracing::info!(listen = %bound, upstream = %c.upstream, "proxy listening");
            Ok(Bound {
                checked: c,
                listener,
                bound,
            })
        })
        .collect()
}

impl Proxies {
    /// Serves every bound proxy until `shutdown`.
    pub fn start(
        bound: Vec<Bound>,
        preset: &str,
        keys: Arc<KeyStore>,
        manager: &TokenManager,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Proxies> {
        let tasks = TaskTracker::new();
        let mut running = Vec::new();
        if !bound.is_empty() {
            let client = client::build()?;
            for Bound {
                checked: c,
                listener,
                bound,
            } in bound
            {
                running.push(ProxyStatus {
                    listen: bound.to_string(),
                    upstream: c.upstream.to_string(),
                });
                let instance = Arc::new(Instance {
                    listen: bound,
                    config: c.config,
                    preset: preset.to_string(),
                    upstream: c.upstream,
                    headers: c.headers,
                    keys: keys.clone(),
                    snapshots: manager.subscribe(),
                    manager: manager.clone(),
                    clock: clock.clone(),
                    client: client.clone(),
                    tasks: tasks.clone(),
                    shutdown: shutdown.clone(),
                });
                tasks.spawn(serve::run(listener, instance));
            }
        }
        tasks.close();
        Ok(Proxies {
            keys,
            running: Arc::new(running),
            tasks,
        })
    }

    /// The key store (for the `proxy_key` / `proxy_revoke` commands).
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The running proxies.
    pub fn status(&self) -> Vec<ProxyStatus> {
        self.running.as_ref().clone()
    }

    /// The keys with their use.
    pub fn key_status(&self) -> Vec<ProxyKeyStatus> {
        self.keys.status()
    }

    /// Waits until every proxy task ended (after shutdown).
    pub async fn stopped(&self) {
        self.tasks.wait().await;
    }
}
