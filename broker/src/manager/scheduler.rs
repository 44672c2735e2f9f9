//! The background task that refreshes before expiry and retries failed writes.

use super::state::Next;
use super::Inner;
use crate::clock::saturating_diff;
use std::sync::Arc;
use std::time::Duration;

/// Longest single sleep. Timers run on the monotonic clock, which stops during
/// suspend; waking at least this often re-reads the wall clock so a laptop that
/// slept past a refresh point refreshes promptly.
const MAX_SLEEP: Duration = Duration::from_secs(15);

pub(super) async fn run(inner: Arc<Inner>) {
    loop {
        let mut changes = inner.snapshot.subscribe();
        let now = inner.clock.now();
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
            Next::At(at) => saturating_diff(at, now).min(MAX_SLEEP),
            Next::Idle => MAX_SLEEP,
        };
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = changes.changed() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
