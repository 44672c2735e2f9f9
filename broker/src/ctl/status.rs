//! `brokerctl status`: what the broker holds and how healthy it is.
//!
//! The exit code makes it usable as a health check: 0 when tokens can be
//! served, 2 when a human must log in, 3 when no broker answers, 4 when the
//! token endpoint is failing and no cached token is valid.

use super::{exit, output, Global};
use clap::Args;
use oauth_broker_client::proto::{StatusReport, TokenState};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::SystemTime;

/// Show the broker's state.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the broker's status report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(global: &Global, args: &StatusArgs) -> ExitCode {
    let report = match global.connect().and_then(|mut client| client.status()) {
        Ok(report) => report,
        Err(err) => return exit::fail(&err),
    };
    let text = if args.json {
        match serde_json::to_string(&report) {
            Ok(json) => json + "\n",
            Err(err) => {
                return exit::fail_with(
                    exit::OTHER,
                    format_args!("cannot encode the status as JSON: {err}"),
                )
            }
        }
    } else {
        let text = render(&report, output::unix_secs(SystemTime::now()));
        if super::colour::stdout_enabled() {
            super::colour::highlight_state_line(&text, report.state)
        } else {
            text
        }
    };
    match output::stdout(&text) {
        Ok(()) => ExitCode::from(exit_code(&report)),
        Err(err) => exit::stdout_failed(err),
    }
}

/// 0 healthy, 2 login needed, 4 upstream failing without a valid token.
pub fn exit_code(report: &StatusReport) -> u8 {
    match report.state {
        _ if report.relogin_required => exit::NEEDS_LOGIN,
        TokenState::LoggedOut | TokenState::ReloginRequired => exit::NEEDS_LOGIN,
        TokenState::Expired => exit::UPSTREAM_UNAVAILABLE,
        TokenState::Valid | TokenState::Refreshing => exit::OK,
    }
}

/// The human-readable report; `now` in unix seconds (for "in 53m").
pub fn render(report: &StatusReport, now: u64) -> String {
    // Collected first, printed after: every value starts in one column, one
    // space after the longest label present ("revocation endpoint:" included).
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut line = |label: &str, value: &str| lines.push((format!("{label}:"), value.to_string()));
    let when = |unix: u64| output::absolute_and_relative(unix, now);

    match &report.account_id {
        Some(id) => line("account", &format!("{} (account id {id})", report.account)),
        None => line("account", &report.account),
    }
    line("provider", &report.provider);
    line("state", report.state.as_str());
    match report.state {
        TokenState::LoggedOut => line(
            "login",
            "not logged in: run `brokerctl relogin` or `brokerctl import`",
        ),
        _ if report.relogin_required || report.state == TokenState::ReloginRequired => {
            let reason = report.relogin_reason.as_deref().unwrap_or("unknown reason");
            line(
                "relogin",
                &format!("required ({reason}): run `brokerctl relogin`"),
            );
        }
        _ => {}
    }
    if let Some(expires_at) = report.access_token_expires_at {
        let verb = if expires_at > now {
            "expires"
        } else {
            "expired"
        };
        let mut value = format!("{verb} {}", when(expires_at));
        if let Some(id) = &report.token_id {
            let _ = write!(value, ", token id {id}");
        }
        line("access token", &value);
    }
    if !report.scopes.is_empty() {
        line("scopes", &report.scopes.join(" "));
    }
    let refreshes = match report.refresh_count {
        1 => "1 refresh so far".to_string(),
        n => format!("{n} refreshes so far"),
    };
    match report.last_refresh_at {
        Some(at) => line("last refresh", &format!("{}, {refreshes}", when(at))),
        None => line("last refresh", &format!("never, {refreshes}")),
    }
    if let Some(at) = report.next_refresh_at {
        line("next refresh", &when(at));
    }
    if let Some(err) = &report.last_error {
        line(
            "last error",
            &format!(
                "{}: {} ({})",
                err.code,
                err.message,
                output::relative(err.at, now)
            ),
        );
        if let Some(hint) = &err.hint {
            line("  hint", hint);
        }
    }
    if let Some(reason) = &report.degraded {
        line(
            "degraded",
            &format!("{reason} (tokens are still served; the broker retries saving them)"),
        );
    }
    let forced = &report.forced_refresh;
    if forced.suppressed > 0 || forced.next_allowed_at.is_some() {
        let mut value = match forced.suppressed {
            1 => "1 answered with the current token instead of a refresh".to_string(),
            n => format!("{n} answered with the current token instead of a refresh"),
        };
        if forced.suppressed > 0 {
            value.push_str(
                " (a fresh token was refused again: check the API's scope, base URL and account)",
            );
        }
        if let Some(at) = forced.next_allowed_at {
            let _ = write!(value, "; next forced refresh {}", when(at));
        }
        line("401 reports", &value);
    }
    let endpoints = &report.endpoints;
    for (label, url) in [
        ("issuer", &endpoints.issuer),
        ("token", &endpoints.token_endpoint),
        ("authorize", &endpoints.authorization_endpoint),
        ("device", &endpoints.device_authorization_endpoint),
        ("revocation", &endpoints.revocation_endpoint),
        ("exchange", &endpoints.exchange_endpoint),
    ] {
        if let Some(url) = url {
            line(&format!("{label} endpoint"), url);
        }
    }
    for projection in &report.projections {
        let mut value = format!("{} -> {}", projection.kind, projection.path);
        if let Some(at) = projection.last_write_at {
            let _ = write!(value, ", written {}", output::relative(at, now));
        }
        if projection.write.as_deref() == Some("in-place") {
            match &projection.write_reason {
                Some(why) => {
                    let _ = write!(value, ", in place ({why})");
                }
                None => value.push_str(", in place"),
            }
        }
        if let Some(err) = &projection.last_error {
            let _ = write!(value, ", failing: {err}");
        }
        line("projection", &value);
    }
    for proxy in &report.proxies {
        line("proxy", &format!("{} -> {}", proxy.listen, proxy.upstream));
    }
    for key in &report.proxy_keys {
        let mut value = format!(
            "{}, issued {}, {} request{}",
            key.name,
            output::relative(key.created_at, now),
            key.requests,
            if key.requests == 1 { "" } else { "s" }
        );
        if let Some(at) = key.last_used_at {
            let _ = write!(value, ", last {}", output::relative(at, now));
        }
        line("proxy key", &value);
    }
    line(
        "broker",
        &format!(
            "oauth-broker {} (pid {})",
            report.broker_version, report.pid
        ),
    );
    align(&lines)
}

/// `label: value` lines with the values in one column, one space after the
/// longest label.
fn align(lines: &[(String, String)]) -> String {
    let width = lines
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = String::new();
    for (label, value) in lines {
        let _ = writeln!(out, "{label:<width$}{value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_client::proto::{EndpointInfo, LastError, ProjectionStatus};

    const NOW: u64 = 1_700_000_000;

    fn report(state: TokenState) -> StatusReport {
        StatusReport {
            broker_version: "0.1.0".into(),
            pid: 4242,
            account: "default".into(),
            provider: "openai-codex".into(),
            endpoints: EndpointInfo {
                token_endpoint: Some("https://auth.example.com/oauth/token".into()),
                ..EndpointInfo::default()
            },
            state,
            access_token_expires_at: Some(NOW + 53 * 60),
            token_id: Some("0123456789ab".into()),
            scopes: vec!["openid".into(), "offline_access".into()],
            last_refresh_at: Some(NOW - 7 * 60),
            next_refresh_at: None,
            refresh_count: 12,
            relogin_required: false,
            relogin_reason: None,
            last_error: None,
            degraded: None,
            account_id: Some("acct-1".into()),
            projections: vec![],
            config_file: None,
            state_dir: None,
            now_ms: None,
            forced_refresh: Default::default(),
            proxies: Vec::new(),
            proxy_keys: Vec::new(),
        }
    }

    #[test]
    fn healthy_report() {
        let text = render(&report(TokenState::Valid), NOW);
        assert_eq!(
            text,
            "\
account:        default (account id acct-1)
provider:       openai-codex
state:          valid
access token:   expires 2023-11-14 23:06:20 UTC (in 53m), token id 0123456789ab
scopes:         openid offline_access
last refresh:   2023-11-14 22:06:20 UTC (7m ago), 12 refreshes so far
token endpoint: https://auth.example.com/oauth/token
broker:         oauth-broker 0.1.0 (pid 4242)
"
        );
        assert_eq!(exit_code(&report(TokenState::Valid)), 0);
        assert_eq!(exit_code(&report(TokenState::Refreshing)), 0);
    }

    #[test]
    fn relogin_and_errors_are_explained() {
        let mut r = report(TokenState::ReloginRequired);
        r.relogin_required = true;
        r.relogin_reason = Some("refresh_token_reused".into());
        r.last_error = Some(LastError {
            code: "invalid_grant".into(),
            message: "refresh token already used".into(),
            hint: Some("run `brokerctl relogin`".into()),
            at: NOW - 30,
        });
        r.degraded = Some("cannot write /state/x.json: disk full".into());
        r.projections = vec![ProjectionStatus {
            kind: "codex".into(),
            path: "/home/u/.codex/auth.json".into(),
            last_write_at: Some(NOW - 120),
            last_error: Some("permission denied".into()),
            write: Some("in-place".into()),
            write_reason: Some("the file is a mount point".into()),
            token_id: None,
            tool_wrote: None,
        }];
        let text = render(&r, NOW);
        for expected in [
            "relogin:        required (refresh_token_reused): run `brokerctl relogin`\n",
            "last error:     invalid_grant: refresh token already used (30s ago)\n",
            "  hint:         run `brokerctl relogin`\n",
            "degraded:       cannot write /state/x.json: disk full",
            "projection:     codex -> /home/u/.codex/auth.json, written 2m ago, in place (the file is a mount point), failing: permission denied\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert_eq!(exit_code(&r), exit::NEEDS_LOGIN);
    }

    #[test]
    fn suppressed_forced_refreshes_are_shown() {
        let mut r = report(TokenState::Valid);
        assert!(!render(&r, NOW).contains("401 reports"));
        r.forced_refresh.suppressed = 99;
        r.forced_refresh.next_allowed_at = Some(NOW + 25);
        let text = render(&r, NOW);
        assert!(
            text.contains("401 reports:    99 answered with the current token instead of a refresh (a fresh token was refused again: check the API's scope, base URL and account); next forced refresh 2023-11-14 22:13:45 UTC (in 25s)\n"),
            "{text}"
        );
    }

    #[test]
    fn logged_out_and_expired() {
        let mut r = report(TokenState::LoggedOut);
        r.access_token_expires_at = None;
        r.last_refresh_at = None;
        r.refresh_count = 0;
        let text = render(&r, NOW);
        assert!(text.contains("login:          not logged in: run `brokerctl relogin`"));
        assert!(text.contains("last refresh:   never, 0 refreshes so far"));
        assert!(!text.contains("access token:"));
        assert_eq!(exit_code(&r), exit::NEEDS_LOGIN);

        let mut r = report(TokenState::Expired);
        r.access_token_expires_at = Some(NOW - 60);
        assert!(
            render(&r, NOW).contains("access token:   expired 2023-11-14 22:12:20 UTC (1m ago)")
        );
        assert_eq!(exit_code(&r), exit::UPSTREAM_UNAVAILABLE);
    }

    #[test]
    fn every_label_is_aligned_to_the_longest_one() {
        let mut r = report(TokenState::Valid);
        r.endpoints = EndpointInfo {
            issuer: Some("https://auth.example.com".into()),
            token_endpoint: Some("https://auth.example.com/oauth/token".into()),
            authorization_endpoint: Some("https://auth.example.com/authorize".into()),
            device_authorization_endpoint: Some("https://auth.example.com/device".into()),
            revocation_endpoint: Some("https://auth.example.com/revoke".into()),
            exchange_endpoint: None,
        };
        let text = render(&r, NOW);
        for expected in [
            "account:             default (account id acct-1)\n",
            "issuer endpoint:     https://auth.example.com\n",
            "authorize endpoint:  https://auth.example.com/authorize\n",
            "revocation endpoint: https://auth.example.com/revoke\n",
            "broker:              oauth-broker 0.1.0 (pid 4242)\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        // Every value starts in the same column, after at least one space.
        let column = |l: &str| {
            l.find(": ")
                .map(|i| i + 1 + l[i + 1..].len() - l[i + 1..].trim_start().len())
        };
        let columns: std::collections::BTreeSet<_> = text.lines().map(column).collect();
        assert_eq!(columns.len(), 1, "{text}");
    }

    #[test]
    fn json_is_the_status_report() {
        let r = report(TokenState::Valid);
        let value = serde_json::to_value(&r).unwrap();
        assert_eq!(value["state"], "valid");
        assert_eq!(value["refresh_count"], 12);
        let back: StatusReport = serde_json::from_value(value).unwrap();
        assert_eq!(back, r);
    }
}
