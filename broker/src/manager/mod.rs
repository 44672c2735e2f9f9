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
//! * Every change is published as an immutable [`TokenSnapshot`] (without the
//!   refresh token) on a `watch` channel. Subscribers — the token command's
//!   hot path, projection, the systemd status line — read that; the manager
//!   imports none of them.

pub mod errors;
mod forced_refresh;
mod refresh;
pub mod refresh_thread;
pub mod runtime_record;
mod scheduler;
mod snapshot;
mod state;

use crate::clock::{unix_secs, Clock, Now};
use crate::config::RefreshSettings;
use crate::credentials::Credentials;
use crate::oauth::Refresher;
use crate::provider::ProviderSpec;
use crate::store::{PersistedState, Store, StoreError};
pub use errors::{AdoptError, LogoutError, TokenError};
use oauth_broker_proto::{ForcedRefreshStatus, StatusReport};
use runtime_record::{RuntimeRecord, RuntimeRecordFile};
pub use snapshot::{ServedToken, TokenSnapshot};
use state::{Decision, State};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
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
    /// The published snapshot, replaced on every state change; waiters and
    /// subscribers watch it.
    snapshot: watch::Sender<Arc<TokenSnapshot>>,
    store: Arc<Store>,
    /// What failed state writes could not record (beside the socket).
    record: RuntimeRecordFile,
    persist_lock: tokio::sync::Mutex<()>,
    refresher: Arc<dyn Refresher>,
    clock: Arc<dyn Clock>,
    /// Where refreshes run: the daemon's refresh thread (see
    /// [`refresh_thread`]), or the caller's runtime when `None` (unit tests
    /// on tokio's test runtime, whose paused clock must drive them).
    refresh_runtime: Option<tokio::runtime::Handle>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl TokenManager {
    /// Restores the account from `store` (and from `record`, what the
    /// previous broker could not write there) and starts the background
    /// scheduler. Must be called inside a tokio runtime; refreshes run on
    /// `refresh_runtime` when given (the daemon passes its refresh thread's).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        account: String,
        provider: Arc<ProviderSpec>,
        settings: RefreshSettings,
        store: Store,
        persisted: Option<PersistedState>,
        record: RuntimeRecordFile,
        refresher: Arc<dyn Refresher>,
        clock: Arc<dyn Clock>,
        refresh_runtime: Option<tokio::runtime::Handle>,
    ) -> TokenManager {
        let now = clock.read();
        let state = State::restore(persisted, record.load(&account), &settings, now);
        if state.interrupted {
            let wait_ms = state
                .hold_until
                .map(|at| crate::clock::saturating_diff(at, now.wall).as_millis() as u64)
                .unwrap_or(0);
            tracing::warn!(
                wait_ms,
                "the previous broker stopped during a refresh; retrying it once its request has certainly ended (serving the cached token meanwhile)"
            );
        }
        let (snapshot, _) = watch::channel(Arc::new(state.snapshot()));
        let manager = TokenManager {
            inner: Arc::new(Inner {
                account,
                provider,
                settings,
                state: Mutex::new(state),
                snapshot,
                store: Arc::new(store),
                record,
                persist_lock: tokio::sync::Mutex::new(()),
                refresher,
                clock,
                refresh_runtime,
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
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
    pub async fn token(&self, min_valid: Duration) -> Result<Arc<ServedToken>, TokenError> {
        let start = self.inner.lock().generation;
        self.inner
            .wait_for(|st, now| st.decide_token(&self.inner.account, now, min_valid, start))
            .await
    }

    /// A client's token was rejected with 401.
    pub async fn unauthorized(&self, token_id: &str) -> Result<Arc<ServedToken>, TokenError> {
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

    /// The manager's status (projection targets are not its business: the
    /// caller adds theirs); never waits.
    pub fn status(&self) -> StatusReport {
        let inner = &self.inner;
        let now = inner.clock.read();
        let st = inner.lock();
        let creds = st.creds.as_ref();
        StatusReport {
            broker_version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            account: inner.account.clone(),
            provider: inner.provider.preset.clone(),
            endpoints: inner.provider.endpoint_info(),
            state: st.token_state(now),
            // The earlier of the two deadlines (see `clock.rs`), as wall time.
            access_token_expires_at: creds
                .and_then(|c| c.access_token.as_ref().and(c.expiry()))
                .map(|expiry| unix_secs(expiry.wall_time(now))),
            token_id: st.current_token_id(),
            scopes: creds.map(|c| c.scopes.clone()).unwrap_or_default(),
            last_refresh_at: st.last_refresh_at.map(unix_secs),
            next_refresh_at: if st.relogin.is_none() {
                st.next_refresh_at.map(|due| {
                    let at = due.wall_time(now);
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
            projections: Vec::new(),
            config_file: None,
            state_dir: None,
            now_ms: now
                .wall
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            forced_refresh: ForcedRefreshStatus {
                suppressed: st.forced_refreshes.suppressed_count(),
                next_allowed_at: st
                    .forced_refreshes
                    .next_allowed_at(
                        creds.map_or(Duration::ZERO, Credentials::lifetime),
                        st.refresh_count,
                        now.wall,
                    )
                    .map(unix_secs),
            },
            proxies: Vec::new(),
            proxy_keys: Vec::new(),
        }
    }

    /// Adopts new credentials (import or a completed login): persisted first,
    /// then served. Clears any relogin state. Returns the access-token expiry.
    pub async fn adopt(&self, mut creds: Credentials) -> Result<u64, AdoptError> {
        let inner = &self.inner;
        if creds.account_id.is_none() {
            creds.account_id = crate::provider::derive_account_id(&creds);
        }
        // The lifetime counts on boottime from now on (see `clock.rs`).
        creds.anchor_boottime(inner.clock.read());
        let _order = inner.persist_lock.lock().await;
        let new_id = creds.refresh_token_id();
        {
            // An old copy of tokens the broker already rotated (importing the same
            // auth.json twice, say) must not be adopted: spending it would look
            // like reuse and revoke the whole family.
            let st = inner.lock();
            if st.spent.contains(&new_id) {
                return Err(AdoptError::AlreadySpent);
            }
            if let Some(current) = st.creds.as_ref().filter(|c| c.refresh_token_id() == new_id) {
                if let Some(r) = &st.relogin {
                    return Err(AdoptError::AlreadyRefused {
                        account: inner.account.clone(),
                        reason: r.reason.clone(),
                    });
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
        // One writer per token family: another account's broker on this
        // machine holding (or having spent) this token would race ours.
        let store = inner.store.clone();
        let id = new_id.clone();
        if let Ok(Some(holder)) = tokio::task::spawn_blocking(move || store.other_holder(&id)).await
        {
            return Err(AdoptError::HeldElsewhere {
                account: inner.account.clone(),
                holder: holder.to_string(),
                holder_account: holder.account,
            });
        }
        let persisted = {
            let st = inner.lock();
            let mut p = st.persisted(&inner.account);
            p.credentials = Some((&creds).into());
            p.refresh_in_flight = None;
            p.relogin = None;
            p
        };
        inner
            .save(persisted)
            .await
            .map_err(|e| AdoptError::NotPersisted(e.to_string()))?;
        let now = inner.clock.read();
        let expires_at = creds
            .access_token
            .as_ref()
            .and(creds.expires_at)
            .map(unix_secs)
            .unwrap_or(0);
        {
            let mut st = inner.lock();
            st.replace_login(Some(creds));
            st.last_refresh_at = Some(now.wall);
            st.schedule_next(now, &inner.settings);
        }
        inner.publish();
        tracing::info!(account = %inner.account, "new tokens adopted and persisted");
        Ok(expires_at)
    }

    /// Forgets the login: best-effort revocation at the server, then the state
    /// file is deleted. Returns whether the server confirmed the revocation.
    pub async fn logout(&self) -> Result<bool, LogoutError> {
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
        let record = inner.record.clone();
        tokio::task::spawn_blocking(move || {
            record.clear();
            store.delete()
        })
        .await
        .map_err(|e| StoreError::Io {
            what: "cannot delete state",
            path: Default::default(),
            source: std::io::Error::other(e.to_string()),
        })
        .and_then(|r| r)
        .map_err(|e| LogoutError::NotDeleted(e.to_string()))?;
        {
            let mut st = inner.lock();
            st.replace_login(None);
            st.next_refresh_at = None;
        }
        inner.publish();
        tracing::info!(account = %inner.account, revoked, "logged out");
        Ok(revoked)
    }

    /// Every published snapshot, from the current one on (for the systemd
    /// status line, projection, …). Never carries the refresh token.
    pub fn subscribe(&self) -> watch::Receiver<Arc<TokenSnapshot>> {
        self.inner.snapshot.subscribe()
    }

    /// The current snapshot; never waits behind a refresh.
    pub fn snapshot(&self) -> Arc<TokenSnapshot> {
        self.inner.snapshot.borrow().clone()
    }

    /// Stops the scheduler and, within `grace` in all, lets an in-flight
    /// refresh finish and persist its result, then keeps retrying a state
    /// write that is still failing (degraded): a rotated refresh token that
    /// lives only in memory is lost when the process ends. A refresh still
    /// running at the deadline is abandoned; its marker explains the situation
    /// to the next broker, as the runtime record does for a write that never
    /// succeeded.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        let deadline = tokio::time::Instant::now() + grace;
        inner.shutdown.cancel();
        inner.tasks.close();
        if tokio::time::timeout_at(deadline, inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("a refresh was still running at shutdown; the next start will retry it once its request has certainly ended");
        }
        let mut attempt = 0u32;
        while inner.lock().persist_pending {
            attempt += 1;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            tracing::warn!(
                attempt,
                seconds_left = left.as_secs(),
                "stopping: the state with the rotated refresh token is not written yet; retrying until the stop timeout (free disk space or make the state directory writable now)"
            );
            if tokio::time::timeout_at(deadline, refresh::persist_retry(inner))
                .await
                .is_err()
            {
                break;
            }
            if !inner.lock().persist_pending {
                tracing::info!("the state was written at shutdown");
                break;
            }
            let pause = SHUTDOWN_WRITE_RETRY
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            tokio::time::sleep(pause).await;
        }
        if inner.lock().persist_pending {
            tracing::error!(
                record = %inner.record.path().display(),
                "stopping with a rotated refresh token that could not be written: it is lost, and the one on disk is already spent; the next start will say relogin_required (rotation_not_persisted) instead of spending it"
            );
        }
    }
}

/// Pause between state-write attempts while stopping.
const SHUTDOWN_WRITE_RETRY: Duration = Duration::from_millis(500);

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a
        // way that matters more than stopping service would: keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes the current state to waiters and subscribers; called after
    /// every change.
    ///
    /// Sent while the state lock is held, so that two publications can never
    /// overtake each other and leave an older snapshot current.
    pub(crate) fn publish(&self) {
        let st = self.lock();
        self.publish_locked(&st);
    }

    /// [`publish`](Self::publish) for a caller that already holds the state
    /// lock (sending under it keeps snapshots in order).
    pub(crate) fn publish_locked(&self, st: &State) {
        self.snapshot.send_replace(Arc::new(st.snapshot()));
    }

    /// Writes the whole state. On success the runtime record is obsolete and
    /// removed; on failure it records what the state file now lacks (spent
    /// refresh tokens, an in-flight marker), where the disk still allows it.
    pub(crate) async fn save(&self, snapshot: PersistedState) -> Result<(), StoreError> {
        let store = self.store.clone();
        let record = self.record.clone();
        let write = move || {
            let result = store.save(&snapshot);
            match &result {
                Ok(()) => record.clear(),
                Err(_) => {
                    let unsaved = RuntimeRecord {
                        version: 1,
                        account: snapshot.account.clone(),
                        spent_refresh_tokens: snapshot.spent_refresh_tokens.clone(),
                        refresh_in_flight: snapshot.refresh_in_flight.clone(),
                    };
                    if let Err(e) = record.save(&unsaved) {
                        tracing::error!(path = %record.path().display(), error = %e, "cannot write the record of unsaved refreshes either; a restart before the state is written may spend a burned refresh token");
                    }
                }
            }
            result
        };
        // The refresh thread writes itself (see `refresh_thread`); anywhere
        // else a write must not block a runtime worker.
        if self
            .refresh_runtime
            .as_ref()
            .is_some_and(refresh_thread::on)
        {
            return write();
        }
        tokio::task::spawn_blocking(write)
            .await
            .unwrap_or_else(|e| {
                Err(StoreError::Io {
                    what: "cannot write state",
                    path: Default::default(),
                    source: std::io::Error::other(e.to_string()),
                })
            })
    }

    /// Compacts the state journal when it is more than half full; called
    /// after a refresh's answer went out. A failure only means the next saves
    /// keep appending (or compact when the journal is full).
    pub(crate) async fn compact_if_due(&self) {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.compact_if_due()).await {
            Ok(Ok(true)) => tracing::debug!("state journal compacted"),
            Ok(Ok(false)) | Err(_) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot compact the state journal; the next state write tries again")
            }
        }
    }

    /// Runs `decide` until it serves or fails, starting the single-flight refresh
    /// when asked and waiting for state changes in between.
    async fn wait_for(
        self: &Arc<Self>,
        decide: impl Fn(&State, Now) -> Decision,
    ) -> Result<Arc<ServedToken>, TokenError> {
        loop {
            // Subscribe before deciding: a change after the decision is then
            // seen by `changed()`, so no wake-up is lost.
            let mut changes = self.snapshot.subscribe();
            let decision = {
                let mut st = self.lock();
                let now = self.clock.read();
                match decide(&st, now) {
                    Decision::StartRefresh => {
                        refresh::start(self, &mut st, refresh::Trigger::Demand);
                        Decision::Wait
                    }
                    Decision::StartForcedRefresh => {
                        st.record_forced_refresh(now.wall);
                        refresh::start(self, &mut st, refresh::Trigger::Demand);
                        Decision::Wait
                    }
                    Decision::SuppressForcedRefresh(grant) => {
                        st.record_suppressed_forced_refresh(now.wall);
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
                        return Err(TokenError::ShuttingDown);
                    }
                }
                Decision::WaitUntil(at) => {
                    let sleep = crate::clock::saturating_diff(at, self.clock.now());
                    tokio::select! {
                        changed = changes.changed() => if changed.is_err() {
                            return Err(TokenError::ShuttingDown);
                        },
                        _ = tokio::time::sleep(sleep) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
