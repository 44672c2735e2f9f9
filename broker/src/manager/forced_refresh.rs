//! Bounds on forced refreshes: refreshes a 401 report (`Unauthorized`) asks
//! for while the current token is still valid by its expiry.
//!
//! A report about the current token normally forces one (coalesced) refresh.
//! But when the token that such a refresh just produced is refused again, the
//! problem is the provider's or the caller's (wrong scope, API base or
//! account, a revoked grant the token endpoint has not noticed yet): another
//! refresh will not fix it and only burns a refresh token — 100 reports, each
//! about the newest token, used to cause 100 refreshes in 0.3 s. So:
//!
//! * at most one forced refresh per token id: once one succeeded, a report
//!   about that same token id (the provider handed it back unchanged) is
//!   answered with the current token;
//! * a floor interval (`[refresh] forced_refresh_floor_secs`, default 30 s,
//!   but at most a quarter of the current token's lifetime: a token refused
//!   late in its life was not "just issued") between a successful forced
//!   refresh and the next one; reports during the floor are answered with the
//!   current token, counted in `status`, and the condition is logged once per
//!   forced refresh.
//!
//! A forced refresh that failed does not start the floor: its retries follow
//! the backoff like any other refresh. An expired token is refreshed on
//! demand regardless (that is not a forced refresh).

use std::time::{Duration, SystemTime};

/// The floor is at most the current token's lifetime divided by this.
const LIFETIME_DIVISOR: u32 = 4;

/// What the manager remembers about forced refreshes.
#[derive(Debug)]
pub(crate) struct ForcedRefreshes {
    floor: Duration,
    last: Option<LastForced>,
    suppressed: u64,
    /// The suppression after `last` was already logged.
    logged: bool,
}

#[derive(Debug)]
struct LastForced {
    /// The reported token the refresh was forced for.
    token_id: String,
    at: SystemTime,
    /// The successful-refresh count when it started: a higher count later
    /// means it (or a later refresh) succeeded.
    refresh_count: u64,
}

impl ForcedRefreshes {
    /// No forced refresh yet; `floor` between successful ones.
    pub fn new(floor: Duration) -> ForcedRefreshes {
        ForcedRefreshes {
            floor,
            last: None,
            suppressed: 0,
            logged: false,
        }
    }

    /// Whether a report about `token_id` — the current token, still valid,
    /// issued for `lifetime` — may force a refresh at `now`; `refresh_count`
    /// is the number of successful refreshes so far.
    pub fn allows(
        &self,
        token_id: &str,
        lifetime: Duration,
        refresh_count: u64,
        now: SystemTime,
    ) -> bool {
        let Some(last) = &self.last else {
            return true;
        };
        if refresh_count <= last.refresh_count {
            // The last forced refresh failed: retried under the backoff.
            return true;
        }
        if last.token_id == token_id {
            // That refresh gave back the very token that was refused.
            return false;
        }
        self.floor_ends(last, lifetime)
            .is_some_and(|end| now >= end)
    }

    /// Records a forced refresh starting for `token_id`.
    pub fn started(&mut self, token_id: String, refresh_count: u64, now: SystemTime) {
        self.last = Some(LastForced {
            token_id,
            at: now,
            refresh_count,
        });
        self.logged = false;
    }

    /// Counts a report answered with the current token instead of a refresh.
    /// Returns true for the first one after a forced refresh (to be logged).
    pub fn suppressed(&mut self) -> bool {
        self.suppressed += 1;
        !std::mem::replace(&mut self.logged, true)
    }

    /// Reports answered with the current token instead of a refresh.
    pub fn suppressed_count(&self) -> u64 {
        self.suppressed
    }

    /// Until when a report about the current token (issued for `lifetime`) is
    /// answered without a refresh, if that is in the future.
    pub fn next_allowed_at(
        &self,
        lifetime: Duration,
        refresh_count: u64,
        now: SystemTime,
    ) -> Option<SystemTime> {
        let last = self.last.as_ref()?;
        if refresh_count <= last.refresh_count {
            return None;
        }
        self.floor_ends(last, lifetime).filter(|end| *end > now)
    }

    /// A new login: its tokens owe nothing to the old one's reports.
    pub fn reset(&mut self) {
        self.last = None;
        self.logged = false;
    }

    fn floor_ends(&self, last: &LastForced, lifetime: Duration) -> Option<SystemTime> {
        last.at
            .checked_add(self.floor.min(lifetime / LIFETIME_DIVISOR))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOOR: Duration = Duration::from_secs(30);
    const HOUR: Duration = Duration::from_secs(3600);

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn the_first_forced_refresh_is_allowed() {
        let f = ForcedRefreshes::new(FLOOR);
        assert!(f.allows("a", HOUR, 0, t(0)));
        assert_eq!(f.next_allowed_at(HOUR, 0, t(0)), None);
    }

    #[test]
    fn a_fresh_token_refused_again_waits_for_the_floor() {
        let mut f = ForcedRefreshes::new(FLOOR);
        f.started("a".into(), 5, t(0));
        // The refresh succeeded (count 6) and produced token b.
        assert!(!f.allows("b", HOUR, 6, t(1)));
        assert!(!f.allows("b", HOUR, 6, t(29)));
        assert_eq!(f.next_allowed_at(HOUR, 6, t(1)), Some(t(30)));
        assert!(f.allows("b", HOUR, 6, t(30)));
        assert_eq!(f.next_allowed_at(HOUR, 6, t(30)), None);
    }

    #[test]
    fn the_floor_is_at_most_a_quarter_of_the_token_lifetime() {
        let mut f = ForcedRefreshes::new(FLOOR);
        f.started("a".into(), 5, t(0));
        // One-minute tokens: refused after 15 s, a token is not "just issued".
        let minute = Duration::from_secs(60);
        assert!(!f.allows("b", minute, 6, t(14)));
        assert_eq!(f.next_allowed_at(minute, 6, t(1)), Some(t(15)));
        assert!(f.allows("b", minute, 6, t(15)));
    }

    #[test]
    fn a_failed_forced_refresh_does_not_start_the_floor() {
        let mut f = ForcedRefreshes::new(FLOOR);
        f.started("a".into(), 5, t(0));
        // Still count 5: it failed; the retry is the backoff's business.
        assert!(f.allows("a", HOUR, 5, t(1)));
        assert_eq!(f.next_allowed_at(HOUR, 5, t(1)), None);
    }

    #[test]
    fn at_most_one_forced_refresh_per_token_id() {
        let mut f = ForcedRefreshes::new(FLOOR);
        f.started("a".into(), 5, t(0));
        // The provider answered the refresh with the same access token.
        assert!(!f.allows("a", HOUR, 6, t(1)));
        assert!(!f.allows("a", HOUR, 6, t(3600)), "not even after the floor");
        assert!(
            f.allows("c", HOUR, 7, t(3600)),
            "a newer token may be forced"
        );
    }

    #[test]
    fn a_zero_floor_only_keeps_the_per_token_rule() {
        let mut f = ForcedRefreshes::new(Duration::ZERO);
        f.started("a".into(), 5, t(0));
        assert!(f.allows("b", HOUR, 6, t(0)));
        assert!(!f.allows("a", HOUR, 6, t(0)));
    }

    #[test]
    fn suppressions_are_counted_and_logged_once_per_forced_refresh() {
        let mut f = ForcedRefreshes::new(FLOOR);
        f.started("a".into(), 0, t(0));
        assert!(f.suppressed());
        assert!(!f.suppressed());
        assert!(!f.suppressed());
        f.started("b".into(), 1, t(40));
        assert!(f.suppressed());
        assert_eq!(f.suppressed_count(), 4);
    }

    #[test]
    fn a_new_login_forgets_the_floor() {
        let mut f = ForcedRefreshes::new(FLOOR);
        f.started("a".into(), 0, t(0));
        assert!(!f.allows("b", HOUR, 1, t(1)));
        f.reset();
        assert!(f.allows("b", HOUR, 1, t(1)));
    }
}
