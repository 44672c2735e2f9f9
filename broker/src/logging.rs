//! `tracing` to stderr with `RUST_LOG`-style filtering (default `info`).
//!
//! Under systemd (`JOURNAL_STREAM` names stderr) lines carry no timestamp of
//! their own, since the journal adds one, and start with a `<N>` syslog priority
//! (see `systemd::journal`). No log line ever contains a token: secrets are
//! `SecretString`, whose `Debug` prints `[REDACTED]`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = crate::systemd::stderr_is_journal();
    let color = !journal
        && std::env::var_os("NO_COLOR").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false);
    if journal {
        // No timestamp (journald adds one) and a `<N>` priority prefix.
        builder
            .event_format(crate::systemd::JournalPriority::new(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_target(false),
            ))
            .init();
    } else {
        builder.init();
    }
}
