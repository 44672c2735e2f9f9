//! The checks made on a broker that answered: its login, the clocks, its
//! projection targets, and the permissions of its config and state files
//! (when they are on this machine).

use super::super::{exit, output};
use super::finding::Finding;
use super::reach::Reached;
use crate::trusted_path;
use oauth_broker_client::proto::{ProjectionStatus, StatusReport, TokenState};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A clock this far from the broker's makes tools misjudge expiry: the
/// broker hands out tokens with a minute or more left, and tools refresh on
/// their own a few minutes before expiry.
const CLOCK_WARN: Duration = Duration::from_secs(30);

/// Login state and access-token expiry.
pub fn login(report: &StatusReport, now: u64) -> Finding {
    let expiry = report
        .access_token_expires_at
        .map(|at| output::absolute_and_relative(at, now));
    match report.state {
        TokenState::ReloginRequired => relogin(report),
        _ if report.relogin_required => relogin(report),
        TokenState::LoggedOut => Finding::fail(
            "login",
            exit::NEEDS_LOGIN,
            "not logged in",
            "run `brokerctl relogin` or `brokerctl import`",
        ),
        TokenState::Expired => {
            let why = report
                .last_error
                .as_ref()
                .map_or("the token endpoint is failing".to_string(), |e| {
                    format!("{}: {}", e.code, e.message)
                });
            Finding::fail(
                "login",
                exit::UPSTREAM_UNAVAILABLE,
                format!("the access token expired and refreshing fails ({why}); the broker keeps retrying"),
                report
                    .last_error
                    .as_ref()
                    .and_then(|e| e.hint.clone())
                    .unwrap_or_else(|| "check the network path to the token endpoint; the broker retries on its own".into()),
            )
        }
        TokenState::Valid | TokenState::Refreshing => match (&report.degraded, expiry) {
            (Some(why), _) => Finding::warn(
                "login",
                format!("logged in, but the broker cannot save its state: {why}"),
                "free disk space or fix the state directory; tokens keep flowing meanwhile",
            ),
            (None, Some(expiry)) => {
                Finding::ok("login", format!("logged in; access token expires {expiry}"))
            }
            (None, None) => Finding::ok("login", "logged in"),
        },
    }
}

fn relogin(report: &StatusReport) -> Finding {
    let reason = report.relogin_reason.as_deref().unwrap_or("unknown reason");
    Finding::fail(
        "login",
        exit::NEEDS_LOGIN,
        format!("the login is dead ({reason}): the provider refused the refresh token"),
        "run `brokerctl relogin` (or `brokerctl import`)",
    )
}

/// This machine's wall clock against the broker's (which may run on another
/// host, over a forwarded socket).
pub fn clock(reached: &Reached) -> Finding {
    let Some(broker_ms) = reached.report.now_ms else {
        return Finding::ok(
            "clock",
            "not compared: the broker is older than this brokerctl",
        );
    };
    let ms = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i128)
    };
    let (before, after) = (ms(reached.asked_at), ms(reached.answered_at));
    let broker = i128::from(broker_ms);
    // The broker's clock was read between `before` and `after`.
    let skew_ms = if broker < before {
        before - broker
    } else if broker > after {
        broker - after
    } else {
        0
    };
    let skew = Duration::from_millis(u64::try_from(skew_ms).unwrap_or(u64::MAX));
    if skew <= CLOCK_WARN {
        return Finding::ok(
            "clock",
            format!(
                "this machine's clock agrees with the broker's (within {}s)",
                CLOCK_WARN.as_secs()
            ),
        );
    }
    let direction = if broker < before {
        "ahead of"
    } else {
        "behind"
    };
    Finding::warn(
        "clock",
        format!(
            "this machine's clock is {}s {direction} the broker's: tools here misjudge when tokens expire",
            skew.as_secs()
        ),
        "synchronise the clocks (e.g. `timedatectl set-ntp true`) on both machines",
    )
}

/// One line per projection target: written, fresh, untouched by the tool.
pub fn projection(target: &ProjectionStatus, report: &StatusReport, now: u64) -> Finding {
    let name = format!("{} -> {}", target.kind, target.path);
    if let Some(wrote) = &target.tool_wrote {
        let what = match (wrote.refresh_token, wrote.unknown_access_token) {
            (true, true) => {
                "a refresh token of its own and an access token the broker never issued"
            }
            (true, false) => "a refresh token of its own",
            _ => "an access token the broker never issued",
        };
        return Finding::fail(
            "projection",
            exit::OTHER,
            format!(
                "{name}: {} refreshed or logged in on its own (found {}): the file held {what} (the broker wrote its own again)",
                target.kind,
                output::relative(wrote.at, now)
            ),
            format!(
                "do not log {} in by itself while the broker feeds it (a second login of the account competes with the broker's); if it refreshed because its token was close to expiry, raise refresh_margin_secs of this [[project]] entry. The finding stays until brokerd restarts",
                target.kind
            ),
        );
    }
    if let Some(err) = &target.last_error {
        return Finding::fail(
            "projection",
            exit::OTHER,
            format!("{name}: failing: {err}"),
            "see the message; the broker keeps trying and token service is unaffected",
        );
    }
    let mut message = name;
    if target.write.as_deref() == Some("in-place") {
        let why = target.write_reason.as_deref().unwrap_or("configured");
        message.push_str(&format!(", written in place ({why})"));
    }
    match (&target.token_id, &report.token_id, target.last_write_at) {
        (_, _, None) => Finding::warn(
            "projection",
            format!("{message}: not written yet"),
            "it is written once the broker holds an access token",
        ),
        (Some(written), Some(current), Some(at)) if written != current => Finding::warn(
            "projection",
            format!(
                "{message}: holds an older token than the broker's (written {})",
                output::relative(at, now)
            ),
            "it is rewritten within seconds of a refresh; if this persists, see the broker's log",
        ),
        (_, _, Some(at)) => Finding::ok(
            "projection",
            format!(
                "{message}: holds the broker's current token (written {})",
                output::relative(at, now)
            ),
        ),
    }
}

/// The config file and the state directory, checked as brokerd checks them
/// at start (it refuses to start otherwise). Only when they exist on this
/// machine: over a forwarded socket they live on the broker's host.
pub fn files(report: &StatusReport) -> Vec<Finding> {
    files_at(
        report.config_file.as_deref().map(Path::new),
        report.state_dir.as_deref().map(Path::new),
    )
}

/// Like [`files`], for a broker that did not answer: its default files for
/// `account`, where present (brokerd refuses to start when they are not
/// private, which is then why it is not running).
pub fn default_files(account: &str) -> Vec<Finding> {
    let config = crate::paths::default_config_file(account).ok();
    let state = crate::paths::default_state_dir(account).ok();
    let mut findings = Vec::new();
    if let Some(config) = config.as_deref().filter(|c| c.exists()) {
        findings.push(config_file(config));
    }
    if let Some(state) = state.as_deref().filter(|s| s.exists()) {
        findings.push(state_dir(state));
    }
    findings
}

fn files_at(config: Option<&Path>, state: Option<&Path>) -> Vec<Finding> {
    let report_state_dir = state;
    let mut findings = Vec::new();
    match config {
        Some(config) if config.exists() => findings.push(config_file(config)),
        Some(config) => findings.push(Finding::ok(
            "config",
            format!(
                "{} is not on this machine (checked by the broker at start)",
                config.display()
            ),
        )),
        None if report_state_dir.is_some() => findings.push(Finding::ok(
            "config",
            "no config file: the embedded default",
        )),
        None => {}
    }
    if let Some(dir) = report_state_dir {
        findings.push(state_dir(dir));
    }
    findings
}

fn config_file(config: &Path) -> Finding {
    let checked = std::fs::metadata(config)
        .map_err(|source| trusted_path::Untrusted::Inspect {
            path: config.to_path_buf(),
            source,
        })
        .and_then(|meta| trusted_path::check_file_meta(&meta, config))
        .and_then(|()| {
            trusted_path::check_parents(config, trusted_path::home_from_env().as_deref())
        });
    match checked {
        Ok(()) => Finding::ok(
            "config",
            format!("{}: writable only by its owner", config.display()),
        ),
        Err(untrusted) => Finding::fail(
            "config",
            exit::OTHER,
            untrusted.refusal(
                "config file",
                config,
                "whoever can write it decides where the refresh token is sent, and brokerd refuses to start with it",
            ),
            match &untrusted {
                trusted_path::Untrusted::Writable { path, .. } => {
                    format!("run `chmod go-w {}`", path.display())
                }
                _ => "keep the config file in a directory of your own".to_string(),
            },
        ),
    }
}

fn state_dir(dir: &Path) -> Finding {
    if !dir.exists() {
        return Finding::ok(
            "state",
            format!(
                "{} is not on this machine (checked by the broker at start)",
                dir.display()
            ),
        );
    }
    let found = crate::store::check_permissions(dir);
    match found.first() {
        None => Finding::ok(
            "state",
            format!(
                "{}: private to its owner (0700, state file 0600)",
                dir.display()
            ),
        ),
        Some(problem) => {
            let text = problem.to_string();
            let (message, fix) = match text.split_once("; ") {
                Some((message, fix)) => (message.to_string(), fix.to_string()),
                None => (text.clone(), "make it private to its owner".to_string()),
            };
            Finding::fail(
                "state",
                exit::OTHER,
                format!("{message}: the state holds the refresh token, and brokerd refuses to start with it"),
                fix.trim_end_matches(" and start again").to_string(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::finding::Level;
    use super::*;
    use oauth_broker_client::proto::ToolWrote;

    const NOW: u64 = 1_700_000_000;

    fn reached(broker_ms: u64, asked_ms: u64, answered_ms: u64) -> Reached {
        let at = |ms| UNIX_EPOCH + Duration::from_millis(ms);
        Reached {
            report: serde_json::from_value(serde_json::json!({
                "broker_version": "0.1.0", "pid": 1, "account": "default",
                "provider": "generic", "state": "valid", "now_ms": broker_ms,
            }))
            .unwrap(),
            asked_at: at(asked_ms),
            answered_at: at(answered_ms),
        }
    }

    #[test]
    fn the_clock_is_compared_within_the_request_round_trip() {
        let ms = NOW * 1000;
        assert_eq!(clock(&reached(ms + 500, ms, ms + 1000)).level, Level::Ok);
        assert_eq!(clock(&reached(ms - 20_000, ms, ms + 10)).level, Level::Ok);
        let ahead = clock(&reached(ms - 45_000, ms, ms + 10));
        assert_eq!(ahead.level, Level::Warn);
        assert!(ahead.message.contains("45s ahead of"), "{}", ahead.message);
        let behind = clock(&reached(ms + 90_000, ms, ms + 10));
        assert!(behind.message.contains("89s behind"), "{}", behind.message);
    }

    #[test]
    fn a_target_is_fresh_stale_failing_or_taken_over_by_its_tool() {
        let report: StatusReport = reached(0, 0, 0).report;
        let mut report = report;
        report.token_id = Some("aaaaaaaaaaaa".into());
        let mut target = ProjectionStatus {
            kind: "codex".into(),
            path: "/h/.codex/auth.json".into(),
            last_write_at: Some(NOW - 5),
            last_error: None,
            write: Some("in-place".into()),
            write_reason: Some("configured".into()),
            token_id: Some("aaaaaaaaaaaa".into()),
            tool_wrote: None,
        };
        let fresh = projection(&target, &report, NOW);
        assert_eq!(fresh.level, Level::Ok);
        assert!(fresh.message.contains("written in place (configured)"));
        target.token_id = Some("bbbbbbbbbbbb".into());
        assert_eq!(projection(&target, &report, NOW).level, Level::Warn);
        target.last_error = Some("cannot write: disk full".into());
        assert_eq!(projection(&target, &report, NOW).exit_code, exit::OTHER);
        target.tool_wrote = Some(ToolWrote {
            at: NOW - 180,
            refresh_token: false,
            unknown_access_token: true,
        });
        let taken = projection(&target, &report, NOW);
        assert_eq!(taken.level, Level::Fail);
        assert!(
            taken.message.contains("on its own (found 3m ago)"),
            "{}",
            taken.message
        );
        assert!(taken
            .message
            .contains("an access token the broker never issued"));
    }
}
