//! Where things live by default (XDG base directories).

use etcetera::base_strategy::{BaseStrategy, Xdg};
use std::path::PathBuf;

/// The account used when none is given.
pub const DEFAULT_ACCOUNT: &str = "default";

fn xdg() -> anyhow::Result<Xdg> {
    Xdg::new().map_err(|e| anyhow::anyhow!("cannot find the home directory ({e}); set HOME"))
}

/// `$XDG_STATE_HOME/oauth-broker/<account>/` (default `~/.local/state/...`).
pub fn default_state_dir(account: &str) -> anyhow::Result<PathBuf> {
    let x = xdg()?;
    let base = x
        .state_dir()
        .unwrap_or_else(|| x.home_dir().join(".local/state"));
    Ok(base.join("oauth-broker").join(account))
}

/// `$XDG_CONFIG_HOME/oauth-broker/<account>.toml`.
pub fn default_config_file(account: &str) -> anyhow::Result<PathBuf> {
    Ok(xdg()?
        .config_dir()
        .join("oauth-broker")
        .join(format!("{account}.toml")))
}

/// The socket when `--socket` is not given: `OAUTH_BROKER_SOCKET`, else
/// `$XDG_RUNTIME_DIR/oauth-broker/<account>.sock` — computed by the client crate's
/// own discovery function, so both ends agree without configuration (including
/// its fallbacks when `XDG_RUNTIME_DIR` is unset).
pub fn default_socket_path(account: &str) -> anyhow::Result<PathBuf> {
    oauth_broker_client::default_socket_path(Some(account)).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The account when `--account` is not given: `OAUTH_BROKER_ACCOUNT` (if set and
/// not empty), else `default`.
pub fn account_from_env() -> String {
    std::env::var(oauth_broker_client::ACCOUNT_ENV)
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| DEFAULT_ACCOUNT.to_string())
}

/// Account names become file names: the client crate's rule, so that brokerd
/// and every client accept exactly the same names.
pub fn validate_account(account: &str) -> anyhow::Result<()> {
    oauth_broker_client::validate_account_name(account).map_err(|e| anyhow::anyhow!("{e}"))
}
