//! Connection slots: at most `max_connections` connections are served at once,
//! and at the limit the connection that has been idle the longest makes room.
//!
//! Why evict rather than refuse the newcomer: refusing lets 512 keep-alive
//! connections that idle for the whole idle timeout — or anyone who keeps
//! opening connections and never says a word — lock every client out.
//! An idle connection is the cheapest thing to give up: it holds no request,
//! and clients reconnect transparently on their next one. Only when every slot
//! is in the middle of a request is the newcomer answered `busy`.
//!
//! "Idle" means no complete request is being served: a connection waiting for
//! its hello, waiting between requests, or holding a frame that has not fully
//! arrived. "The longest" is measured with a counter of admissions and finished
//! requests, not a clock, so the order is exact. The claim on an idle slot is
//! one compare-and-swap, so a connection either starts its request or is
//! evicted, never both.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// `activity` of a connection that is serving a request.
const BUSY: u64 = 0;
/// `activity` of a connection that was chosen to make room.
const EVICTED: u64 = u64::MAX;

/// The slots of one server.
pub struct Slots {
    max: usize,
    /// Source of `activity` stamps: larger is more recent.
    clock: AtomicU64,
    held: Mutex<HashMap<u64, Arc<SlotState>>>,
    next_id: AtomicU64,
}

struct SlotState {
    /// `BUSY`, `EVICTED`, or the stamp of the moment the connection became idle.
    activity: AtomicU64,
    evicted: CancellationToken,
}

/// One admitted connection's slot; dropping it frees the slot.
pub struct Slot {
    id: u64,
    state: Arc<SlotState>,
    slots: Arc<Slots>,
}

/// The outcome of [`Slots::admit`].
pub enum Admission {
    /// A free slot.
    Admitted(Slot),
    /// The slot of the connection idle the longest, which is being closed.
    Evicted(Slot),
    /// Every slot is serving a request.
    Full,
}

impl Slots {
    /// Room for `max` connections (at least one).
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max: max.max(1),
            clock: AtomicU64::new(1),
            held: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// A slot for a new connection, taken from the connection idle the longest
    /// if all are held.
    pub fn admit(self: &Arc<Self>) -> Admission {
        let mut held = self.lock();
        let mut evicted = false;
        if held.len() >= self.max {
            // Each failed claim means that connection just started a request;
            // try the next oldest. Bounded: a slot leaves the candidates once
            // it is busy or evicted.
            loop {
                let oldest = held
                    .iter()
                    .filter_map(|(id, s)| {
                        let at = s.activity.load(Ordering::Acquire);
                        (at != BUSY && at != EVICTED).then_some((at, *id))
                    })
                    .min();
                let Some((at, id)) = oldest else {
                    return Admission::Full;
                };
                let state = held[&id].clone();
                if state
                    .activity
                    .compare_exchange(at, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    held.remove(&id);
                    state.evicted.cancel();
                    evicted = true;
                    break;
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(SlotState {
            activity: AtomicU64::new(self.stamp()),
            evicted: CancellationToken::new(),
        });
        held.insert(id, state.clone());
        drop(held);
        let slot = Slot {
            id,
            state,
            slots: self.clone(),
        };
        if evicted {
            Admission::Evicted(slot)
        } else {
            Admission::Admitted(slot)
        }
    }

    /// How many slots are held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().len()
    }

    fn stamp(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<SlotState>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Slot {
    /// Marks the connection as serving a request. False if it was evicted
    /// first: it may answer what it already received, then must close.
    pub fn begin_request(&self) -> bool {
        let mut at = self.state.activity.load(Ordering::Acquire);
        loop {
            if at == EVICTED {
                return false;
            }
            match self.state.activity.compare_exchange_weak(
                at,
                BUSY,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => at = now,
            }
        }
    }

    /// Marks the connection idle (from now on) after its request was answered.
    pub fn end_request(&self) {
        let stamp = self.slots.stamp();
        // Only a busy slot can become idle; an evicted one stays evicted.
        let _ =
            self.state
                .activity
                .compare_exchange(BUSY, stamp, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Completes when the slot was given to a newer connection.
    pub async fn evicted(&self) {
        self.state.evicted.cancelled().await
    }

    /// Whether the slot was given to a newer connection.
    #[cfg(test)]
    fn is_evicted(&self) -> bool {
        self.state.evicted.is_cancelled()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // An evicted slot was already removed (and its id is never reused).
        self.slots.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(a: Admission) -> Slot {
        match a {
            Admission::Admitted(s) => s,
            Admission::Evicted(_) => panic!("evicted although a slot was free"),
            Admission::Full => panic!("full although a slot was free"),
        }
    }

    fn evicting(a: Admission) -> Slot {
        match a {
            Admission::Evicted(s) => s,
            Admission::Admitted(_) => panic!("admitted without eviction at the limit"),
            Admission::Full => panic!("full although a connection was idle"),
        }
    }

    #[test]
    fn free_slots_are_given_until_the_limit() {
        let slots = Slots::new(2);
        let a = admitted(slots.admit());
        let b = admitted(slots.admit());
        assert_eq!(slots.held(), 2);
        drop(a);
        assert_eq!(slots.held(), 1);
        let _c = admitted(slots.admit());
        assert!(!b.is_evicted());
    }

    #[test]
    fn at_the_limit_the_connection_idle_the_longest_is_evicted() {
        let slots = Slots::new(3);
        let a = admitted(slots.admit());
        let b = admitted(slots.admit());
        let c = admitted(slots.admit());
        // a was admitted first but has just finished a request: b is now the
        // one idle the longest.
        assert!(a.begin_request());
        a.end_request();
        let d = evicting(slots.admit());
        assert!(b.is_evicted());
        assert!(!a.is_evicted() && !c.is_evicted() && !d.is_evicted());
        assert!(!b.begin_request(), "an evicted slot never becomes busy");
        assert_eq!(slots.held(), 3);
        // Next in line: c (admitted before a finished its request).
        let _e = evicting(slots.admit());
        assert!(c.is_evicted());
        // Dropping an evicted slot frees nothing more.
        drop(b);
        drop(c);
        assert_eq!(slots.held(), 3);
    }

    #[test]
    fn connections_serving_a_request_are_never_evicted() {
        let slots = Slots::new(2);
        let a = admitted(slots.admit());
        let b = admitted(slots.admit());
        assert!(a.begin_request());
        assert!(b.begin_request());
        assert!(matches!(slots.admit(), Admission::Full));
        b.end_request();
        let c = evicting(slots.admit());
        assert!(b.is_evicted());
        assert!(!a.is_evicted());
        // c is the newest, but the only idle one.
        let _d = evicting(slots.admit());
        assert!(c.is_evicted());
        assert!(!a.is_evicted());
    }

    #[tokio::test]
    async fn the_evicted_connection_is_told() {
        let slots = Slots::new(1);
        let a = admitted(slots.admit());
        let _b = evicting(slots.admit());
        tokio::time::timeout(std::time::Duration::from_secs(5), a.evicted())
            .await
            .expect("eviction is signalled");
    }
}
