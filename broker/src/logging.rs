//! `tracing` to stderr with `RUST_LOG`-style filtering (default `info`).
//!
//! Under systemd (`JOURNAL_STREAM` set) lines carry no timestamp of their own,
//! since the journal adds one. No log line ever contains a token: secrets are
//! `SecretString`, whose `Debug` prints `[REDACTED]`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let color = !journal
        && std::env::var_os("NO_COLOR").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false);
    if journal {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
