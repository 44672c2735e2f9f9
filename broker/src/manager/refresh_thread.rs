//! The thread refreshes run on: a single-threaded runtime of their own.
//!
//! Why not the daemon's runtime: when many clients ask at once — a laptop
//! waking from suspend finds every agent's token expired — the daemon's two
//! workers are busy reading hundreds of queued requests, and a refresh
//! spawned among them waits its turn after every step (the marker write, the
//! token endpoint's answer, the result write). Every one of those requests is
//! waiting for that very refresh. On a thread of its own the refresh's steps
//! run as soon as they are ready, and the kernel schedules that thread beside
//! the workers (measured: `bench --only storm`, README "Performance").
//!
//! The refresh's HTTP connection to the token endpoint is opened and driven
//! here too, and its durable state writes are made here directly: this
//! thread has nothing else to do while a write is under way, and handing it
//! to a blocking pool costs a thread wake-up on the critical path.

use std::io;
use tokio::runtime::{Builder, Handle};

/// Starts the refresh thread and returns its runtime's handle. The thread
/// lives as long as the process: the manager's task tracker, not the thread,
/// decides when a refresh has finished (shutdown waits for it there).
pub fn spawn() -> io::Result<Handle> {
    let runtime = Builder::new_current_thread().enable_all().build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("refresh".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// Whether the caller runs on the runtime of `handle` (the refresh thread).
pub(super) fn on(handle: &Handle) -> bool {
    Handle::try_current().is_ok_and(|current| current.id() == handle.id())
}
