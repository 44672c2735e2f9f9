//! Waiting out a `busy` broker, within a bounded budget.
//!
//! A broker at its connection limit answers a new connection with `busy` and a
//! `retry_after_secs` (and evicts idle connections to make room). A caller
//! that asked for a token wants the token, not that error: so the clients try
//! again on a new connection — after the delay the broker asked for, or a short
//! backoff when it named none — as long as the waiting stays within a budget
//! (default [`DEFAULT_BUSY_BUDGET`]). Past the budget the `busy` error is
//! returned, so a broker that stays full is reported quickly rather than hung on.
//!
//! Retrying is safe for every request: a `busy` answer means the broker did
//! not act on the request. A login stream is not retried: `busy` there means
//! another login is running, which only its user can end.

use crate::Error;
use std::time::{Duration, Instant};

/// Default total time spent waiting for a busy broker.
pub const DEFAULT_BUSY_BUDGET: Duration = Duration::from_secs(2);

/// First wait when the broker names no delay; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// The waiting done so far for one call.
#[derive(Debug)]
pub(crate) struct BusyRetry {
    budget: Duration,
    waited: Duration,
    backoff: Duration,
}

impl BusyRetry {
    pub(crate) fn new(budget: Duration) -> BusyRetry {
        BusyRetry {
            budget,
            waited: Duration::ZERO,
            backoff: FIRST_BACKOFF,
        }
    }

    /// How long to wait before trying again after `err`, or `None` to give
    /// up: the error is not `busy`, or the wait would overrun the budget.
    /// Honours the broker's `retry_after` (never waits less); without one,
    /// backs off exponentially.
    pub(crate) fn next_wait(&mut self, err: &Error) -> Option<Duration> {
        if !matches!(err, Error::Busy { .. }) {
            return None;
        }
        let wait = match err.retry_after() {
            Some(after) => after,
            None => {
                let wait = self.backoff;
                self.backoff = self.backoff.saturating_mul(2);
                wait
            }
        };
        let total = self.waited.checked_add(wait)?;
        if total > self.budget {
            return None;
        }
        self.waited = total;
        Some(wait)
    }

    /// Calls `attempt` until it does not fail with `busy` or the budget is
    /// spent, sleeping in between (blocking).
    pub(crate) fn run_blocking<T>(
        budget: Duration,
        mut attempt: impl FnMut() -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut retry = BusyRetry::new(budget);
        loop {
            match attempt() {
                Err(err) => match retry.next_wait(&err) {
                    Some(wait) => sleep_until(Instant::now() + wait),
                    None => return Err(err),
                },
                done => return done,
            }
        }
    }
}

fn sleep_until(at: Instant) {
    // `sleep` may wake early on some platforms; the broker asked for this long.
    while let Some(left) = at.checked_duration_since(Instant::now()) {
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(retry_after: Option<u64>) -> Error {
        Error::Busy {
            retry_after: retry_after.map(Duration::from_secs),
            message: "at the connection limit".into(),
            hint: None,
        }
    }

    #[test]
    fn honours_retry_after_within_the_budget() {
        let mut retry = BusyRetry::new(Duration::from_secs(2));
        assert_eq!(
            retry.next_wait(&busy(Some(1))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            retry.next_wait(&busy(Some(1))),
            Some(Duration::from_secs(1))
        );
        // A third second would overrun the two-second budget.
        assert_eq!(retry.next_wait(&busy(Some(1))), None);
    }

    #[test]
    fn a_delay_longer_than_the_budget_is_not_waited_for() {
        let mut retry = BusyRetry::new(Duration::from_secs(2));
        assert_eq!(retry.next_wait(&busy(Some(30))), None);
    }

    #[test]
    fn without_retry_after_backs_off_exponentially() {
        let mut retry = BusyRetry::new(Duration::from_millis(400));
        let waits: Vec<_> = std::iter::from_fn(|| retry.next_wait(&busy(None))).collect();
        assert_eq!(
            waits,
            [50, 100, 200].map(Duration::from_millis),
            "50 + 100 + 200 = 350 ms; another 400 ms would overrun"
        );
    }

    #[test]
    fn other_errors_are_not_retried() {
        let mut retry = BusyRetry::new(Duration::from_secs(2));
        let not_logged_in = Error::NotLoggedIn {
            message: "no login".into(),
            hint: None,
        };
        assert_eq!(retry.next_wait(&not_logged_in), None);
        let upstream = Error::UpstreamUnavailable {
            retry_after: Some(Duration::from_secs(1)),
            message: "down".into(),
            hint: None,
        };
        assert_eq!(retry.next_wait(&upstream), None);
    }

    #[test]
    fn a_zero_budget_never_waits() {
        let mut retry = BusyRetry::new(Duration::ZERO);
        assert_eq!(retry.next_wait(&busy(Some(1))), None);
        assert_eq!(retry.next_wait(&busy(None)), None);
    }

    #[test]
    fn run_blocking_retries_until_it_is_not_busy() {
        let mut attempts = 0;
        let result = BusyRetry::run_blocking(Duration::from_secs(2), || {
            attempts += 1;
            if attempts < 3 {
                Err(busy(None))
            } else {
                Ok(attempts)
            }
        });
        assert_eq!(result.unwrap(), 3);
        let result: Result<(), Error> =
            BusyRetry::run_blocking(Duration::from_millis(10), || Err(busy(None)));
        assert!(matches!(result, Err(Error::Busy { .. })));
    }
}
