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
use crate::manager::forced_refresh::ForcedRefreshes;
use crate::manager::runtime_record::RuntimeRecord;
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
    /// A 401 report about the current, still valid token: record the forced
    /// refresh (see `forced_refresh`), start it, then wait.
    StartForcedRefresh,
    /// A 401 report about a token a forced refresh just produced: answer with
    /// this (current) token instead of refreshing again, and count it.
    SuppressForcedRefresh(Arc<ServedToken>),
    /// A refresh is needed but the token must not be spent before this time
    /// (the previous broker's request may still be at the server): wait
    /// until then, or for a change.
    WaitUntil(SystemTime),
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
    /// Bounds on refreshes forced by 401 reports.
    pub forced_refreshes: ForcedRefreshes,
    /// The previous broker stopped during a refresh whose request may still be
    /// held by the server until this time: spending the same refresh token
    /// before then would be processed as a reuse (and a strict server revokes
    /// the whole family), so the broker serves its cached token meanwhile.
    pub hold_until: Option<SystemTime>,
}

/// Longest hold after a crash mid-refresh, whatever the marker says (a wall
/// clock stepped back must not stall the broker): the longest HTTP timeout
/// the config allows.
const MAX_HOLD: Duration = Duration::from_secs(600);

/// How many spent refresh-token fingerprints are remembered.
const SPENT_MEMORY: usize = 32;

impl State {
    /// State restored from disk (or empty).
    pub fn restore(
        persisted: Option<PersistedState>,
        record: Option<RuntimeRecord>,
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
            forced_refreshes: ForcedRefreshes::new(Duration::from_secs(
                settings.forced_refresh_floor_secs,
            )),
            hold_until: None,
        };
        if let Some(p) = persisted {
            state.set_creds(p.credentials());
            state.relogin = p.relogin.clone();
            state.refresh_count = p.refresh_count;
            state.last_refresh_at = p.last_refresh_time();
            state.spent = p.spent_refresh_tokens.iter().cloned().collect();
            if let Some(marker) = p.refresh_in_flight {
                state.interrupt(marker, settings, now);
            }
        }
        if let Some(record) = record {
            state.apply_runtime_record(record, settings, now);
        }
        if state.next_refresh_at.is_none() {
            state.schedule_next(now, settings);
        }
        state
    }

    /// A refresh was in flight when the previous broker stopped: the server
    /// may have rotated the token, or may still hold the request. Retry once
    /// (servers with a reuse grace period accept it; a refusal is then
    /// explained as an interrupted refresh) — but only after the old request
    /// must have ended, or the server would process it as a reuse.
    fn interrupt(&mut self, marker: InFlightMarker, settings: &RefreshSettings, now: Now) {
        let deadline = match marker.answer_deadline_ms {
            Some(ms) => SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
            // Older markers: whole seconds, rounded up, plus this config's timeout.
            None => {
                SystemTime::UNIX_EPOCH
                    + Duration::from_secs(marker.started_at.saturating_add(1))
                    + settings.http_timeout()
            }
        };
        // The marker's deadline is a wall-clock time (it must survive the
        // restart); the wait it leaves is counted on both clocks from now.
        let hold = deadline.min(now.wall + MAX_HOLD);
        self.interrupted = true;
        self.marker = Some(marker);
        self.hold_until = (hold > now.wall).then_some(hold);
        self.next_refresh_at = Some(Deadline::after(
            now.wall,
            Some(now.boot),
            saturating_diff(hold, now.wall),
        ));
    }

    /// What the previous broker could not write into the state file (see
    /// `runtime_record`). Its refresh token, if the record says it was spent,
    /// is never sent again: `rotation_not_persisted`. The state file is
    /// brought up to date as soon as the disk allows.
    fn apply_runtime_record(
        &mut self,
        record: RuntimeRecord,
        settings: &RefreshSettings,
        now: Now,
    ) {
        let Some(disk_id) = self.creds.as_ref().map(Credentials::refresh_token_id) else {
            return;
        };
        let spent = record.spent_refresh_tokens.contains(&disk_id);
        let in_flight = record
            .refresh_in_flight
            .filter(|m| m.refresh_token_id == disk_id);
        if spent && self.relogin.is_none() {
            tracing::error!(
                "the previous brokerd could not save a rotated refresh token (state directory full or read-only) and stopped; the token on disk is already spent and is not sent again"
            );
            self.relogin = Some(ReloginRecord {
                reason: errors::ROTATION_NOT_PERSISTED.to_string(),
                message: errors::relogin_message(errors::ROTATION_NOT_PERSISTED, ""),
            });
            self.interrupted = false;
            self.marker = None;
            self.hold_until = None;
            self.persist_pending = true;
        } else if let Some(marker) = in_flight.filter(|_| !spent) {
            let newer = self
                .marker
                .as_ref()
                .is_none_or(|m| m.answer_deadline_ms < marker.answer_deadline_ms);
            if newer {
                self.interrupt(marker, settings, now);
            }
            self.persist_pending = true;
        }
        for id in record.spent_refresh_tokens {
            self.record_spent(id);
        }
    }

    /// True while a rotated refresh token (or the marker before a refresh)
    /// could not be written: then no refresh is made that no client needs.
    pub fn cannot_persist(&self) -> bool {
        self.persist_pending
    }

    /// True while the previous broker's request may still be at the server.
    pub fn holding(&self, now: SystemTime) -> bool {
        self.hold_until.is_some_and(|until| now < until)
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
        self.hold_until = None;
        self.backoff.reset();
        self.last_error = None;
        self.degraded = None;
        self.persist_pending = false;
        self.persist_backoff.reset();
        self.forced_refreshes.reset();
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
            // if it cannot satisfy `min_valid`: no refresh loop. While a rotated
            // token could not be persisted, or an old request may still be at
            // the server, the still-valid token is served as well: a refresh
            // for `min_valid` alone is not worth that risk.
            if served.satisfies(now, min_valid)
                || self.generation > start_generation
                || self.cannot_persist()
                || self.holding(now.wall)
            {
                return Decision::Serve(served.clone());
            }
        }
        if self.refreshing {
            return Decision::Wait;
        }
        if self.holding(now.wall) {
            return Decision::Fail(self.held(now.wall));
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
    /// current one → one coalesced forced refresh, within the bounds of
    /// `forced_refresh` (else the current token is served); otherwise serve
    /// the newer one.
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
        if let Some(until) = self.hold_until.filter(|_| self.holding(now.wall)) {
            // The report asks for the outcome of the retry: wait for it.
            return Decision::WaitUntil(until);
        }
        if valid
            && !self.forced_refreshes.allows(
                token_id,
                creds.lifetime(),
                self.refresh_count,
                now.wall,
            )
        {
            return Decision::SuppressForcedRefresh(self.grant(creds));
        }
        if self.backoff.is_waiting(now.wall) || self.generation > start_generation {
            return Decision::Fail(self.unavailable(now.wall));
        }
        if valid {
            Decision::StartForcedRefresh
        } else {
            Decision::StartRefresh
        }
    }

    /// Records that a forced refresh (decided by `decide_unauthorized`) starts.
    pub fn record_forced_refresh(&mut self, now: SystemTime) {
        if let Some(token_id) = self.current_token_id() {
            self.forced_refreshes
                .started(token_id, self.refresh_count, now);
        }
    }

    /// Counts a report answered with the current token instead of a forced
    /// refresh; the first one after each forced refresh is logged.
    pub fn record_suppressed_forced_refresh(&mut self, now: SystemTime) {
        if self.forced_refreshes.suppressed() {
            let lifetime = self.creds.as_ref().map_or(Duration::ZERO, |c| c.lifetime());
            let until = self
                .forced_refreshes
                .next_allowed_at(lifetime, self.refresh_count, now)
                .map(|at| saturating_diff(at, now).as_secs());
            tracing::warn!(
                token_id = self.current_token_id().unwrap_or_default(),
                suppressed = self.forced_refreshes.suppressed_count(),
                floor_left_secs = until,
                "a token that a 401 report just had refreshed was reported again; answering with the current token instead of spending another refresh token (the API likely refuses it for another reason: scope, API base, account)"
            );
        }
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

    /// `upstream_unavailable` while the previous broker's request may still
    /// be at the server and the cached token has expired.
    fn held(&self, now: SystemTime) -> TokenError {
        let retry_after = self
            .hold_until
            .map(|at| saturating_diff(at, now))
            .unwrap_or_default()
            .max(Duration::from_secs(1));
        TokenError::Unavailable {
            message: "no valid access token: the previous brokerd stopped during a refresh whose request may still be at the server; retrying once it has timed out".to_string(),
            hint: Some("the broker retries by itself; spending the refresh token earlier could make the provider revoke the login".to_string()),
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
        // No proactive refresh while its result could not be persisted: each
        // one would spend a token whose successor lives only in memory.
        if self.creds.is_some()
            && self.relogin.is_none()
            && !self.refreshing
            && !self.cannot_persist()
        {
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

#[cfg(test)]
mod tests {
    use super::*;

    const FLOOR_SECS: u64 = 30;
    const LIFETIME: Duration = Duration::from_secs(3600);

    /// Both clocks at `t` (they never diverge in these tests).
    fn at(t: SystemTime) -> Now {
        Now {
            wall: t,
            boot: t.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
        }
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn creds(n: u32, now: SystemTime) -> Credentials {
        Credentials {
            access_token: Some(format!("at-{n}").into()),
            expires_at: Some(now + LIFETIME),
            obtained_at: now,
            obtained_boot: Some(at(now).boot),
            refresh_token: format!("rt-{n}").into(),
            id_token: None,
            token_type: "Bearer".into(),
            scopes: vec![],
            account_id: None,
            metadata: Default::default(),
            refresh_hint_at: None,
        }
    }

    fn logged_in(now: SystemTime) -> State {
        let settings = RefreshSettings {
            forced_refresh_floor_secs: FLOOR_SECS,
            ..RefreshSettings::default()
        };
        let mut st = State::restore(None, None, &settings, at(now));
        st.replace_login(Some(creds(0, now)));
        st
    }

    /// What a successful refresh does to the state (see `refresh::succeed`).
    fn refreshed(st: &mut State, n: u32, now: SystemTime) {
        st.set_creds(Some(creds(n, now)));
        st.generation += 1;
        st.refreshing = false;
        st.refresh_count += 1;
    }

    fn report(st: &State, now: SystemTime) -> Decision {
        let id = st.current_token_id().unwrap();
        st.decide_unauthorized("default", at(now), &id, st.generation)
    }

    #[test]
    fn a_fresh_token_reported_again_is_served_not_refreshed_until_the_floor_passed() {
        let mut st = logged_in(t(0));
        // The first report about the current token forces a refresh.
        assert!(matches!(report(&st, t(100)), Decision::StartForcedRefresh));
        st.record_forced_refresh(t(100));
        st.refreshing = true;
        refreshed(&mut st, 1, t(100));
        let fresh = st.current_token_id().unwrap();

        // The token that refresh produced is reported at once, 99 times: each
        // is answered with it, without a refresh.
        for i in 0..99 {
            match report(&st, t(100) + Duration::from_millis(i)) {
                Decision::SuppressForcedRefresh(grant) => assert_eq!(grant.token_id(), fresh),
                _ => panic!("report {i} was not answered with the current token"),
            }
            st.record_suppressed_forced_refresh(t(100));
        }
        assert_eq!(st.forced_refreshes.suppressed_count(), 99);
        assert_eq!(
            st.forced_refreshes
                .next_allowed_at(LIFETIME, st.refresh_count, t(110)),
            Some(t(100 + FLOOR_SECS))
        );
        assert!(matches!(
            report(&st, t(100 + FLOOR_SECS - 1)),
            Decision::SuppressForcedRefresh(_)
        ));
        // After the floor, one more forced refresh is allowed.
        assert!(matches!(
            report(&st, t(100 + FLOOR_SECS)),
            Decision::StartForcedRefresh
        ));
    }

    #[test]
    fn reports_about_an_older_token_get_the_current_one_and_count_nothing() {
        let mut st = logged_in(t(0));
        let old = st.current_token_id().unwrap();
        st.record_forced_refresh(t(1));
        refreshed(&mut st, 1, t(1));
        match st.decide_unauthorized("default", at(t(2)), &old, st.generation) {
            Decision::Serve(grant) => assert_ne!(grant.token_id(), old),
            _ => panic!("a report about an older token gets the current one"),
        }
        assert_eq!(st.forced_refreshes.suppressed_count(), 0);
    }

    #[test]
    fn an_expired_token_is_refreshed_even_during_the_floor() {
        let mut st = logged_in(t(0));
        st.record_forced_refresh(t(1));
        refreshed(&mut st, 1, t(1));
        // Expired by its own expiry: a refresh on demand, not a forced one.
        let later = t(1) + LIFETIME + Duration::from_secs(1);
        assert!(matches!(report(&st, later), Decision::StartRefresh));
        let soon = t(2);
        st.creds.as_mut().unwrap().expires_at = Some(soon);
        assert!(matches!(report(&st, soon), Decision::StartRefresh));
    }

    #[test]
    fn a_failed_forced_refresh_is_retried_under_the_backoff_not_the_floor() {
        let mut st = logged_in(t(0));
        assert!(matches!(report(&st, t(1)), Decision::StartForcedRefresh));
        st.record_forced_refresh(t(1));
        // It failed transiently: the backoff paces the retry.
        st.backoff.fail(t(1), None);
        assert!(matches!(report(&st, t(1)), Decision::Fail(_)));
        let after_backoff = st.backoff.next_attempt_at().unwrap();
        assert!(matches!(
            report(&st, after_backoff),
            Decision::StartForcedRefresh
        ));
    }

    #[test]
    fn a_new_login_may_be_forced_at_once() {
        let mut st = logged_in(t(0));
        st.record_forced_refresh(t(1));
        refreshed(&mut st, 1, t(1));
        assert!(matches!(
            report(&st, t(2)),
            Decision::SuppressForcedRefresh(_)
        ));
        st.replace_login(Some(creds(7, t(2))));
        assert!(matches!(report(&st, t(2)), Decision::StartForcedRefresh));
    }
}
