//! Exponential backoff with jitter for transient token-endpoint failures.

use rand::Rng;
use std::time::{Duration, SystemTime};

/// Longest `Retry-After` honoured; a server asking for more is capped so that a
/// bogus header cannot silence the broker for a day.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Backoff state: the delay doubles from `initial` up to `max` after each
/// consecutive failure and resets on success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
    next_attempt_at: Option<SystemTime>,
}

impl Backoff {
    /// A backoff with no failure recorded.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            failures: 0,
            next_attempt_at: None,
        }
    }

    /// Records a failure at `now` and returns the delay before the next attempt:
    /// `initial * 2^(failures-1)` capped at `max`, scaled by a random factor in
    /// [0.8, 1.0] so that many brokers do not retry in lockstep, and never shorter
    /// than the server's `Retry-After`.
    pub fn fail(&mut self, now: SystemTime, retry_after: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(30);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let jitter = rand::rng().random_range(0.8..=1.0);
        let mut delay = base.mul_f64(jitter);
        if let Some(retry_after) = retry_after {
            delay = delay.max(retry_after.min(MAX_RETRY_AFTER));
        }
        self.next_attempt_at = Some(crate::clock::add(now, delay));
        delay
    }

    /// Records a failure that retrying soon cannot fix (configuration errors):
    /// wait the maximum delay.
    pub fn fail_slow(&mut self, now: SystemTime) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.next_attempt_at = Some(crate::clock::add(now, self.max));
        self.max
    }

    /// Clears the failures after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.next_attempt_at = None;
    }

    /// When the next attempt is allowed, if a failure is pending.
    pub fn next_attempt_at(&self) -> Option<SystemTime> {
        self.next_attempt_at
    }

    /// True while `now` is before the next allowed attempt.
    pub fn is_waiting(&self, now: SystemTime) -> bool {
        self.next_attempt_at.is_some_and(|at| now < at)
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let now = SystemTime::now();
        let mut expected = 1.0f64;
        for _ in 0..15 {
            let d = b.fail(now, None).as_secs_f64();
            let base = expected.min(300.0);
            assert!(d <= base + 1e-6 && d >= base * 0.8 - 1e-6, "{d} vs {base}");
            expected *= 2.0;
        }
        b.reset();
        assert!(b.fail(now, None) <= Duration::from_secs(1));
    }

    #[test]
    fn retry_after_wins_when_longer_and_is_capped() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let now = SystemTime::now();
        assert_eq!(
            b.fail(now, Some(Duration::from_secs(42))),
            Duration::from_secs(42)
        );
        assert_eq!(
            b.fail(now, Some(Duration::from_secs(999_999))),
            Duration::from_secs(3600)
        );
        assert!(b.is_waiting(now));
    }
}
