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

/// `$XDG_RUNTIME_DIR/oauth-broker/<account>.sock` — the same rule the client
/// crate uses, so both ends agree without configuration.
pub fn default_socket_path(account: &str) -> anyhow::Result<PathBuf> {
    let runtime = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(format!("/run/user/{}", nix::unistd::getuid())),
    };
    Ok(runtime.join("oauth-broker").join(format!("{account}.sock")))
}

/// Account names become file names: keep them to a safe alphabet.
pub fn validate_account(account: &str) -> anyhow::Result<()> {
    let ok = !account.is_empty()
        && account.len() <= 64
        && account
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !account.starts_with('.');
    if ok {
        Ok(())
    } else {
        anyhow::bail!(
            "invalid account name {account:?}: use 1-64 letters, digits, '-', '_' or '.' (not starting with '.')"
        )
    }
}
