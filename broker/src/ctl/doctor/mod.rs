//! `brokerctl doctor`: checks the whole chain from this process to the
//! tools' credential files and says what to fix, one line per check.
//!
//! Socket (there? stale? whose?), broker (answers? busy? refuses this uid?
//! forwarded?), login (state, expiry), clock (this machine's against the
//! broker's), each projection target (fresh, failing, or "the tool refreshed
//! on its own"), and the permissions of the broker's config and state files.
//! Exit codes are `status`'s (see [`finding::exit_code`]). Like every
//! brokerctl command it asks the broker only what any client may ask, and it
//! prints no token: the broker reports fingerprints.

pub mod checks;
pub mod finding;
pub mod reach;

use super::{exit, output, Global};
use clap::Args;
use finding::{Finding, Level};
use std::process::ExitCode;
use std::time::SystemTime;

/// Check the broker, the login, the clocks, the projected files and the
/// permissions, and say what to fix.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON object: `{"exit_code":…,"findings":[{"check","level","message","fix"}]}`.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(global: &Global, args: &DoctorArgs) -> ExitCode {
    let findings = diagnose(global);
    let code = finding::exit_code(&findings);
    let text = if args.json {
        let value = serde_json::json!({ "exit_code": code, "findings": findings });
        value.to_string() + "\n"
    } else {
        render(&findings)
    };
    match output::stdout(&text) {
        Ok(()) => ExitCode::from(code),
        Err(err) => exit::stdout_failed(err),
    }
}

/// Every finding, in the order of the chain.
pub fn diagnose(global: &Global) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Some(reached) = reach::check(global, &mut findings) else {
        // The broker may not be running because it refuses its own files.
        let account = global
            .account
            .clone()
            .unwrap_or_else(crate::paths::account_from_env);
        if global.socket.is_none() {
            findings.extend(checks::default_files(&account));
        }
        return findings;
    };
    let now = output::unix_secs(SystemTime::now());
    let report = &reached.report;
    findings.push(checks::login(report, now));
    findings.push(checks::clock(&reached));
    for target in &report.projections {
        findings.push(checks::projection(target, report, now));
    }
    findings.extend(checks::files(report));
    findings
}

/// One line per finding: `ok|warn|FAIL  check  message; fix: …`.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!(
            "{:<4}  {:<10}  {}",
            f.level.label(),
            f.check,
            f.message
        ));
        if let (Some(fix), true) = (&f.fix, f.level != Level::Ok) {
            out.push_str("; fix: ");
            out.push_str(fix);
        }
        out.push('\n');
    }
    out
}
