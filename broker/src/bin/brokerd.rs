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
            eprintln!("brokerd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
