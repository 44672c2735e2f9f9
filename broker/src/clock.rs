//! The two clocks the broker reads, and deadlines kept on both.
//!
//! Token lifetimes run on `CLOCK_BOOTTIME`: it never jumps (no NTP step, no
//! `date -s`, no timezone business) and, unlike `CLOCK_MONOTONIC` (what
//! `std::time::Instant` and tokio's timers use), it keeps counting while the
//! machine is suspended. A lifetime is measured on it from when the token was
//! received. The wall clock (`SystemTime`) is still needed for absolute times —
//! the `expires_at` persisted and shown to clients and in `status` — and it is
//! the only clock that survives a reboot.
//!
//! Each deadline is therefore kept on both clocks ([`Deadline`]) and the
//! earlier one wins: a wall clock stepped back (or a token received while it
//! was ahead and then corrected) cannot stretch a token's life, because the
//! boottime deadline still passes on time; a wall clock stepped forward only
//! makes the broker refresh early. The trait exists so that tests can move
//! both clocks independently (see the manager's clock-jump tests).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Source of "now" for the token manager.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;

    /// Time since boot, suspend included (`CLOCK_BOOTTIME`).
    fn boottime(&self) -> Duration;

    /// Both clocks at once.
    fn read(&self) -> Now {
        Now {
            wall: self.now(),
            boot: self.boottime(),
        }
    }
}

/// One reading of both clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// The wall clock.
    pub wall: SystemTime,
    /// `CLOCK_BOOTTIME`: since boot, suspend included, never jumps.
    pub boot: Duration,
}

impl Now {
    /// A reading of the real clocks.
    pub fn system() -> Now {
        SystemClock.read()
    }

    /// This reading `d` later on both clocks (as if `d` really passed).
    pub fn later(self, d: Duration) -> Now {
        Now {
            wall: add(self.wall, d),
            boot: self.boot.saturating_add(d),
        }
    }
}

/// A point in time kept on both clocks; it has passed as soon as either clock
/// says so. `boot` is `None` when only the wall clock is known (a token
/// persisted before a reboot, or by a broker that did not record it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// The deadline on the wall clock.
    pub wall: SystemTime,
    /// The deadline on `CLOCK_BOOTTIME`, in this boot.
    pub boot: Option<Duration>,
}

impl Deadline {
    /// The point `now` itself.
    pub fn at(now: Now) -> Deadline {
        Deadline {
            wall: now.wall,
            boot: Some(now.boot),
        }
    }

    /// The deadline `d` after `start` (`start_boot` being `CLOCK_BOOTTIME` at
    /// `start`, if known).
    pub fn after(start: SystemTime, start_boot: Option<Duration>, d: Duration) -> Deadline {
        Deadline {
            wall: add(start, d),
            boot: start_boot.map(|b| b.saturating_add(d)),
        }
    }

    /// Time left at `now`: the smaller of what the two clocks say (zero once
    /// either has passed).
    pub fn left(&self, now: Now) -> Duration {
        let wall = saturating_diff(self.wall, now.wall);
        match self.boot {
            Some(boot) => wall.min(boot.saturating_sub(now.boot)),
            None => wall,
        }
    }

    /// Whether the deadline has passed at `now` (on either clock).
    pub fn passed(&self, now: Now) -> bool {
        self.left(now).is_zero()
    }

    /// The deadline as a wall-clock time for display, judged at `now`: the
    /// earlier of the two, so a wall clock that ran ahead and was corrected
    /// shows when the token really expires, not a day later. The boottime
    /// deadline is shown only when it is earlier by more than
    /// [`DISPLAY_SLACK`]: both are anchored on the same moment, and the
    /// nanoseconds between reading one clock and the other must not turn a
    /// whole-second `expires_at` into the second before.
    pub fn wall_time(&self, now: Now) -> SystemTime {
        let Some(boot) = self.boot else {
            return self.wall;
        };
        let by_boot = if boot >= now.boot {
            add(now.wall, boot - now.boot)
        } else {
            now.wall.checked_sub(now.boot - boot).unwrap_or(UNIX_EPOCH)
        };
        if saturating_diff(self.wall, by_boot) > DISPLAY_SLACK {
            by_boot
        } else {
            self.wall
        }
    }
}

/// See [`Deadline::wall_time`].
pub const DISPLAY_SLACK: Duration = Duration::from_secs(1);

/// The real clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn boottime(&self) -> Duration {
        system_boottime()
    }
}

/// `CLOCK_BOOTTIME` of this machine.
pub fn system_boottime() -> Duration {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(t) => Duration::new(
            t.tv_sec().max(0) as u64,
            t.tv_nsec().clamp(0, 999_999_999) as u32,
        ),
        // Linux has had CLOCK_BOOTTIME since 2.6.39; should it ever be missing,
        // the monotonic clock (which misses suspend) is the next best.
        Err(_) => {
            static START: OnceLock<std::time::Instant> = OnceLock::new();
            START.get_or_init(std::time::Instant::now).elapsed()
        }
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): a boottime reading is
/// only meaningful in the boot that took it, so it is persisted with this and
/// ignored after a reboot. `None` where the kernel does not say.
pub fn boot_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s.len() <= 64)
    })
    .as_deref()
}

/// Clocks that tests move: the real clocks plus adjustable offsets, the wall
/// clock and boottime independently (a wall-clock step moves only the wall
/// clock; a suspend moves both).
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_millis: AtomicI64,
    boot_offset_millis: AtomicI64,
}

impl OffsetClock {
    /// Time passes (as during a suspend): both clocks move forward (or back,
    /// with a negative amount) by `millis`.
    pub fn advance_millis(&self, millis: i64) {
        self.offset_millis.fetch_add(millis, Ordering::SeqCst);
        self.boot_offset_millis.fetch_add(millis, Ordering::SeqCst);
    }

    /// The wall clock alone is stepped by `millis` (NTP, `date -s`, a wrong
    /// RTC): boottime does not move.
    pub fn step_wall_millis(&self, millis: i64) {
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

    fn boottime(&self) -> Duration {
        let offset = self.boot_offset_millis.load(Ordering::SeqCst);
        let boot = system_boottime();
        if offset >= 0 {
            boot + Duration::from_millis(offset as u64)
        } else {
            boot.saturating_sub(Duration::from_millis(offset.unsigned_abs()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Now {
        Now {
            wall: from_unix_secs(1_700_000_000),
            boot: Duration::from_secs(5_000),
        }
    }

    #[test]
    fn the_earlier_deadline_wins() {
        let start = now();
        let d = Deadline::after(start.wall, Some(start.boot), Duration::from_secs(600));
        assert_eq!(d.left(start), Duration::from_secs(600));
        // Wall clock stepped back 120 s: boottime still says 600 s.
        let back = Now {
            wall: start.wall - Duration::from_secs(120),
            ..start
        };
        assert_eq!(d.left(back), Duration::from_secs(600));
        assert_eq!(d.wall_time(back), back.wall + Duration::from_secs(600));
        // Then 601 s pass: expired by boottime although the wall clock says 119 s.
        assert!(d.passed(back.later(Duration::from_secs(601))));
        // Wall clock a day ahead: expired by the wall clock.
        let ahead = Now {
            wall: start.wall + Duration::from_secs(86_400),
            ..start
        };
        assert!(d.passed(ahead));
        // A suspend moves both: expired by both.
        assert!(d.passed(start.later(Duration::from_secs(600))));
        assert!(!d.passed(start.later(Duration::from_secs(599))));
        // Without a boottime anchor (after a reboot) only the wall clock counts.
        let wall_only = Deadline { boot: None, ..d };
        assert_eq!(wall_only.left(back), Duration::from_secs(720));
        // Displayed: the wall deadline unless the boottime one is clearly earlier.
        assert_eq!(d.wall_time(start), d.wall);
        assert_eq!(
            d.wall_time(start.later(Duration::from_millis(1))),
            d.wall,
            "reading jitter does not change the displayed second"
        );
    }

    #[test]
    fn offset_clock_moves_wall_and_boottime_independently() {
        let clock = OffsetClock::default();
        let before = clock.read();
        clock.step_wall_millis(-120_000);
        let stepped = clock.read();
        assert!(stepped.wall + Duration::from_secs(119) < before.wall);
        assert!(stepped.boot >= before.boot);
        clock.advance_millis(60_000);
        let slept = clock.read();
        assert!(slept.boot >= before.boot + Duration::from_secs(60));
        assert!(slept.wall + Duration::from_secs(59) < before.wall);
    }
}
