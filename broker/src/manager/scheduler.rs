//! The background task that refreshes before expiry and retries failed writes.
//!
//! Why it never sleeps long: tokio's timers run on `CLOCK_MONOTONIC`, which
//! stops while the machine is suspended, and the refresh point is a
//! [`Deadline`](crate::clock::Deadline) on two other clocks (boottime, which
//! counts suspend, and the wall clock, which can be stepped either way). A
//! sleep computed from them once can therefore end late: after a suspend
//! (the suspended time is not slept off) or after a wall-clock step forward
//! (which brings the wall deadline nearer). So every sleep is capped at
//! [`MAX_SLEEP`] and, on each wake-up, the decision is taken again from fresh
//! readings of both clocks. A wall clock stepped back cannot stretch a sleep
//! at all: the wait is the smaller of what the two clocks say, and boottime
//! never jumps.

use super::state::Next;
use super::Inner;
use std::sync::Arc;
use std::time::Duration;

/// Longest single sleep: the most a proactive refresh can be late after a
/// resume from suspend or a wall-clock step forward. Tokens themselves are
/// never served late: every request checks both clocks.
const MAX_SLEEP: Duration = Duration::from_secs(15);

pub(super) async fn run(inner: Arc<Inner>) {
    loop {
        let mut changes = inner.snapshot.subscribe();
        let now = inner.clock.read();
        let next = {
            let mut st = inner.lock();
            let next = st.next(now);
            if let Next::Refresh = next {
                super::refresh::start(&inner, &mut st, super::refresh::Trigger::Scheduled);
            }
            next
        };
        let sleep = match next {
            Next::Refresh => continue,
            Next::Persist => {
                super::refresh::persist_retry(&inner).await;
                continue;
            }
            Next::After(wait) => wait.min(MAX_SLEEP),
            Next::Idle => MAX_SLEEP,
        };
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = changes.changed() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
