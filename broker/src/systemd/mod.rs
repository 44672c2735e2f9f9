//! Fitting into systemd: socket activation, readiness and status notifications,
//! and clean journal output.
//!
//! Everything here is a no-op outside systemd: without `LISTEN_FDS` brokerd binds
//! its own socket, without `NOTIFY_SOCKET` notifications go nowhere, and without a
//! `JOURNAL_STREAM` that really is stderr the logs keep their timestamps. So the
//! same binary runs unchanged from a shell, a test or a user unit.

mod activation;
mod journal;
mod notify;

pub use activation::{take_listener, InheritedSocket};
pub use journal::{stderr_is_journal, JournalPriority};
pub use notify::{notify_ready, notify_stopping, spawn_status_updates, status_line};
