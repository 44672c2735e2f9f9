//! `brokerctl`'s process start-up, in place of std's.
//!
//! Why: `brokerctl token` is a whole process per token, and std's start-up
//! for `fn main` costs a fifth of a Rust no-op process on Linux: to place the
//! main thread's stack guard it reads and parses `/proc/self/maps`
//! (`pthread_getattr_np`) and installs an alternate signal stack and SIGSEGV
//! and SIGBUS handlers that only turn a stack overflow into a message — 19 of
//! a static no-op's 33 system calls and 0.17 ms of its CPU time on the
//! benchmark machine (README "Performance"). So `brokerctl` has `#![no_main]`
//! and a C `main` that calls [`run`], which keeps every part of std's
//! start-up and exit that brokerctl's behaviour depends on:
//!
//! * standard descriptors 0–2 that are closed are opened on `/dev/null`
//!   first, as std does: otherwise the socket could become fd 1 and the token
//!   would be written into it;
//! * SIGPIPE is ignored, as std does: a reader that went away is an `EPIPE`
//!   error that brokerctl reports with its exit code, not a silent death;
//! * a panic is caught and exits with 101, as std does (unwinding out of a C
//!   `main` would abort instead);
//! * stdout is flushed before exit, as std does after `main` returns.
//!
//! Arguments and the environment need nothing: glibc hands them to std before
//! `main` (std reads them from `.init_array`). What is lost is only the
//! "has overflowed its stack" message: a stack overflow is a plain SIGSEGV.

use std::ffi::c_int;
use std::io::Write as _;
use std::os::fd::{AsRawFd as _, BorrowedFd, IntoRawFd as _};
use std::process::ExitCode;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use nix::sys::signal::{signal, SigHandler, Signal};

/// Exit status of a panic, as with std's start-up.
const PANIC_STATUS: c_int = 101;

/// Runs `main` as std's start-up would, and returns the process's exit status.
pub fn run(main: fn() -> ExitCode) -> c_int {
    open_missing_standard_fds();
    // SAFETY: ignoring a signal installs no handler code; nothing else in the
    // process has touched SIGPIPE yet (no threads exist).
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    let status = match std::panic::catch_unwind(main) {
        Ok(code) => exit_status(code),
        Err(_) => PANIC_STATUS,
    };
    let _ = std::io::stdout().flush();
    status
}

/// Opens `/dev/null` on whichever of fds 0, 1, 2 is closed (lowest first, so
/// each `open` lands on the gap). If even that fails, std aborts; so do we.
fn open_missing_standard_fds() {
    for fd in 0..=2 {
        // SAFETY: only asked whether the descriptor is open; never closed or
        // used through this handle.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if fcntl(borrowed, FcntlArg::F_GETFD) != Err(Errno::EBADF) {
            continue;
        }
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            Ok(file) if file.as_raw_fd() == fd => {
                let _ = file.into_raw_fd();
            }
            _ => std::process::abort(),
        }
    }
}

/// The status an [`ExitCode`] stands for. std keeps it private; every
/// `ExitCode` brokerctl makes comes from a `u8`, so the one equal to it is
/// found among the 256.
fn exit_status(code: ExitCode) -> c_int {
    (0..=u8::MAX)
        .find(|&n| ExitCode::from(n) == code)
        .map_or(1, c_int::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_code_keeps_its_status() {
        for n in 0..=u8::MAX {
            assert_eq!(exit_status(ExitCode::from(n)), c_int::from(n));
        }
        assert_eq!(exit_status(ExitCode::SUCCESS), 0);
        assert_eq!(exit_status(ExitCode::FAILURE), 1);
    }
}
