//! `sd_notify(3)`: `READY=1`, `STATUS=…` and `STOPPING=1`.
//!
//! With `Type=notify` systemd (and every client queued on the activation
//! socket) waits until brokerd says `READY=1`, which it does once the socket is
//! serving. The `STATUS=` line is what `systemctl --user status oauth-broker`
//! shows next to the unit, so it says the one thing a user looks for there: is
//! the login alive, and if not, which command fixes it. It is a subscriber of the
//! token manager's change channel, like the projection targets: the manager
//! knows nothing about systemd. All of this does nothing without
//! `NOTIFY_SOCKET`.

use crate::ctl::output;
use crate::manager::TokenManager;
use oauth_broker_proto::{StatusReport, TokenState};
use sd_notify::NotifyState;
use std::path::Path;
use std::time::{Duration, SystemTime};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty())
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// `READY=1` plus the first status line: the socket is serving.
pub fn notify_ready(socket: &Path, status: &str) {
    if !enabled() {
        return;
    }
    tracing::debug!(socket = %socket.display(), "notifying systemd: ready");
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STOPPING=1`: shutdown has begun (an in-flight refresh may still finish).
pub fn notify_stopping() {
    if !enabled() {
        return;
    }
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: letting an in-flight refresh finish"),
    ]);
}

/// Keeps `STATUS=` current until `shutdown`: on every state change of the
/// manager, and when the cached token expires (which changes the line without a
/// state change). `None` without `NOTIFY_SOCKET`.
pub fn spawn_status_updates(
    manager: TokenManager,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    if !enabled() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut changes = manager.subscribe();
        let mut last = String::new();
        loop {
            let report = manager.status();
            let now = output::unix_secs(SystemTime::now());
            let line = status_line(&report, now);
            if line != last {
                send(&[NotifyState::Status(&line)]);
                last = line;
            }
            let expiry = report
                .access_token_expires_at
                .filter(|&at| at >= now)
                .map(|at| Duration::from_secs(at - now + 1));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = changes.changed() => if changed.is_err() { break },
                _ = sleep_or_forever(expiry) => {}
            }
        }
    }))
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// The one-line status for `systemctl status`; `now` in unix seconds. Times are
/// UTC, like everywhere in brokerctl.
pub fn status_line(report: &StatusReport, now: u64) -> String {
    let refreshes = match report.refresh_count {
        1 => "1 refresh".to_string(),
        n => format!("{n} refreshes"),
    };
    let relogin = || {
        let reason = report.relogin_reason.as_deref().unwrap_or("unknown reason");
        format!("relogin required: {reason} — run brokerctl relogin")
    };
    let mut line = match report.state {
        _ if report.relogin_required => relogin(),
        TokenState::ReloginRequired => relogin(),
        TokenState::LoggedOut => {
            "not logged in — run brokerctl relogin or brokerctl import".to_string()
        }
        TokenState::Valid => match report.access_token_expires_at {
            Some(at) if at > now => {
                format!(
                    "logged in, token valid until {}, {refreshes}",
                    output::clock(at)
                )
            }
            _ => format!("logged in, {refreshes}"),
        },
        TokenState::Refreshing => format!("logged in, refreshing the token, {refreshes}"),
        TokenState::Expired => {
            let why = report
                .last_error
                .as_ref()
                .map(|e| format!(" ({})", e.code))
                .unwrap_or_default();
            format!("token expired and the token endpoint is failing{why}; retrying")
        }
    };
    if report.degraded.is_some() {
        line.push_str("; degraded: cannot save the state file (see the log)");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_proto::{EndpointInfo, LastError};

    const NOW: u64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC

    fn report(state: TokenState) -> StatusReport {
        StatusReport {
            broker_version: "0.1.0".into(),
            pid: 1,
            account: "default".into(),
            provider: "generic".into(),
            endpoints: EndpointInfo::default(),
            state,
            access_token_expires_at: Some(NOW + 3000),
            token_id: Some("0123456789ab".into()),
            scopes: vec![],
            last_refresh_at: None,
            next_refresh_at: None,
            refresh_count: 12,
            relogin_required: false,
            relogin_reason: None,
            last_error: None,
            degraded: None,
            account_id: None,
            projections: vec![],
            forced_refresh: Default::default(),
        }
    }

    #[test]
    fn says_whether_the_login_is_alive() {
        assert_eq!(
            status_line(&report(TokenState::Valid), NOW),
            "logged in, token valid until 23:03 UTC, 12 refreshes"
        );
        let mut r = report(TokenState::Valid);
        r.refresh_count = 1;
        r.degraded = Some("disk full".into());
        assert_eq!(
            status_line(&r, NOW),
            "logged in, token valid until 23:03 UTC, 1 refresh; degraded: cannot save the state file (see the log)"
        );
        assert_eq!(
            status_line(&report(TokenState::Refreshing), NOW),
            "logged in, refreshing the token, 12 refreshes"
        );
    }

    #[test]
    fn names_the_command_that_fixes_it() {
        let mut r = report(TokenState::ReloginRequired);
        r.relogin_required = true;
        r.relogin_reason = Some("refresh_token_reused".into());
        assert_eq!(
            status_line(&r, NOW),
            "relogin required: refresh_token_reused — run brokerctl relogin"
        );
        let mut r = report(TokenState::LoggedOut);
        r.access_token_expires_at = None;
        assert_eq!(
            status_line(&r, NOW),
            "not logged in — run brokerctl relogin or brokerctl import"
        );
        let mut r = report(TokenState::Expired);
        r.last_error = Some(LastError {
            code: "http_503".into(),
            message: "m".into(),
            hint: None,
            at: NOW,
        });
        assert_eq!(
            status_line(&r, NOW),
            "token expired and the token endpoint is failing (http_503); retrying"
        );
    }
}
