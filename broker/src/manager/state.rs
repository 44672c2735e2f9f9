//! The manager's in-memory state and the pure decisions taken on it.
//!
//! Everything here runs under a short `std::sync::Mutex` critical section and never
//! awaits: `Status` and reads of a still-valid cached token never wait behind a
//! refresh.

use crate::backoff::Backoff;
use crate::clock::{saturating_diff, unix_secs, Deadline, Now};
use crate::config::RefreshSettings;
use crate::credentials::Credentials;
use crate::manager::errors::{self, TokenError};
use crate::manager::snapshot::{ServedToken, TokenSnapshot};
use crate::store::{InFlightMarker, PersistedState, ReloginRecord};
use oauth_broker_proto::{LastError, TokenState};
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `min_valid` is capped at `lifetime / MIN_VALID_CAP_DIVISOR` (20 %), which is
/// what the proactive refresh (at 75–80 % of the lifetime) always leaves.
pub(crate) const MIN_VALID_CAP_DIVISOR: u32 = 5;

/// What a token request should do next.
pub(crate) enum Decision {
    /// Answer with this token.
    Serve(Arc<ServedToken>),
    /// Answer with this error.
    Fail(TokenError),
    /// A refresh is in flight: wait for the state to change.
    Wait,
    /// No refresh is in flight and one is needed: start it, then wait.
    StartRefresh,
}

/// What the background scheduler should do next.
pub(crate) enum Next {
    /// Refresh now.
    Refresh,
    /// Retry the failed state write now.
    Persist,
    /// Nothing for this long (judged on both clocks; see the scheduler).
    After(Duration),
    /// Nothing until the state changes.
    Idle,
}

/// The mutable state of one account.
pub(crate) struct State {
    /// Replace only through [`State::set_creds`], which keeps `served` in step.
    pub creds: Option<Credentials>,
    /// The served form of `creds`' access token, built once per grant.
    pub served: Option<Arc<ServedToken>>,
    /// Bumped whenever `creds` is replaced; a refresh result for an older
    /// generation (the login was replaced meanwhile) is discarded.
    pub generation: u64,
    pub relogin: Option<ReloginRecord>,
    pub refreshing: bool,
    /// The last attempt with the current refresh token may have reached the
    /// server without us learning the answer (crash or lost connection).
    pub interrupted: bool,
    pub marker: Option<InFlightMarker>,
    pub backoff: Backoff,
    pub last_error: Option<LastError>,
    pub last_refresh_at: Option<SystemTime>,
    pub refresh_count: u64,
    pub degraded: Option<String>,
    pub persist_pending: bool,
    pub persist_backoff: Backoff,
    /// The proactive refresh, due when either clock reaches it.
    pub next_refresh_at: Option<Deadline>,
    /// Fingerprints of recently spent refresh tokens (see `PersistedState`).
    pub spent: std::collections::VecDeque<String>,
}

/// How many spent refresh-token fingerprints are remembered.
const SPENT_MEMORY: usize = 32;

impl State {
    /// State restored from disk (or empty).
    pub fn restore(
        persisted: Option<PersistedState>,
        settings: &RefreshSettings,
        now: Now,
    ) -> State {
        let backoff = Backoff::new(
            Duration::from_millis(settings.backoff_initial_ms.max(1)),
            Duration::from_secs(settings.backoff_max_secs.max(1)),
        );
        let mut state = State {
            creds: None,
            served: None,
            generation: 0,
            relogin: None,
            refreshing: false,
            interrupted: false,
            marker: None,
            persist_backoff: backoff.clone(),
            backoff,
            last_error: None,
            last_refresh_at: None,
            refresh_count: 0,
            degraded: None,
            persist_pending: false,
            next_refresh_at: None,
            spent: Default::default(),
        };
        if let Some(p) = persisted {
            state.set_creds(p.credentials());
            state.relogin = p.relogin.clone();
            state.refresh_count = p.refresh_count;
            state.last_refresh_at = p.last_refresh_time();
            state.spent = p.spent_refresh_tokens.iter().cloned().collect();
            if let Some(marker) = p.refresh_in_flight {
                // A refresh was in flight when the previous broker stopped: the
                // server may have rotated the token. Retry promptly once (servers
                // with a reuse grace period accept it) and, if refused, say why.
                state.interrupted = true;
                state.marker = Some(marker);
                state.next_refresh_at = Some(Deadline::at(now));
            }
        }
        if state.next_refresh_at.is_none() {
            state.schedule_next(now, settings);
        }
        state
    }

    /// Installs a new login (or none, for logout) after it was persisted: a new
    /// generation, so that a refresh still running for the old login is
    /// discarded, and none of the old login's failures carried over.
    pub fn replace_login(&mut self, creds: Option<Credentials>) {
        self.set_creds(creds);
        self.generation += 1;
        self.relogin = None;
        self.interrupted = false;
        self.marker = None;
        self.backoff.reset();
        self.last_error = None;
        self.degraded = None;
        self.persist_pending = false;
        self.persist_backoff.reset();
    }

    /// Replaces the credentials and builds their served form (the token
    /// answer frame included) once, here, instead of once per request.
    pub fn set_creds(&mut self, creds: Option<Credentials>) {
        self.served = creds.as_ref().and_then(ServedToken::new).map(Arc::new);
        self.creds = creds;
    }

    /// What subscribers see of this state (never the refresh token).
    pub fn snapshot(&self) -> TokenSnapshot {
        let creds = self.creds.as_ref();
        TokenSnapshot {
            logged_in: creds.is_some(),
            refreshing: self.refreshing,
            relogin: self.relogin.clone(),
            token: self.served.clone(),
            account_id: creds.and_then(|c| c.account_id.clone()),
            scopes: creds.map(|c| c.scopes.clone()).unwrap_or_default(),
            refresh_token_id: match &self.served {
                Some(served) => Some(served.refresh_token_id.clone()),
                None => creds.map(Credentials::refresh_token_id),
            },
            refresh_count: self.refresh_count,
            last_error: self.last_error.clone(),
            degraded: self.degraded.clone(),
        }
    }

    /// Plans the proactive refresh: at 75–80 % of the lifetime (random, so that
    /// several brokers do not refresh in lockstep), never later than
    /// `expires_at - skew`, and no later than a provider's own hint. Counted
    /// from when the token was received on both clocks: the earlier wins.
    pub fn schedule_next(&mut self, now: Now, settings: &RefreshSettings) {
        self.next_refresh_at = self.creds.as_ref().map(|c| {
            let (Some(_), Some(_)) = (&c.access_token, c.expires_at) else {
                return Deadline::at(now);
            };
            let lifetime = c.lifetime();
            if lifetime.is_zero() {
                return Deadline::at(now);
            }
            let fraction = rand::rng().random_range(0.75..=0.80);
            let skew = Duration::from_secs(settings.skew_secs).min(lifetime / 4);
            let mut after = lifetime.mul_f64(fraction).min(lifetime - skew);
            if let Some(hint) = c.refresh_hint_at {
                after = after.min(saturating_diff(hint, c.obtained_at));
            }
            Deadline::after(c.obtained_at, c.obtained_boot, after)
        });
    }

    /// The persisted form of the current state.
    pub fn persisted(&self, account: &str) -> PersistedState {
        PersistedState {
            version: crate::store::STATE_VERSION,
            account: account.to_string(),
            credentials: self.creds.as_ref().map(Into::into),
            refresh_in_flight: self.marker.clone(),
            relogin: self.relogin.clone(),
            refresh_count: self.refresh_count,
            last_refresh_at: self.last_refresh_at.map(unix_secs),
            spent_refresh_tokens: self.spent.iter().cloned().collect(),
        }
    }

    /// Remembers that the refresh token with this fingerprint was spent.
    pub fn record_spent(&mut self, refresh_token_id: String) {
        if self.spent.contains(&refresh_token_id) {
            return;
        }
        if self.spent.len() >= SPENT_MEMORY {
            self.spent.pop_front();
        }
        self.spent.push_back(refresh_token_id);
    }

    /// The login state for `status`.
    pub fn token_state(&self, now: Now) -> TokenState {
        if self.relogin.is_some() {
            TokenState::ReloginRequired
        } else if self.creds.is_none() {
            TokenState::LoggedOut
        } else if self.refreshing {
            TokenState::Refreshing
        } else if self.creds.as_ref().and_then(|c| c.remaining(now)).is_some() {
            TokenState::Valid
        } else {
            TokenState::Expired
        }
    }

    /// Decides a `Token { min_valid }` request. `start_generation` is the
    /// generation when the request arrived: a token obtained after that is fresh,
    /// and is served even if it cannot satisfy `min_valid` (no refresh loop).
    pub fn decide_token(
        &self,
        account: &str,
        now: Now,
        min_valid: Duration,
        start_generation: u64,
    ) -> Decision {
        if let Some(r) = &self.relogin {
            return Decision::Fail(errors::relogin_required(account, &r.reason, &r.message));
        }
        let Some(creds) = &self.creds else {
            return Decision::Fail(errors::not_logged_in(account));
        };
        let remaining = creds.remaining(now);
        if let Some(served) = self.served.as_ref().filter(|_| remaining.is_some()) {
            // A fresh token (obtained after the request arrived) is served even
            // if it cannot satisfy `min_valid`: no refresh loop.
            if served.satisfies(now, min_valid) || self.generation > start_generation {
                return Decision::Serve(served.clone());
            }
        }
        if self.refreshing {
            return Decision::Wait;
        }
        if self.backoff.is_waiting(now.wall) {
            return match remaining {
                Some(_) => Decision::Serve(self.grant(creds)),
                None => Decision::Fail(self.unavailable(now.wall)),
            };
        }
        if self.generation > start_generation && remaining.is_none() {
            // A refresh for this request already ran and did not produce a usable
            // token (e.g. the server issues tokens that are already expired).
            return Decision::Fail(self.unavailable(now.wall));
        }
        Decision::StartRefresh
    }

    /// Decides an `Unauthorized { token_id }` report: the reported token is the
    /// current one → one coalesced forced refresh; otherwise serve the newer one.
    pub fn decide_unauthorized(
        &self,
        account: &str,
        now: Now,
        token_id: &str,
        start_generation: u64,
    ) -> Decision {
        if let Some(r) = &self.relogin {
            return Decision::Fail(errors::relogin_required(account, &r.reason, &r.message));
        }
        let Some(creds) = &self.creds else {
            return Decision::Fail(errors::not_logged_in(account));
        };
        let current = self.current_token_id();
        let valid = creds.remaining(now).is_some();
        if valid && (current.as_deref() != Some(token_id) || self.generation > start_generation) {
            return Decision::Serve(self.grant(creds));
        }
        if self.refreshing {
            return Decision::Wait;
        }
        if self.backoff.is_waiting(now.wall) || self.generation > start_generation {
            return Decision::Fail(self.unavailable(now.wall));
        }
        Decision::StartRefresh
    }

    /// `upstream_unavailable` with the time until the next attempt.
    pub fn unavailable(&self, now: SystemTime) -> TokenError {
        let retry_after = self
            .backoff
            .next_attempt_at()
            .map(|at| saturating_diff(at, now))
            .unwrap_or(Duration::from_secs(1));
        let (message, hint) = match &self.last_error {
            Some(e) => (
                format!(
                    "no valid access token and the token endpoint is failing: {}",
                    e.message
                ),
                e.hint.clone(),
            ),
            None => (
                "no valid access token and the token endpoint is failing".to_string(),
                None,
            ),
        };
        TokenError::Unavailable {
            message,
            hint,
            retry_after,
        }
    }

    /// What the scheduler should do at `now`.
    pub fn next(&self, now: Now) -> Next {
        let mut earliest: Option<Duration> = None;
        if self.persist_pending {
            match self.persist_backoff.next_attempt_at() {
                Some(at) if at > now.wall => earliest = Some(saturating_diff(at, now.wall)),
                _ => return Next::Persist,
            }
        }
        if self.creds.is_some() && self.relogin.is_none() && !self.refreshing {
            if let Some(due) = self.next_refresh_at {
                let mut wait = due.left(now);
                if let Some(retry) = self.backoff.next_attempt_at() {
                    wait = wait.max(saturating_diff(retry, now.wall));
                }
                if wait.is_zero() {
                    return Next::Refresh;
                }
                earliest = Some(earliest.map_or(wait, |e| e.min(wait)));
            }
        }
        earliest.map_or(Next::Idle, Next::After)
    }
}

impl State {
    /// The served form of the current token, `creds` being `self.creds` (with
    /// an access token).
    fn grant(&self, creds: &Credentials) -> Arc<ServedToken> {
        self.served.clone().unwrap_or_else(|| {
            Arc::new(ServedToken::new(creds).expect("grant() is only called with an access token"))
        })
    }

    /// The current access token's fingerprint (computed once per token).
    pub fn current_token_id(&self) -> Option<String> {
        self.served.as_ref().map(|s| s.token_id().to_string())
    }
}
