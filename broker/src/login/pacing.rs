//! The rhythm of a device login's polling, shared by RFC 8628 and OpenAI's
//! scheme: first poll at once, then every `interval`; `slow_down` adds 5 s for
//! good (RFC 8628 §3.5); transient failures are tolerated a bounded number of
//! times in a row (a connection timeout also doubles the interval, as §3.5
//! asks); nothing is polled after the user code expired; and every wait ends
//! early when the login is cancelled.

use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What RFC 8628 §3.5 adds to the interval on `slow_down`.
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Interval when the server names none (RFC 8628 §3.2).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Upper bound of the interval after timeouts doubled it.
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Longest interval taken from a server (or grown by `slow_down`). The values
/// come from the network: an absurd one must neither stall the login forever
/// nor overflow `Instant + Duration`, which panics.
pub const MAX_SERVER_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Longest validity of a user code taken from a server; RFC 8628 examples use
/// 15–30 minutes, and nobody waits at a terminal longer than this.
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(60 * 60);

/// A server's `expires_in` (seconds), clamped to [`MAX_EXPIRES_IN`]: what the
/// user is told and how long the broker polls are then the same.
pub fn clamp_expires_in(secs: u64) -> u64 {
    secs.min(MAX_EXPIRES_IN.as_secs())
}

/// Starts polling for a user code the server announced as valid `expires_in`
/// seconds (`default_expires_in` when omitted) and to be polled every
/// `interval` seconds ([`DEFAULT_INTERVAL`] when omitted). Returns the clamped
/// validity, which is what the user must be told, and the pacing.
pub fn start(
    scheme: &str,
    expires_in: Option<u64>,
    default_expires_in: u64,
    interval: Option<u64>,
    max_failures: u32,
) -> (u64, Pacing) {
    let expires_in = clamp_expires_in(expires_in.unwrap_or(default_expires_in));
    let interval = interval
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_INTERVAL);
    tracing::info!(
        expires_in,
        interval_secs = interval.as_secs(),
        "{scheme}: waiting for the user to approve"
    );
    let pacing = Pacing::new(interval, Duration::from_secs(expires_in), max_failures);
    (expires_in, pacing)
}

/// Why polling stops before an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The user code expired.
    Expired,
    /// The client that asked for the login went away.
    Cancelled,
}

/// Polling state of one device login.
#[derive(Debug)]
pub struct Pacing {
    interval: Duration,
    deadline: Instant,
    failures: u32,
    max_failures: u32,
    extra_wait: Duration,
}

impl Pacing {
    /// Pacing for a code valid `expires_in` from now (at most
    /// [`MAX_EXPIRES_IN`]), polled every `interval` (one second to
    /// [`MAX_SERVER_INTERVAL`]), tolerating `max_failures` transient failures
    /// in a row.
    pub fn new(interval: Duration, expires_in: Duration, max_failures: u32) -> Pacing {
        let now = Instant::now();
        Pacing {
            interval: interval.clamp(Duration::from_secs(1), MAX_SERVER_INTERVAL),
            // Cannot fail after the clamp; if it did, the code counts as expired.
            deadline: now
                .checked_add(expires_in.min(MAX_EXPIRES_IN))
                .unwrap_or(now),
            failures: 0,
            max_failures,
            extra_wait: Duration::ZERO,
        }
    }

    /// The current interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// An answer arrived (pending or otherwise): the failure streak ends.
    pub fn answered(&mut self) {
        self.failures = 0;
        self.extra_wait = Duration::ZERO;
    }

    /// `slow_down`: 5 s more, for the rest of this login.
    pub fn slow_down(&mut self) {
        self.answered();
        self.interval = (self.interval + SLOW_DOWN_STEP).min(MAX_SERVER_INTERVAL);
    }

    /// A transient failure; `timeout` doubles the interval, `retry_after`
    /// stretches the next wait. Returns false when the streak is too long and
    /// the login should be given up.
    pub fn failed(&mut self, timeout: bool, retry_after: Option<Duration>) -> bool {
        self.failures += 1;
        if self.failures > self.max_failures {
            return false;
        }
        if timeout {
            // Doubling never shortens an interval the server asked for.
            self.interval = (self.interval * 2).min(MAX_INTERVAL).max(self.interval);
        }
        self.extra_wait = retry_after
            .unwrap_or(Duration::ZERO)
            .saturating_sub(self.interval)
            .min(MAX_INTERVAL);
        true
    }

    /// Whether the code has expired.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Seconds until the code expires.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Waits for the next poll. Errs (at the deadline, not later) when the code
    /// expires first, or at once when the login is cancelled.
    pub async fn wait(&self, cancel: &CancellationToken) -> Result<(), Stop> {
        let wake = Instant::now()
            .checked_add(self.interval + self.extra_wait)
            .unwrap_or(self.deadline);
        let expires_first = wake >= self.deadline;
        tokio::select! {
            _ = cancel.cancelled() => Err(Stop::Cancelled),
            _ = tokio::time::sleep_until(wake.min(self.deadline)) => {
                if expires_first { Err(Stop::Expired) } else { Ok(()) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_down_adds_five_seconds_for_good() {
        let mut p = Pacing::new(Duration::from_secs(1), Duration::from_secs(600), 3);
        p.slow_down();
        assert_eq!(p.interval(), Duration::from_secs(6));
        p.answered();
        assert_eq!(p.interval(), Duration::from_secs(6));
        p.slow_down();
        assert_eq!(p.interval(), Duration::from_secs(11));
    }

    #[test]
    fn failure_streak_is_bounded_and_reset_by_an_answer() {
        let mut p = Pacing::new(Duration::from_secs(1), Duration::from_secs(600), 2);
        assert!(p.failed(false, None));
        assert!(p.failed(false, None));
        p.answered();
        assert!(p.failed(false, None));
        assert!(p.failed(true, None));
        assert_eq!(p.interval(), Duration::from_secs(2));
        assert!(!p.failed(false, None));
    }

    #[test]
    fn zero_interval_is_raised_to_one_second() {
        let p = Pacing::new(Duration::ZERO, Duration::from_secs(5), 1);
        assert_eq!(p.interval(), Duration::from_secs(1));
    }

    #[test]
    fn absurd_server_values_are_clamped_instead_of_panicking() {
        let mut p = Pacing::new(Duration::MAX, Duration::MAX, 1);
        assert_eq!(p.interval(), MAX_SERVER_INTERVAL);
        assert!(p.remaining() <= MAX_EXPIRES_IN);
        assert!(!p.expired());
        p.slow_down();
        assert_eq!(p.interval(), MAX_SERVER_INTERVAL);
        assert!(p.failed(true, Some(Duration::MAX)));
        assert_eq!(p.interval(), MAX_SERVER_INTERVAL);
        let p = Pacing::new(
            Duration::from_secs(u64::MAX),
            Duration::from_secs(u64::MAX),
            1,
        );
        assert!(p.remaining() <= MAX_EXPIRES_IN);
        assert_eq!(clamp_expires_in(u64::MAX), 3600);
        assert_eq!(clamp_expires_in(900), 900);
    }

    #[tokio::test]
    async fn a_long_interval_still_ends_at_the_expiry() {
        let p = Pacing::new(Duration::MAX, Duration::from_millis(100), 1);
        assert_eq!(p.wait(&CancellationToken::new()).await, Err(Stop::Expired));
    }

    #[tokio::test]
    async fn never_waits_past_the_expiry() {
        let p = Pacing::new(Duration::from_secs(5), Duration::from_millis(200), 1);
        let start = Instant::now();
        assert_eq!(p.wait(&CancellationToken::new()).await, Err(Stop::Expired));
        assert!(start.elapsed() < Duration::from_secs(4));
        let cancel = CancellationToken::new();
        cancel.cancel();
        let p = Pacing::new(Duration::from_secs(5), Duration::from_secs(30), 1);
        assert_eq!(p.wait(&cancel).await, Err(Stop::Cancelled));
    }
}
