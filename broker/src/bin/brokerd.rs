//! `brokerd`: the per-account token broker daemon.

use clap::Parser;
use oauth_broker::{daemon, hardening, logging};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Before any secret is in memory and before threads exist.
    let hardened = hardening::harden_process();
    let args = daemon::Args::parse();
    logging::init();
    if let Err(e) = hardened {
        tracing::warn!("{e:#}");
    }
    match hardening::raise_open_files_limit() {
        Ok(limit) => tracing::debug!(limit, "open-files limit"),
        Err(e) => tracing::warn!("{e:#}"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("brokerd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daemon::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line on stderr (the journal under systemd); not also a log line.
            eprintln!("brokerd: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `e` and its causes on one line, leaving out a cause the message before it
/// already ends with (errors that print their source themselves would
/// otherwise show it twice: "…: File exists (os error 17): File exists (os
/// error 17)").
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(20);
        let store = oauth_broker::store::StoreError::Io {
            what: "cannot open lock file",
            path: "/s/lock".into(),
            source: io,
        };
        let line = one_line(&anyhow::Error::from(store));
        assert_eq!(line.matches("os error 20").count(), 1, "{line}");

        let wrapped = anyhow::anyhow!("inner cause").context("outer");
        assert_eq!(one_line(&wrapped), "outer: inner cause");
    }
}
