//! The token manager: the only code that spends the refresh token.
//!
//! State machine: `LoggedOut` → `Valid` ⇄ `Refreshing` → `ReloginRequired`.
//!
//! * **Single flight**: any number of requests that need a refresh cause one call
//!   to the token endpoint; the others wait for its result on a `watch` channel.
//! * The refresh runs in a task of its own (tracked, so shutdown can let it
//!   finish), never inside a connection's task: a client that disconnects must
//!   never abort a refresh whose request may already be at the server.
//! * **Persist before reply**: rotated tokens are written durably before any
//!   waiter sees them. If the write fails they are served from memory, status
//!   says `degraded`, and the write is retried; the burned on-disk refresh token
//!   is never spent again because only the in-memory one is ever used.
//! * An in-flight marker is written before each refresh so that after a crash the
//!   broker can explain an `invalid_grant` as an interrupted refresh.
//! * All persistence goes through `persist_lock`, so writes are ordered and a
//!   refresh result can never overwrite a newer import or login.

pub mod errors;
mod forced_refresh;
mod refresh;
mod scheduler;
mod state;
mod token_id_memo;

use crate::clock::{unix_secs, Clock};
use crate::config::RefreshSettings;
use crate::credentials::Credentials;
use crate::oauth::Refresher;
use crate::projection::ProjectionControl;
use crate::provider::ProviderSpec;
use crate::store::{PersistedState, Store, StoreError};
use oauth_broker_proto::{ErrorCode, ErrorFrame, ForcedRefreshStatus, StatusReport, TokenGrant};
use state::{Decision, State};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Handle to the manager; cheap to clone.
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    account: String,
    provider: Arc<ProviderSpec>,
    settings: RefreshSettings,
    state: Mutex<State>,
    /// Bumped on every state change; waiters and subscribers watch it.
    version: watch::Sender<u64>,
    store: Arc<Store>,
    persist_lock: tokio::sync::Mutex<()>,
    refresher: Arc<dyn Refresher>,
    clock: Arc<dyn Clock>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// The projection targets, attached by the daemon; opaque here (the
    /// manager knows nothing about targets), only reported in `status`.
    projections: OnceLock<Arc<dyn ProjectionControl>>,
}

impl TokenManager {
    /// Restores the account from `store` and starts the background scheduler.
    /// Must be called inside a tokio runtime.
    pub fn start(
        account: String,
        provider: Arc<ProviderSpec>,
        settings: RefreshSettings,
        store: Store,
        persisted: Option<PersistedState>,
        refresher: Arc<dyn Refresher>,
        clock: Arc<dyn Clock>,
    ) -> TokenManager {
        let state = State::restore(persisted, &settings, clock.now());
        if state.interrupted {
            tracing::warn!("the previous broker stopped during a refresh; retrying it now");
        }
        let (version, _) = watch::channel(0);
        let manager = TokenManager {
            inner: Arc::new(Inner {
                account,
                provider,
                settings,
                state: Mutex::new(state),
                version,
                store: Arc::new(store),
                persist_lock: tokio::sync::Mutex::new(()),
                refresher,
                clock,
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                projections: OnceLock::new(),
            }),
        };
        let inner = manager.inner.clone();
        manager.inner.tasks.spawn(scheduler::run(inner));
        manager
    }

    /// The account served.
    pub fn account(&self) -> &str {
        &self.inner.account
    }

    /// A token valid for at least `min_valid` (capped by what a fresh token gives).
    pub async fn token(&self, min_valid: Duration) -> Result<TokenGrant, ErrorFrame> {
        let start = self.inner.lock().generation;
        self.inner
            .wait_for(|st, now| st.decide_token(&self.inner.account, now, min_valid, start))
            .await
    }

    /// A client's token was rejected with 401.
    pub async fn unauthorized(&self, token_id: &str) -> Result<TokenGrant, ErrorFrame> {
        let start = self.inner.lock().generation;
        let result = self
            .inner
            .wait_for(|st, now| st.decide_unauthorized(&self.inner.account, now, token_id, start))
            .await;
        if result.is_ok() {
            tracing::debug!(token_id, "answered an unauthorized report");
        }
        result
    }

    /// Status; never waits.
    pub fn status(&self) -> StatusReport {
        let inner = &self.inner;
        // Before taking the state lock: the targets keep their own.
        let projections = self.projections().map(|p| p.status()).unwrap_or_default();
        let now = inner.clock.now();
        let st = inner.lock();
        let creds = st.creds.as_ref();
        StatusReport {
            broker_version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            account: inner.account.clone(),
            provider: inner.provider.preset.clone(),
            endpoints: inner.provider.endpoint_info(),
            state: st.token_state(now),
            access_token_expires_at: creds
                .and_then(|c| c.access_token.as_ref().and(c.expires_at))
                .map(unix_secs),
            token_id: st.current_token_id(),
            scopes: creds.map(|c| c.scopes.clone()).unwrap_or_default(),
            last_refresh_at: st.last_refresh_at.map(unix_secs),
            next_refresh_at: if st.relogin.is_none() {
                st.next_refresh_at.map(|at| {
                    let at = st.backoff.next_attempt_at().map_or(at, |b| at.max(b));
                    unix_secs(at)
                })
            } else {
                None
            },
            refresh_count: st.refresh_count,
            relogin_required: st.relogin.is_some(),
            relogin_reason: st.relogin.as_ref().map(|r| r.reason.clone()),
            last_error: st.last_error.clone(),
            degraded: st.degraded.clone(),
            account_id: creds.and_then(|c| c.account_id.clone()),
            projections,
            forced_refresh: ForcedRefreshStatus {
                suppressed: st.forced_refreshes.suppressed_count(),
                next_allowed_at: st
                    .forced_refreshes
                    .next_allowed_at(
                        creds.map_or(Duration::ZERO, Credentials::lifetime),
                        st.refresh_count,
                        now,
                    )
                    .map(unix_secs),
            },
        }
    }

    /// Adopts new credentials (import or a completed login): persisted first,
    /// then served. Clears any relogin state. Returns the access-token expiry.
    pub async fn adopt(&self, mut creds: Credentials) -> Result<u64, ErrorFrame> {
        let inner = &self.inner;
        if creds.account_id.is_none() {
            creds.account_id = crate::provider::derive_account_id(&creds);
        }
        let _order = inner.persist_lock.lock().await;
        let new_id = creds.refresh_token_id();
        {
            // An old copy of tokens the broker already rotated (importing the same
            // auth.json twice, say) must not be adopted: spending it would look
            // like reuse and revoke the whole family.
            let st = inner.lock();
            if st.spent.contains(&new_id) {
                return Err(ErrorFrame::new(
                    ErrorCode::BadRequest,
                    "this refresh token was already spent by the broker, which holds a newer one",
                )
                .with_hint(
                    "nothing to import: the broker's login is newer (see `brokerctl status`)",
                ));
            }
            if let Some(current) = st.creds.as_ref().filter(|c| c.refresh_token_id() == new_id) {
                if let Some(r) = &st.relogin {
                    return Err(ErrorFrame::new(
                        ErrorCode::BadRequest,
                        format!(
                            "the provider already refused this refresh token ({})",
                            r.reason
                        ),
                    )
                    .with_hint(errors::relogin_hint(&inner.account)));
                }
                // The broker already holds this very login: nothing changes.
                return Ok(current
                    .access_token
                    .as_ref()
                    .and(current.expires_at)
                    .map(unix_secs)
                    .unwrap_or(0));
            }
        }
        let snapshot = {
            let st = inner.lock();
            let mut p = st.persisted(&inner.account);
            p.credentials = Some((&creds).into());
            p.refresh_in_flight = None;
            p.relogin = None;
            p
        };
        inner.save(snapshot).await.map_err(|e| {
            ErrorFrame::new(
                ErrorCode::Internal,
                format!("the tokens were not adopted: {e}"),
            )
            .with_hint("fix the state directory problem above and try again")
        })?;
        let now = inner.clock.now();
        let expires_at = creds
            .access_token
            .as_ref()
            .and(creds.expires_at)
            .map(unix_secs)
            .unwrap_or(0);
        {
            let mut st = inner.lock();
            st.replace_login(Some(creds));
            st.last_refresh_at = Some(now);
            st.schedule_next(now, &inner.settings);
        }
        inner.bump();
        tracing::info!(account = %inner.account, "new tokens adopted and persisted");
        Ok(expires_at)
    }

    /// Forgets the login: best-effort revocation at the server, then the state
    /// file is deleted. Returns whether the server confirmed the revocation.
    pub async fn logout(&self) -> Result<bool, ErrorFrame> {
        let inner = &self.inner;
        let _order = inner.persist_lock.lock().await;
        let creds = inner.lock().creds.clone();
        let revoked = match &creds {
            Some(c) => tokio::time::timeout(Duration::from_secs(15), inner.refresher.revoke(c))
                .await
                .unwrap_or(false),
            None => false,
        };
        let store = inner.store.clone();
        tokio::task::spawn_blocking(move || store.delete())
            .await
            .map_err(|e| StoreError::Io {
                what: "cannot delete state",
                path: Default::default(),
                source: std::io::Error::other(e.to_string()),
            })
            .and_then(|r| r)
            .map_err(|e| ErrorFrame::new(ErrorCode::Internal, format!("logout failed: {e}")))?;
        {
            let mut st = inner.lock();
            st.replace_login(None);
            st.next_refresh_at = None;
        }
        inner.bump();
        tracing::info!(account = %inner.account, revoked, "logged out");
        Ok(revoked)
    }

    /// Notified on every state change (for `STATUS=` lines and projections).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.version.subscribe()
    }

    /// Attaches the projection targets (once, by the daemon), so that `status`
    /// reports them and requests can reach them.
    pub fn attach_projections(&self, projections: Arc<dyn ProjectionControl>) {
        if self.inner.projections.set(projections).is_err() {
            tracing::warn!("projection targets were attached twice; keeping the first");
        }
    }

    /// The attached projection targets, if any.
    pub fn projections(&self) -> Option<Arc<dyn ProjectionControl>> {
        self.inner.projections.get().cloned()
    }

    /// The current credentials (for projection targets inside the broker).
    pub fn current_credentials(&self) -> Option<Credentials> {
        self.inner.lock().creds.clone()
    }

    /// Stops the scheduler and waits up to `grace` for an in-flight refresh to
    /// finish and persist its result. A refresh still running after that is
    /// abandoned; its on-disk marker explains the situation to the next broker.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.shutdown.cancel();
        inner.tasks.close();
        if tokio::time::timeout(grace, inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("a refresh was still running at shutdown; the next start will retry it");
        }
        // Degraded: the rotated refresh token lives only in memory and the
        // next write retry may be minutes away. One last attempt now, or the
        // next broker would start from the burned token on disk.
        if inner.lock().persist_pending {
            let last_write = refresh::persist_retry(inner);
            if tokio::time::timeout(grace, last_write).await.is_err() {
                tracing::warn!("the state could not be written at shutdown");
            }
            if inner.lock().persist_pending {
                tracing::error!("stopping with refreshed tokens that are not persisted; the next start will need a relogin unless the state directory is fixed first");
            }
        }
    }
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a
        // way that matters more than stopping service would: keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn bump(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub(crate) async fn save(&self, snapshot: PersistedState) -> Result<(), StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.save(&snapshot))
            .await
            .unwrap_or_else(|e| {
                Err(StoreError::Io {
                    what: "cannot write state",
                    path: Default::default(),
                    source: std::io::Error::other(e.to_string()),
                })
            })
    }

    /// Runs `decide` until it serves or fails, starting the single-flight refresh
    /// when asked and waiting for state changes in between.
    async fn wait_for(
        self: &Arc<Self>,
        decide: impl Fn(&State, SystemTime) -> Decision,
    ) -> Result<TokenGrant, ErrorFrame> {
        loop {
            // Subscribe before deciding: a change after the decision is then
            // seen by `changed()`, so no wake-up is lost.
            let mut changes = self.version.subscribe();
            let decision = {
                let mut st = self.lock();
                let now = self.clock.now();
                match decide(&st, now) {
                    Decision::StartRefresh => {
                        refresh::start(self, &mut st, "demand");
                        Decision::Wait
                    }
                    Decision::StartForcedRefresh => {
                        st.record_forced_refresh(now);
                        refresh::start(self, &mut st, "unauthorized");
                        Decision::Wait
                    }
                    Decision::SuppressForcedRefresh(grant) => {
                        st.record_suppressed_forced_refresh(now);
                        Decision::Serve(grant)
                    }
                    other => other,
                }
            };
            match decision {
                Decision::Serve(grant) => return Ok(grant),
                Decision::Fail(err) => return Err(err),
                Decision::Wait
                | Decision::StartRefresh
                | Decision::StartForcedRefresh
                | Decision::SuppressForcedRefresh(_) => {
                    if changes.changed().await.is_err() {
                        return Err(ErrorFrame::new(
                            ErrorCode::Internal,
                            "the broker is shutting down",
                        )
                        .with_hint("retry in a moment"));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
