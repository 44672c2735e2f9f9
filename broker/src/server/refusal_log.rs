//! Log lines about refused connections, rate-limited with counts.
//!
//! One warning per refused connection lets a flood (another user's script
//! hammering the socket, a runaway agent at the connection limit) write
//! thousands of lines a second and bury everything else. Instead the first
//! refusal of a kind is logged in full at once; later ones within the interval
//! are only counted, and at most one summary line per interval and kind says
//! how many were not shown ("N more connections refused from uid U").

use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// How often a continuing flood of one kind gets a summary line.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Distinct uids counted separately; more are counted together (a flood from
/// many uids must not grow the map without bound).
const MAX_UIDS: usize = 64;

/// What kind of refusal a log line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A connection from a uid that may not use the broker (`None`: unknown
    /// uid, or one of many uids counted together).
    OtherUser(Option<u32>),
    /// A connection answered `busy` because every slot serves a request.
    Busy,
    /// An idle connection closed to make room for a new one.
    Evicted,
}

/// Counts of refusals not yet logged.
#[derive(Debug)]
pub struct RefusalLog {
    interval: Duration,
    windows: HashMap<Refusal, Window>,
}

#[derive(Debug)]
struct Window {
    opened: Instant,
    suppressed: u64,
}

impl RefusalLog {
    /// Summaries at most once per `interval` and kind.
    pub fn new(interval: Duration) -> RefusalLog {
        RefusalLog {
            interval,
            windows: HashMap::new(),
        }
    }

    /// Counts one refusal. Returns the kind to log in full now, or `None` if
    /// it is only counted (a summary follows).
    pub fn record(&mut self, kind: Refusal, now: Instant) -> Option<Refusal> {
        let kind = match kind {
            Refusal::OtherUser(Some(_))
                if !self.windows.contains_key(&kind) && self.uid_windows() >= MAX_UIDS =>
            {
                Refusal::OtherUser(None)
            }
            other => other,
        };
        match self.windows.get_mut(&kind) {
            Some(window) => {
                window.suppressed += 1;
                None
            }
            None => {
                self.windows.insert(
                    kind,
                    Window {
                        opened: now,
                        suppressed: 0,
                    },
                );
                Some(kind)
            }
        }
    }

    /// The summaries due at `now`: kinds whose interval is over, with how many
    /// refusals were not logged. A kind that is still flooding starts a new
    /// interval (counted, not logged in full); a quiet one is forgotten, so its
    /// next refusal is logged in full again.
    pub fn due(&mut self, now: Instant) -> Vec<(Refusal, u64)> {
        let mut out = Vec::new();
        let interval = self.interval;
        self.windows.retain(|kind, window| {
            if now < window.opened + interval {
                return true;
            }
            if window.suppressed == 0 {
                return false;
            }
            out.push((*kind, window.suppressed));
            window.opened = now;
            window.suppressed = 0;
            true
        });
        out.sort_by_key(|(kind, _)| format!("{kind:?}"));
        out
    }

    /// When [`RefusalLog::due`] next has something to do.
    pub fn next_due(&self) -> Option<Instant> {
        self.windows
            .values()
            .map(|w| w.opened + self.interval)
            .min()
    }

    /// Every count not yet logged (at shutdown).
    pub fn drain(&mut self) -> Vec<(Refusal, u64)> {
        let mut out: Vec<_> = self
            .windows
            .drain()
            .filter(|(_, w)| w.suppressed > 0)
            .map(|(kind, w)| (kind, w.suppressed))
            .collect();
        out.sort_by_key(|(kind, _)| format!("{kind:?}"));
        out
    }

    fn uid_windows(&self) -> usize {
        self.windows
            .keys()
            .filter(|k| matches!(k, Refusal::OtherUser(Some(_))))
            .count()
    }
}

/// Writes the summary line for `count` refusals of `kind` not logged before.
pub fn log_summary(kind: Refusal, count: u64, max_connections: usize) {
    match kind {
        Refusal::OtherUser(Some(uid)) => tracing::warn!(
            peer_uid = uid,
            count,
            "{count} more connections refused from uid {uid}"
        ),
        Refusal::OtherUser(None) => {
            tracing::warn!(count, "{count} more connections refused from other users")
        }
        Refusal::Busy => tracing::warn!(
            count,
            max = max_connections,
            "{count} more connections answered busy at the connection limit"
        ),
        Refusal::Evicted => tracing::info!(
            count,
            max = max_connections,
            "{count} more idle connections closed to make room at the connection limit"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: Refusal = Refusal::OtherUser(Some(1001));

    #[test]
    fn a_flood_gives_one_full_line_and_one_summary_per_interval() {
        let t0 = Instant::now();
        let mut log = RefusalLog::new(Duration::from_secs(10));
        assert_eq!(log.record(UID, t0), Some(UID));
        for i in 1..5000u64 {
            assert_eq!(log.record(UID, t0 + Duration::from_micros(i)), None);
        }
        assert_eq!(log.next_due(), Some(t0 + Duration::from_secs(10)));
        assert!(log.due(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(log.due(t0 + Duration::from_secs(10)), vec![(UID, 4999)]);
        // Still flooding: counted into the next summary, not logged in full.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(log.record(UID, t1 + Duration::from_secs(1)), None);
        assert_eq!(log.record(UID, t1 + Duration::from_secs(2)), None);
        assert_eq!(log.due(t1 + Duration::from_secs(10)), vec![(UID, 2)]);
        // A quiet interval: forgotten, and the next one is logged in full.
        assert!(log.due(t1 + Duration::from_secs(20)).is_empty());
        assert_eq!(log.next_due(), None);
        assert_eq!(log.record(UID, t1 + Duration::from_secs(21)), Some(UID));
    }

    #[test]
    fn kinds_and_uids_are_counted_separately() {
        let t0 = Instant::now();
        let mut log = RefusalLog::new(Duration::from_secs(10));
        let other = Refusal::OtherUser(Some(1002));
        assert_eq!(log.record(UID, t0), Some(UID));
        assert_eq!(log.record(other, t0), Some(other));
        assert_eq!(log.record(Refusal::Busy, t0), Some(Refusal::Busy));
        assert_eq!(log.record(UID, t0), None);
        assert_eq!(log.record(Refusal::Busy, t0), None);
        assert_eq!(log.record(Refusal::Busy, t0), None);
        assert_eq!(
            log.drain(),
            vec![(Refusal::Busy, 2), (UID, 1)],
            "drain reports every count not yet logged"
        );
        assert_eq!(log.next_due(), None);
    }

    #[test]
    fn many_uids_share_one_count() {
        let t0 = Instant::now();
        let mut log = RefusalLog::new(Duration::from_secs(10));
        for uid in 0..MAX_UIDS as u32 {
            assert!(log.record(Refusal::OtherUser(Some(uid)), t0).is_some());
        }
        let shared = Refusal::OtherUser(None);
        assert_eq!(log.record(Refusal::OtherUser(Some(9999)), t0), Some(shared));
        assert_eq!(log.record(Refusal::OtherUser(Some(9998)), t0), None);
        assert_eq!(log.windows.len(), MAX_UIDS + 1);
        assert_eq!(log.drain(), vec![(shared, 1)]);
    }
}
