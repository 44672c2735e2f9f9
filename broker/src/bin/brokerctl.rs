//! `brokerctl`: administer the oauth-broker daemon and get tokens from it.
//! Everything lives in [`oauth_broker::ctl`].
//!
//! `#![no_main]`: the process starts in the C `main` below instead of std's
//! start-up, which `ctl::start` replaces with the parts brokerctl needs (why:
//! `brokerctl token` is a whole process per token; see that module).
#![no_main]

use std::ffi::{c_char, c_int};

/// The process entry point (glibc's `__libc_start_main` calls it).
#[no_mangle]
pub extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    oauth_broker::ctl::start::run(oauth_broker::ctl::main)
}
