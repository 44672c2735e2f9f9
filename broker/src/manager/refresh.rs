//! One refresh: mark on disk, call the token endpoint, persist, publish.

use super::errors::{relogin_message, REFRESH_INTERRUPTED};
use super::state::State;
use super::Inner;
use crate::clock::{unix_secs, Now};
use crate::credentials::Credentials;
use crate::oauth::{ErrorClass, RefreshError};
use crate::store::{InFlightMarker, ReloginRecord};
use oauth_broker_proto::LastError;
use std::sync::Arc;
use std::time::Duration;

/// Starts the single-flight refresh task. The caller holds the state lock and has
/// checked that no refresh is running.
pub(super) fn start(inner: &Arc<Inner>, st: &mut State, trigger: Trigger) {
    debug_assert!(!st.refreshing);
    st.refreshing = true;
    // Subscribers (the systemd status line, `status` over the snapshot) see
    // the refresh start, not only its end.
    inner.publish_locked(st);
    let generation = st.generation;
    tracing::debug!(?trigger, "starting refresh");
    // Tracked but never cancelled: the request may already be at the server.
    let task = run(inner.clone(), generation, trigger);
    match &inner.refresh_runtime {
        Some(runtime) => inner.tasks.spawn_on(task, runtime),
        None => inner.tasks.spawn(task),
    };
}

/// Why a refresh starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
    /// A client waits for it.
    Demand,
    /// The background schedule (before expiry): nobody needs it yet, so it is
    /// dropped if its marker cannot be written.
    Scheduled,
}

/// Clears `refreshing` if the refresh task unwinds, so that a bug (or a panic
/// on absurd server input) can never leave every waiter hanging and the
/// scheduler idle.
struct ClearOnPanic<'a>(&'a Arc<Inner>);

impl Drop for ClearOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().refreshing = false;
            self.0.publish();
        }
    }
}

async fn run(inner: Arc<Inner>, generation: u64, trigger: Trigger) {
    let _guard = ClearOnPanic(&inner);
    let creds = {
        let st = inner.lock();
        if st.generation != generation {
            None
        } else {
            st.creds.clone()
        }
    };
    let Some(creds) = creds else {
        inner.lock().refreshing = false;
        inner.publish();
        return;
    };
    let Some(marked) = mark_in_flight(&inner, generation, &creds).await else {
        return;
    };
    if !marked && trigger == Trigger::Scheduled && still_valid(&inner, &creds) {
        // Never spend a refresh token whose successor could not be persisted
        // when no client needs it: serve the still-valid token and retry the
        // write; a client that runs out of token refreshes on demand.
        tracing::warn!("not refreshing ahead of expiry while the state cannot be written; serving the still-valid token");
        {
            let mut st = inner.lock();
            st.refreshing = false;
            st.marker = None;
        }
        inner.publish();
        return;
    }
    let mut result = inner.refresher.refresh(&creds).await;
    if let Err(e) = &result {
        if e.is_ambiguous() {
            // The request may have reached the server. Retry at once with the same
            // token: servers with a reuse grace period accept it, and otherwise the
            // refusal is explained as an interrupted refresh. The marker is
            // renewed first: its deadline must cover this second request too.
            tracing::warn!(reason = %e.reason, "refresh outcome unknown; retrying once at once");
            inner.lock().interrupted = true;
            if mark_in_flight(&inner, generation, &creds).await.is_none() {
                return;
            }
            result = inner.refresher.refresh(&creds).await;
        }
    }
    if let Ok(fresh) = &mut result {
        // At once, before waiting for the persist lock: the lifetime counts
        // on boottime from receipt (see `clock.rs`).
        fresh.anchor_boottime(inner.clock.read());
    }
    apply(&inner, generation, result).await;
}

/// Added to the HTTP timeout for a marker's deadline.
const MARKER_MARGIN: Duration = Duration::from_millis(100);

/// Whether `creds` (the ones being refreshed) still hold a valid access token.
fn still_valid(inner: &Arc<Inner>, creds: &Credentials) -> bool {
    creds.access_token.is_some() && creds.remaining(inner.clock.read()).is_some()
}

/// Writes the in-flight marker before the request leaves. Returns whether it
/// reached the disk (if not, the runtime record beside the socket holds it),
/// or `None` if the login was replaced meanwhile (the refresh is then dropped).
async fn mark_in_flight(inner: &Arc<Inner>, generation: u64, creds: &Credentials) -> Option<bool> {
    let _order = inner.persist_lock.lock().await;
    let snapshot = {
        let mut st = inner.lock();
        if st.generation != generation {
            st.refreshing = false;
            drop(st);
            inner.publish();
            return None;
        }
        let now = inner.clock.now();
        // The HTTP timeout bounds the whole request, connecting included; a
        // little margin for the time until it is actually sent.
        let deadline = now + inner.settings.http_timeout() + MARKER_MARGIN;
        st.marker = Some(InFlightMarker {
            started_at: unix_secs(now),
            refresh_token_id: creds.refresh_token_id(),
            answer_deadline_ms: deadline
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_millis() as u64),
        });
        st.persisted(&inner.account)
    };
    match inner.save(snapshot).await {
        // The whole current state is on disk again: nothing is pending.
        Ok(()) => {
            persisted_again(inner);
            Some(true)
        }
        Err(e) => {
            // A client waiting for this refresh still gets it: its result is
            // kept in memory and the write retried like any failed write.
            tracing::warn!(error = %e, "cannot write the in-flight marker");
            let now = inner.clock.now();
            let mut st = inner.lock();
            st.degraded = Some(format!("cannot write state: {e}"));
            st.persist_pending = true;
            st.persist_backoff.fail(now, None);
            inner.publish_locked(&st);
            Some(false)
        }
    }
}

async fn apply(inner: &Arc<Inner>, generation: u64, result: Result<Credentials, RefreshError>) {
    let _order = inner.persist_lock.lock().await;
    let now = inner.clock.read();
    let current = {
        let mut st = inner.lock();
        if st.generation != generation {
            // A login, import or logout replaced the credentials meanwhile.
            st.refreshing = false;
            None
        } else {
            let spent = st.creds.as_ref().map(Credentials::refresh_token_id);
            Some((st.persisted(&inner.account), spent))
        }
    };
    let Some((mut snapshot, spent_id)) = current else {
        inner.publish();
        tracing::info!("discarding a refresh result for replaced credentials");
        return;
    };
    match result {
        Ok(mut creds) => {
            if creds.account_id.is_none() {
                creds.account_id = crate::provider::derive_account_id(&creds);
            }
            // Persist before reply: the new state is written while the old one is
            // still what waiters see.
            if let Some(spent_id) = spent_id.filter(|id| *id != creds.refresh_token_id()) {
                if !snapshot.spent_refresh_tokens.contains(&spent_id) {
                    snapshot.spent_refresh_tokens.push(spent_id);
                }
            }
            snapshot.credentials = Some((&creds).into());
            snapshot.refresh_in_flight = None;
            snapshot.refresh_count += 1;
            snapshot.last_refresh_at = Some(unix_secs(now.wall));
            let saved = inner.save(snapshot).await;
            let written = saved.is_ok();
            succeed(inner, creds, saved, now);
            if written {
                // The answer is out: the rare compaction costs nobody a wait.
                inner.compact_if_due().await;
            }
        }
        Err(e) => {
            let snapshot = fail(inner, &e, now.wall);
            match inner.save(snapshot).await {
                Ok(()) => persisted_again(inner),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot record the refresh failure on disk");
                    let mut st = inner.lock();
                    st.degraded = Some(format!("cannot write state: {err}"));
                    st.persist_pending = true;
                    st.persist_backoff.fail(now.wall, None);
                }
            }
            inner.publish();
        }
    }
}

/// Publishes refreshed credentials after the write was attempted.
fn succeed(
    inner: &Arc<Inner>,
    creds: Credentials,
    saved: Result<(), crate::store::StoreError>,
    now: Now,
) {
    let token_id = creds.token_id().unwrap_or_default();
    // A token that is dead on arrival (a provider answering `expires_in: 0`, or
    // this machine's clock far ahead of the server's) would make the next
    // refresh due at once, forever. Keep the rotated tokens, but pace the next
    // attempt with the backoff and say why.
    let dead_on_arrival = creds.remaining(now).is_none();
    let mut st = inner.lock();
    let spent = st
        .creds
        .as_ref()
        .filter(|old| !old.same_refresh_token(&creds))
        .map(Credentials::refresh_token_id);
    let rotated = spent.is_some();
    if let Some(spent) = spent {
        st.record_spent(spent);
    }
    st.set_creds(Some(creds));
    st.generation += 1;
    st.refreshing = false;
    st.interrupted = false;
    st.marker = None;
    st.hold_until = None;
    st.refresh_count += 1;
    st.last_refresh_at = Some(now.wall);
    if dead_on_arrival {
        let delay = st.backoff.fail(now.wall, None);
        tracing::warn!(
            retry_in_ms = delay.as_millis() as u64,
            "the provider issued an access token that is already expired"
        );
        st.last_error = Some(LastError {
            code: "token_already_expired".to_string(),
            message: "the provider issued an access token that is already expired".to_string(),
            hint: Some(
                "check this machine's clock (timedatectl); the broker retries with backoff"
                    .to_string(),
            ),
            at: unix_secs(now.wall),
        });
    } else {
        st.backoff.reset();
        st.last_error = None;
    }
    match saved {
        Ok(()) => {
            st.degraded = None;
            st.persist_pending = false;
            st.persist_backoff.reset();
        }
        Err(e) => {
            tracing::error!(error = %e, "refreshed tokens could not be persisted; serving them from memory and retrying the write");
            st.degraded = Some(format!("refreshed tokens are not persisted: {e}"));
            st.persist_pending = true;
            st.persist_backoff.fail(now.wall, None);
        }
    }
    st.schedule_next(now, &inner.settings);
    drop(st);
    inner.publish();
    tracing::info!(token_id, rotated, "refreshed access token");
}

/// Records a failed refresh; returns the state to persist.
fn fail(
    inner: &Arc<Inner>,
    e: &RefreshError,
    now: std::time::SystemTime,
) -> crate::store::PersistedState {
    let mut st = inner.lock();
    let hint;
    match e.class {
        ErrorClass::Relogin => {
            let reason = if st.interrupted {
                REFRESH_INTERRUPTED.to_string()
            } else {
                e.reason.clone()
            };
            let message = relogin_message(&reason, &e.message);
            tracing::error!(reason, provider_reason = %e.reason, "the refresh token was refused; relogin required");
            hint = Some(super::errors::relogin_hint(&inner.account));
            st.relogin = Some(ReloginRecord { reason, message });
            st.marker = None;
            st.interrupted = false;
            st.hold_until = None;
        }
        ErrorClass::Configuration => {
            let delay = st.backoff.fail_slow(now);
            tracing::error!(reason = %e.reason, error = %e.message, retry_in_secs = delay.as_secs(), "refresh failed: configuration problem");
            hint = e.hint.clone().or_else(|| {
                Some(format!(
                    "check the provider settings in {} (client_id, endpoints), then restart brokerd",
                    inner.provider.config_source
                ))
            });
            // The server refused before spending the token. An earlier attempt
            // whose outcome is unknown may still have spent it: keep that on
            // record so a later refusal is explained as an interrupted refresh.
            if !st.interrupted {
                st.marker = None;
            }
        }
        ErrorClass::Transient { ambiguous } => {
            let delay = st.backoff.fail(now, e.retry_after);
            tracing::warn!(reason = %e.reason, error = %e.message, retry_in_ms = delay.as_millis() as u64, "refresh failed; will retry");
            hint = None;
            // A non-ambiguous failure proves only that *this* attempt was not
            // processed; an earlier interrupted one (crash, lost answer) may
            // still have rotated the token, so `interrupted` stays until a
            // success or a terminal answer.
            if !ambiguous && !st.interrupted {
                st.marker = None;
            }
        }
    }
    st.last_error = Some(LastError {
        code: e.reason.clone(),
        message: e.message.clone(),
        hint,
        at: unix_secs(now),
    });
    st.refreshing = false;
    st.persisted(&inner.account)
}

/// Retries a failed state write (degraded mode).
pub(super) async fn persist_retry(inner: &Arc<Inner>) {
    let _order = inner.persist_lock.lock().await;
    let snapshot = inner.lock().persisted(&inner.account);
    let result = inner.save(snapshot).await;
    let now = inner.clock.now();
    let mut st = inner.lock();
    match result {
        Ok(()) => {
            tracing::info!("state persisted again; leaving degraded mode");
            st.persist_pending = false;
            st.degraded = None;
            st.persist_backoff.reset();
        }
        Err(e) => {
            let delay = st.persist_backoff.fail(now, None);
            tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "state write still failing");
            st.degraded = Some(format!("refreshed tokens are not persisted: {e}"));
        }
    }
    drop(st);
    inner.publish();
}

/// Records that a write of the complete current state succeeded: whatever an
/// earlier failed write left pending is on disk now, so degraded mode ends.
fn persisted_again(inner: &Arc<Inner>) {
    let mut st = inner.lock();
    if st.degraded.is_some() || st.persist_pending {
        tracing::info!("state persisted again; leaving degraded mode");
    }
    st.degraded = None;
    st.persist_pending = false;
    st.persist_backoff.reset();
}
