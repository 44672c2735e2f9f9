//! Waiting for a condition with exponential backoff.
//!
//! Why backoff instead of a fixed sleep: a daemon is usually ready within a
//! few milliseconds; polling at 1 ms, 2 ms, 4 ms … capped at 50 ms finds
//! that quickly without spinning, and a fixed 100 ms sleep would slow every
//! test down. Used where no notification exists: a socket becoming
//! connectable, a child process exiting.

use std::time::{Duration, Instant};

/// 1 ms doubling to 50 ms until a deadline.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    deadline: Instant,
}

impl Backoff {
    pub fn new(timeout: Duration) -> Self {
        Self {
            next: Duration::from_millis(1),
            max: Duration::from_millis(50),
            deadline: Instant::now() + timeout,
        }
    }

    /// Sleeps for the next step; false (without sleeping) once the deadline
    /// has passed.
    pub fn wait(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        std::thread::sleep(self.next.min(self.deadline - now));
        self.next = (self.next * 2).min(self.max);
        true
    }

    /// Polls `f` until it returns `Some`, or `None` at the deadline.
    pub fn until<T>(mut self, mut f: impl FnMut() -> Option<T>) -> Option<T> {
        loop {
            if let Some(v) = f() {
                return Some(v);
            }
            if !self.wait() {
                return f();
            }
        }
    }
}
