//! [`BrokerSpec`]: what to start.
//!
//! Plain data with public fields so tests can tweak any part; `Clone` so a
//! test can restart "the same broker" after killing it (crash recovery).

use std::path::PathBuf;

use super::env::TestEnv;

/// The default `RUST_LOG`: everything the broker says, at trace level, so a
/// secret-leak grep of the logs covers every log line there is.
pub const DEFAULT_RUST_LOG: &str = "oauth_broker=trace,info";

#[derive(Debug, Clone)]
pub struct BrokerSpec<'a> {
    /// Path of the `brokerd` binary (`env!("CARGO_BIN_EXE_brokerd")`).
    pub brokerd: PathBuf,
    pub env: &'a TestEnv,
    /// Account name; also names the config file and the socket.
    pub account: String,
    /// Written to `<root>/config/<account>.toml` (mode 0600).
    pub config_toml: String,
    /// Added after the base environment (may override it).
    pub extra_env: Vec<(String, String)>,
    pub rust_log: String,
}

impl<'a> BrokerSpec<'a> {
    /// Account `default`, no extra env, [`DEFAULT_RUST_LOG`].
    pub fn new(
        brokerd: impl Into<PathBuf>,
        env: &'a TestEnv,
        config_toml: impl Into<String>,
    ) -> Self {
        Self {
            brokerd: brokerd.into(),
            env,
            account: "default".to_owned(),
            config_toml: config_toml.into(),
            extra_env: Vec::new(),
            rust_log: DEFAULT_RUST_LOG.to_owned(),
        }
    }

    /// Same spec with another account name.
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = account.into();
        self
    }

    /// Same spec with one more environment variable.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_env.push((key.into(), value.into()));
        self
    }
}
