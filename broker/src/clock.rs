//! Wall-clock abstraction.
//!
//! Expiry decisions use the wall clock (`SystemTime`), not only `Instant`: a laptop
//! that slept for an hour must not serve a token that died while it slept, and a
//! monotonic clock does not advance during suspend. The trait exists so that tests
//! can jump the clock (see the manager's clock-jump tests).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Source of "now" for the token manager.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A wall clock that can be moved by tests: the real time plus an adjustable offset.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_millis: AtomicI64,
}

impl OffsetClock {
    /// Moves the clock forward (or back, with a negative amount) by `millis`.
    pub fn advance_millis(&self, millis: i64) {
        self.offset_millis.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> SystemTime {
        let offset = self.offset_millis.load(Ordering::SeqCst);
        let now = SystemTime::now();
        if offset >= 0 {
            now + Duration::from_millis(offset as u64)
        } else {
            now - Duration::from_millis(offset.unsigned_abs())
        }
    }
}

/// Unix seconds of a time (0 before the epoch).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The latest time the broker represents (early 2106). Times computed from
/// values a server, a config or a state file supplied are clamped to it, because
/// `SystemTime + Duration` panics on overflow and a hostile `expires_in` must not
/// be able to crash a refresh.
pub const MAX_UNIX_SECS: u64 = u32::MAX as u64;

/// The time at `secs` unix seconds (clamped to [`MAX_UNIX_SECS`]).
pub fn from_unix_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.min(MAX_UNIX_SECS))
}

/// `t + d`, clamped to [`MAX_UNIX_SECS`] instead of panicking.
pub fn add(t: SystemTime, d: Duration) -> SystemTime {
    let max = from_unix_secs(MAX_UNIX_SECS);
    t.checked_add(d).map_or(max, |sum| sum.min(max))
}

/// `t + secs` seconds, clamped like [`add`].
pub fn add_secs(t: SystemTime, secs: u64) -> SystemTime {
    add(t, Duration::from_secs(secs))
}

/// `later - earlier`, or zero when `later` is not later.
pub fn saturating_diff(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}
