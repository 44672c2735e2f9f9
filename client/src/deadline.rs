//! A point in time by which an operation must finish.
//!
//! Socket timeouts apply per system call; a deadline turns them into a bound on
//! the whole exchange (a frame read may take several calls).

use crate::Error;
use std::time::{Duration, Instant};

/// When `operation` must be done, and the limit it was given (for the error).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Instant,
    total: Duration,
    operation: &'static str,
}

impl Deadline {
    /// A deadline `total` from now. Absurdly long limits are clamped rather than
    /// overflowing `Instant`.
    pub(crate) fn after(total: Duration, operation: &'static str) -> Self {
        let now = Instant::now();
        let at = now
            .checked_add(total)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        Deadline {
            at,
            total,
            operation,
        }
    }

    /// Time left, or the timeout error once none is.
    pub(crate) fn remaining(&self) -> Result<Duration, Error> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.expired())
        } else {
            Ok(left)
        }
    }

    /// The error to report when this deadline passed.
    pub(crate) fn expired(&self) -> Error {
        Error::Timeout {
            operation: self.operation,
            after: self.total,
        }
    }
}
