//! The one fixture of the broker's end-to-end and reliability tests: the real
//! `brokerd` on a temp dir against the fake authorization server on a real
//! loopback port, logins imported through the real `brokerctl`
//! ([`Broker::builder`]), plus the observations the tests share.
//!
//! Why one: every test drives the same broker process the same way (start,
//! import, client, brokerctl, logs, restart); what differs is configuration,
//! and that is what the builder's options express.

#![allow(dead_code)]

mod broker;
mod issue_order;
mod login_child;
mod observe;
mod projection;
mod served;
pub mod token_hammer;

pub use broker::{default_config, Broker, BrokerBuilder, DEFAULT_REFRESH};
pub use login_child::{query_param, LoginChild, STEP};
pub use observe::{
    brokerd_with_low_nofile, eventually, open_files_limits, read_state_dir, sleep_until_unix,
    vm_rss_kib,
};
pub use projection::{file_token, fingerprint, jwt_fake, mode, PLACEHOLDER};
pub use served::token_unexpired_when_asked;

use oauth_broker_tests::fake_server::FakeConfig;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

/// The real daemon binary.
pub fn brokerd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_brokerd"))
}

/// The real admin CLI.
pub fn brokerctl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_brokerctl"))
}

/// A fake server config with the given access-token lifetime.
pub fn fake_with_ttl(ttl: Duration) -> FakeConfig {
    FakeConfig {
        access_ttl: ttl,
        ..FakeConfig::default()
    }
}

pub fn stdout(out: &Output) -> String {
    text(&out.stdout)
}

pub fn stderr(out: &Output) -> String {
    text(&out.stderr)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
