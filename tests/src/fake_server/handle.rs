//! [`FakeAuthServer`]: starting, stopping and driving the fake server.
//!
//! Why a thread with its own runtime: tests are written both as plain
//! `#[test]` functions (no runtime) and as `#[tokio::test]` (a current-thread
//! runtime that may be busy or paused). A server on the test's runtime would
//! stall whenever the test blocks; a dedicated thread never does. The
//! listening socket is bound before `start` returns, so requests can be sent
//! at once.
//!
//! The handle is cheap to clone (e.g. into a task that approves a device
//! code); the server stops when the last clone is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use tokio::sync::oneshot;

use super::authcode::AuthorizeAnswer;
use super::config::{AuthorizeBehavior, ErrorShape, FakeConfig};
use super::connection::{ConnectionControl, DroppableListener};
use super::fault::Fault;
use super::routes;
use super::state::{Inner, Shared};
use super::stats::{
    DeviceCodeInfo, FamilyInfo, IssuedTokens, Stats, TokenRequestRecord, WaitTimeout,
};
use super::{browser, tokens};

/// A running fake authorization server. See the [module docs](super).
#[derive(Clone)]
pub struct FakeAuthServer {
    core: Arc<Core>,
}

struct Core {
    shared: Arc<Shared>,
    addr: SocketAddr,
    base_url: String,
    lifecycle: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

impl Drop for Core {
    fn drop(&mut self) {
        let taken = self
            .lifecycle
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((stop, thread)) = taken {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for FakeAuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeAuthServer")
            .field("base_url", &self.core.base_url)
            .finish_non_exhaustive()
    }
}

/// What a simulated browser saw after [`FakeAuthServer::browser_login`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserOutcome {
    /// Where the authorize endpoint redirected (the client's callback URL
    /// with `code`/`state` or `error`).
    pub redirect: String,
    /// HTTP status of the callback page served by the client.
    pub callback_status: u16,
    /// Body of the callback page.
    pub callback_body: String,
}

impl FakeAuthServer {
    /// Binds `127.0.0.1:0` and serves on a background thread.
    ///
    /// Panics if the socket cannot be bound or the runtime cannot start
    /// (test-only code: there is nothing sensible to recover).
    pub fn start(config: FakeConfig) -> Self {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("fake auth server: bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("fake auth server: set_nonblocking");
        let addr = listener.local_addr().expect("fake auth server: local_addr");
        let base_url = format!("http://{addr}");
        let shared = Arc::new(Shared::new(config, base_url.clone()));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = shared.clone();
        let counted = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fake-auth-server-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake auth server: tokio runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("fake auth server: register listener");
                    let service = routes::router(app)
                        .into_make_service_with_connect_info::<ConnectionControl>();
                    let serve = axum::serve(DroppableListener::new(listener, counted), service);
                    tokio::select! {
                        result = serve => {
                            if let Err(e) = result {
                                tracing::error!("fake auth server stopped: {e}");
                            }
                        }
                        _ = stop_rx => {}
                    }
                });
                // Abandon open connections and in-flight delays at once: a
                // test's end must not wait for a keep-alive client.
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("fake auth server: spawn thread");
        Self {
            core: Arc::new(Core {
                shared,
                addr,
                base_url,
                lifecycle: Mutex::new(Some((stop_tx, thread))),
            }),
        }
    }

    fn shared(&self) -> &Shared {
        &self.core.shared
    }

    // ----- addresses -------------------------------------------------------

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.core.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.core.addr
    }

    pub fn port(&self) -> u16 {
        self.core.addr.port()
    }

    /// The OIDC issuer (same as [`base_url`](Self::base_url)).
    pub fn issuer(&self) -> String {
        self.core.base_url.clone()
    }

    /// `<base>/oauth/token`
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth/token", self.core.base_url)
    }

    /// `<base>/oauth/authorize`
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/oauth/authorize", self.core.base_url)
    }

    /// `<base>/oauth/device/code`
    pub fn device_authorization_endpoint(&self) -> String {
        format!("{}/oauth/device/code", self.core.base_url)
    }

    /// `<base>/oauth/revoke`
    pub fn revocation_endpoint(&self) -> String {
        format!("{}/oauth/revoke", self.core.base_url)
    }

    /// `<base>/userinfo` (also served as `<base>/api/me`).
    pub fn userinfo_endpoint(&self) -> String {
        format!("{}/userinfo", self.core.base_url)
    }

    /// `<base>/.well-known/openid-configuration`
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.core.base_url)
    }

    /// `<base>/copilot_internal/v2/token`
    pub fn copilot_token_url(&self) -> String {
        format!("{}/copilot_internal/v2/token", self.core.base_url)
    }

    /// `<base>/copilot-api` (what the exchange returns as `endpoints.api`).
    pub fn copilot_api_base(&self) -> String {
        format!("{}/copilot-api", self.core.base_url)
    }

    // ----- configuration at run time ----------------------------------------

    /// Changes any knob; affects requests handled afterwards.
    pub fn configure(&self, f: impl FnOnce(&mut FakeConfig)) {
        self.shared().update(|i| f(&mut i.cfg));
    }

    /// A copy of the current configuration.
    pub fn config(&self) -> FakeConfig {
        self.shared().read(|i| i.cfg.clone())
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_access_ttl(&self, ttl: Duration) {
        self.configure(|c| c.access_ttl = ttl);
    }

    pub fn set_error_shape(&self, shape: ErrorShape) {
        self.configure(|c| c.error_shape = shape);
    }

    pub fn set_reuse_grace(&self, grace: Duration) {
        self.configure(|c| c.reuse_grace = grace);
    }

    pub fn set_authorize_behavior(&self, behavior: AuthorizeBehavior) {
        self.configure(|c| c.authorize_behavior = behavior);
    }

    /// Advertise a foreign `token_endpoint` in discovery (`None` = the real one).
    pub fn set_discovery_token_endpoint(&self, endpoint: Option<String>) {
        self.configure(|c| c.discovery_token_endpoint = endpoint);
    }

    // ----- logins and revocation from the test side -------------------------

    /// A fresh token family, as if the user had just logged in (with the
    /// configured default scope). Import it into the broker.
    pub fn issue_grant(&self) -> IssuedTokens {
        let scope = self.config().default_scope;
        self.issue_grant_with_scope(&scope)
    }

    /// Like [`issue_grant`](Self::issue_grant) with an explicit scope.
    pub fn issue_grant_with_scope(&self, scope: &str) -> IssuedTokens {
        self.shared().update(|i| {
            i.stats.grants_issued += 1;
            let spec = Inner::mint_spec(&i.cfg, &i.base_url);
            let m = i.families.create(&spec, scope, Instant::now());
            IssuedTokens {
                access_token: m.access_token,
                refresh_token: m.refresh_token,
                expires_in: m.expires_in,
                id_token: m.id_token,
                scope: m.scope,
            }
        })
    }

    /// A new non-expiring GitHub-style token (`ghu_…`) that the Copilot
    /// exchange accepts.
    pub fn issue_github_token(&self) -> String {
        let token = format!("ghu_fake{}", tokens::random_hex(16));
        self.add_github_token(&token);
        token
    }

    /// Makes the Copilot exchange accept this GitHub token.
    pub fn add_github_token(&self, token: &str) {
        self.shared()
            .update(|i| i.copilot.add_github_token(token.to_owned()));
    }

    /// Revokes every family, GitHub token and Copilot session; returns the
    /// number of families newly revoked.
    pub fn revoke_all(&self) -> u64 {
        self.shared().update(|i| {
            let n = i.families.revoke_all();
            i.stats.families_revoked += n;
            i.copilot.revoke_all();
            n
        })
    }

    /// Revokes the family of this refresh token (any generation). False if
    /// the token is unknown.
    pub fn revoke_family_of(&self, refresh_token: &str) -> bool {
        self.shared().update(|i| i.revoke_family_of(refresh_token))
    }

    /// Expires the family of this refresh token: refreshes then fail with
    /// `invalid_grant` (flat) / `refresh_token_expired` (nested).
    pub fn expire_family_of(&self, refresh_token: &str) -> bool {
        self.shared()
            .update(|i| match i.families.family_of_refresh(refresh_token) {
                Some(f) => {
                    i.families.expire_family(f);
                    true
                }
                None => false,
            })
    }

    // ----- fault injection ---------------------------------------------------

    /// Queues a one-shot fault for the next token-endpoint request (FIFO).
    pub fn push_fault(&self, fault: Fault) {
        self.shared().update(|i| i.faults.push(fault));
    }

    /// A fault for every token-endpoint request (while no one-shot fault is
    /// queued), until cleared with `None`.
    pub fn set_persistent_fault(&self, fault: Option<Fault>) {
        self.shared().update(|i| i.faults.set_persistent(fault));
    }

    /// One-shot fault for the next Copilot exchange request.
    pub fn push_copilot_fault(&self, fault: Fault) {
        self.shared().update(|i| i.copilot_faults.push(fault));
    }

    /// Persistent fault for the Copilot exchange.
    pub fn set_copilot_persistent_fault(&self, fault: Option<Fault>) {
        self.shared()
            .update(|i| i.copilot_faults.set_persistent(fault));
    }

    /// Removes all queued and persistent faults (both endpoints).
    pub fn clear_faults(&self) {
        self.shared().update(|i| {
            i.faults.clear();
            i.copilot_faults.clear();
        });
    }

    /// One-shot token-endpoint faults not yet consumed.
    pub fn pending_faults(&self) -> usize {
        self.shared().read(|i| i.faults.pending())
    }

    // ----- device flow: the user's side --------------------------------------

    /// The user enters `user_code` and approves. False if no pending device
    /// authorization has this code (case and dashes are ignored).
    pub fn approve_device(&self, user_code: &str) -> bool {
        self.shared().update(|i| i.device.approve(user_code))
    }

    /// The user denies: polls then get `access_denied`.
    pub fn deny_device(&self, user_code: &str) -> bool {
        self.shared().update(|i| i.device.deny(user_code))
    }

    /// Expires the device code now: polls then get `expired_token`.
    pub fn expire_device(&self, user_code: &str) -> bool {
        self.shared()
            .update(|i| i.device.expire(user_code, Instant::now()))
    }

    /// Answer `slow_down` to the next `n` device polls.
    pub fn set_device_slow_down(&self, n: u32) {
        self.shared().update(|i| i.device.set_slow_down(n));
    }

    /// Arrival instants of every device-code poll, in order (faulted ones
    /// included), to measure the client's polling gaps.
    pub fn device_polls(&self) -> Vec<Instant> {
        self.shared().read(|i| i.device_polls.clone())
    }

    /// The most recent device authorization the endpoint issued.
    pub fn last_device_code(&self) -> Option<DeviceCodeInfo> {
        self.shared().read(|i| i.device.last())
    }

    // ----- OpenAI's device scheme: the user's side ----------------------------

    /// The user enters `user_code` at `/codex/device` and approves (OpenAI's
    /// scheme). False if no pending authorization has this code.
    pub fn approve_openai_device(&self, user_code: &str) -> bool {
        self.shared().update(|i| {
            let redirect_uri = format!("{}/deviceauth/callback", i.base_url);
            let client_id = i.cfg.client_id.clone();
            let scope = i.cfg.default_scope.clone();
            i.openai_device.approve(
                user_code,
                &mut i.codes,
                &client_id,
                &redirect_uri,
                &scope,
                Instant::now(),
            )
        })
    }

    /// The user denies (OpenAI's scheme): polls then get 400 `access_denied`.
    pub fn deny_openai_device(&self, user_code: &str) -> bool {
        self.shared().update(|i| i.openai_device.deny(user_code))
    }

    /// The user code of the most recent OpenAI-scheme device authorization.
    pub fn last_openai_device_user_code(&self) -> Option<String> {
        self.shared().read(|i| i.openai_device.last_user_code())
    }

    /// Arrival instants of every OpenAI-scheme device poll, in order.
    pub fn openai_device_polls(&self) -> Vec<Instant> {
        self.shared().read(|i| i.openai_device_polls.clone())
    }

    // ----- what clients sent ---------------------------------------------------

    /// Every token request's non-secret fields (refresh tokens, codes,
    /// verifiers, device codes and client secrets are left out) plus its
    /// User-Agent under `header:user-agent`, in order of arrival.
    pub fn token_request_params(&self) -> Vec<BTreeMap<String, String>> {
        self.shared().read(|i| i.token_params.clone())
    }

    /// `editor-version`, `user-agent` and `authorization-scheme` of every
    /// Copilot exchange request, in order.
    pub fn copilot_exchange_headers(&self) -> Vec<BTreeMap<String, String>> {
        self.shared().read(|i| i.copilot_headers.clone())
    }

    // ----- authorization code: the browser's side ----------------------------

    /// Does what a browser visiting this authorize URL would get: returns the
    /// redirect location (the client's `redirect_uri` with `code`/`state`, or
    /// with `error`). Errors if the URL is not this server's authorize
    /// endpoint or the server refuses to redirect (unknown client, bad
    /// `redirect_uri`).
    pub fn authorize(&self, authorize_url: &str) -> anyhow::Result<String> {
        let u = url::Url::parse(authorize_url)?;
        let endpoint = self.authorization_endpoint();
        let without_query = authorize_url.split('?').next().unwrap_or("");
        if without_query != endpoint {
            bail!("{authorize_url} is not this server's authorize endpoint {endpoint}");
        }
        let query: BTreeMap<String, String> = u.query_pairs().into_owned().collect();
        match routes::authorize::decide(self.shared(), query) {
            AuthorizeAnswer::Redirect(location) => Ok(location),
            AuthorizeAnswer::BadRequest(why) => Err(anyhow!("authorize refused: {why}")),
        }
    }

    /// [`authorize`](Self::authorize), then GET the redirect (the client's
    /// loopback callback) like a browser and return what it answered.
    pub fn browser_login(&self, authorize_url: &str) -> anyhow::Result<BrowserOutcome> {
        let redirect = self.authorize(authorize_url)?;
        let (callback_status, callback_body) = browser::get(&redirect, Duration::from_secs(10))?;
        Ok(BrowserOutcome {
            redirect,
            callback_status,
            callback_body,
        })
    }

    /// Query parameters of every authorize request, in order.
    pub fn authorize_requests(&self) -> Vec<BTreeMap<String, String>> {
        self.shared().read(|i| i.authorize_log.clone())
    }

    // ----- observations -------------------------------------------------------

    /// Every refresh and access token this server ever issued (for leak greps).
    pub fn all_issued_tokens(&self) -> Vec<String> {
        self.shared().read(|i| i.families.all_tokens())
    }

    /// Every access token this server issued, oldest first: which of two
    /// tokens superseded the other, for judging "the current token" without
    /// racing the next refresh.
    pub fn access_tokens_in_issue_order(&self) -> Vec<String> {
        self.shared()
            .read(|i| i.families.access_tokens_in_issue_order())
    }

    /// Counters (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        self.shared().read(|i| i.stats.clone())
    }

    /// Every handled token request, in order of handling.
    pub fn token_requests(&self) -> Vec<TokenRequestRecord> {
        self.shared().read(|i| i.token_log.clone())
    }

    /// Every token family, in creation order.
    pub fn families(&self) -> Vec<FamilyInfo> {
        self.shared().read(|i| i.families.all_info())
    }

    /// The family of a refresh token of any generation.
    pub fn family_of(&self, refresh_token: &str) -> Option<FamilyInfo> {
        self.shared().read(|i| {
            i.families
                .family_of_refresh(refresh_token)
                .map(|f| i.families.info(f))
        })
    }

    /// Rotations in the family of this refresh token.
    pub fn family_refresh_count(&self, refresh_token: &str) -> Option<u64> {
        self.family_of(refresh_token).map(|f| f.refreshes)
    }

    /// The refresh token that is currently usable in this token's family.
    pub fn current_refresh_token_of(&self, refresh_token: &str) -> Option<String> {
        self.family_of(refresh_token)
            .and_then(|f| f.current_refresh_token)
    }

    /// True if this refresh token would be accepted as current now.
    pub fn is_refresh_token_current(&self, refresh_token: &str) -> bool {
        self.current_refresh_token_of(refresh_token).as_deref() == Some(refresh_token)
    }

    /// Families with a usable refresh token.
    pub fn current_refresh_token_count(&self) -> usize {
        self.shared().read(|i| i.families.current_refresh_count())
    }

    /// Issued by this server, unexpired, not revoked (what `/userinfo` checks).
    pub fn is_access_token_valid(&self, access_token: &str) -> bool {
        self.shared()
            .read(|i| i.families.is_access_valid(access_token, Instant::now()))
    }

    /// When an access token this server issued ends (its issue time plus the
    /// `access_ttl` of that moment), to order tokens by issue time.
    pub fn access_token_expires_at(&self, access_token: &str) -> Option<Instant> {
        self.shared()
            .read(|i| i.families.access_expires_at(access_token))
    }

    /// A Copilot session token this server issued and that has not expired.
    pub fn is_copilot_token_valid(&self, token: &str) -> bool {
        self.shared()
            .read(|i| i.copilot.is_session_valid(token, Instant::now()))
    }

    /// Every `token=` value sent to the revocation endpoint, in order.
    pub fn revoked_tokens(&self) -> Vec<String> {
        self.shared().read(|i| i.revoked_tokens.clone())
    }

    // ----- waiting without sleeping -------------------------------------------

    /// Blocks until `pred(&stats)` holds; woken by every change, no polling.
    /// Fine from plain tests; in async tests prefer
    /// [`wait_until_async`](Self::wait_until_async), which does not block
    /// the test's runtime.
    pub fn wait_until(
        &self,
        timeout: Duration,
        pred: impl FnMut(&Stats) -> bool,
    ) -> Result<Stats, WaitTimeout> {
        self.shared().wait_until(timeout, pred)
    }

    /// Async [`wait_until`](Self::wait_until); works on any tokio runtime.
    pub async fn wait_until_async(
        &self,
        timeout: Duration,
        pred: impl FnMut(&Stats) -> bool,
    ) -> Result<Stats, WaitTimeout> {
        self.shared().wait_until_async(timeout, pred).await
    }

    /// Until at least `n` refresh requests were handled (outcome decided and
    /// counted, so the returned stats are final for them).
    pub fn wait_for_refresh_requests(
        &self,
        n: u64,
        timeout: Duration,
    ) -> Result<Stats, WaitTimeout> {
        self.wait_until(timeout, |s| s.refresh_requests >= n)
    }

    /// Async [`wait_for_refresh_requests`](Self::wait_for_refresh_requests).
    pub async fn wait_for_refresh_requests_async(
        &self,
        n: u64,
        timeout: Duration,
    ) -> Result<Stats, WaitTimeout> {
        self.wait_until_async(timeout, |s| s.refresh_requests >= n)
            .await
    }

    /// Until at least `n` token requests have *arrived* (possibly still being
    /// delayed by a fault).
    pub fn wait_for_token_requests_received(
        &self,
        n: u64,
        timeout: Duration,
    ) -> Result<Stats, WaitTimeout> {
        self.wait_until(timeout, |s| s.token_requests_received >= n)
    }

    /// Until the server is done with every connection that reached it before
    /// this call: each accepted, every byte its peer sent read and handled,
    /// closed, and every token request's outcome decided (also one a fault
    /// still holds in its own task). Call it after killing a client (e.g.
    /// `brokerd` with SIGKILL) and before judging what the server did: a
    /// request the dead process wrote may still sit unread in a socket
    /// buffer, or its connection in the listen backlog, and would otherwise
    /// be processed after the judgement.
    ///
    /// How, without sleeping: a barrier connection of our own queues behind
    /// any connection still waiting in the kernel's (FIFO) accept queue; once
    /// the server has answered it, every earlier connection was accepted and
    /// counted. Then it waits, woken by every change, until
    /// `connections_finished == connections_accepted` and
    /// `token_requests == token_requests_received`. Only meaningful while no
    /// live client keeps a connection open (e.g. a pooled keep-alive one).
    pub fn wait_until_settled(&self, timeout: Duration) -> Result<Stats, WaitTimeout> {
        let deadline = Instant::now() + timeout;
        self.barrier_connection(timeout);
        self.wait_until(deadline.saturating_duration_since(Instant::now()), |s| {
            s.connections_finished == s.connections_accepted
                && s.token_requests == s.token_requests_received
        })
    }

    /// One HTTP exchange on a fresh connection (a path no route serves, so
    /// nothing is counted but the connection), read until the server closes.
    fn barrier_connection(&self, timeout: Duration) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect_timeout(&self.addr(), timeout)
            .expect("fake auth server: barrier connection");
        stream
            .set_read_timeout(Some(timeout))
            .expect("fake auth server: barrier read timeout");
        stream
            .write_all(b"GET /__barrier HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .expect("fake auth server: barrier request");
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .expect("fake auth server: barrier answer");
        assert!(
            answer.starts_with(b"HTTP/1.1 404"),
            "fake auth server: unexpected barrier answer {:?}",
            String::from_utf8_lossy(&answer)
        );
    }

    /// Until at least `n` device polls were handled.
    pub fn wait_for_device_polls(&self, n: u64, timeout: Duration) -> Result<Stats, WaitTimeout> {
        self.wait_until(timeout, |s| s.device_polls >= n)
    }

    /// Async [`wait_for_device_polls`](Self::wait_for_device_polls).
    pub async fn wait_for_device_polls_async(
        &self,
        n: u64,
        timeout: Duration,
    ) -> Result<Stats, WaitTimeout> {
        self.wait_until_async(timeout, |s| s.device_polls >= n)
            .await
    }
}
