//! `sd_notify(3)`: `READY=1`, `STATUS=…` and `STOPPING=1`.
//!
//! With `Type=notify` systemd (and every client queued on the activation
//! socket) waits until brokerd says `READY=1`, which it does once the socket is
//! serving. The `STATUS=` line is what `systemctl --user status oauth-broker`
//! shows next to the unit, so it says the one thing a user looks for there: is
//! the login alive, and if not, which command fixes it. It is a subscriber of the
//! token manager's snapshots, like the projection targets: it reads the
//! snapshot and nothing else, and the manager knows nothing about systemd.
//! All of this does nothing without `NOTIFY_SOCKET`.

use crate::clock::{unix_secs, Clock, Now};
use crate::ctl::output;
use crate::manager::TokenSnapshot;
use oauth_broker_proto::TokenState;
use sd_notify::NotifyState;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
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
/// `unsaved`: the state cannot be written (degraded), so the stop keeps
/// retrying the write until the stop timeout; the status says so and what
/// helps.
pub fn notify_stopping(unsaved: bool) {
    if !enabled() {
        return;
    }
    let status = if unsaved {
        "stopping: retrying to save the rotated refresh token until the stop timeout (state directory full or read-only: free disk space now, or the login is lost)"
    } else {
        "stopping: letting an in-flight refresh finish"
    };
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// Keeps `STATUS=` current until `shutdown`: on every snapshot the manager
/// publishes, and when the cached token expires (which changes the line
/// without a new snapshot). `None` without `NOTIFY_SOCKET`.
pub fn spawn_status_updates(
    mut snapshots: watch::Receiver<Arc<TokenSnapshot>>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    if !enabled() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut last = String::new();
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            let now = clock.read();
            let line = status_line(&snapshot, now);
            if line != last {
                send(&[NotifyState::Status(&line)]);
                last = line;
            }
            // Time left on either clock (see `clock.rs`).
            let expiry = snapshot
                .token
                .as_ref()
                .and_then(|t| t.remaining(now))
                .map(|left| left + Duration::from_secs(1));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = snapshots.changed() => if changed.is_err() { break },
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

/// The one-line status for `systemctl status` at `now`. Times are UTC, like
/// everywhere in brokerctl.
pub fn status_line(snapshot: &TokenSnapshot, now: Now) -> String {
    let refreshes = match snapshot.refresh_count {
        1 => "1 refresh".to_string(),
        n => format!("{n} refreshes"),
    };
    let relogin = || {
        let reason = snapshot
            .relogin
            .as_ref()
            .map_or("unknown reason", |r| r.reason.as_str());
        format!("relogin required: {reason} — run brokerctl relogin")
    };
    let expires_at = snapshot.token.as_ref().map(|t| t.grant.expires_at);
    let mut line = match snapshot.state(now) {
        TokenState::ReloginRequired => relogin(),
        TokenState::LoggedOut => {
            "not logged in — run brokerctl relogin or brokerctl import".to_string()
        }
        TokenState::Valid => match expires_at {
            Some(at) if at > unix_secs(now.wall) => {
                format!(
                    "logged in, token valid until {}, {refreshes}",
                    output::clock(at)
                )
            }
            _ => format!("logged in, {refreshes}"),
        },
        TokenState::Refreshing => format!("logged in, refreshing the token, {refreshes}"),
        TokenState::Expired => {
            let why = snapshot
                .last_error
                .as_ref()
                .map(|e| format!(" ({})", e.code))
                .unwrap_or_default();
            format!("token expired and the token endpoint is failing{why}; retrying")
        }
    };
    if snapshot.degraded.is_some() {
        line.push_str("; degraded: cannot save the state file (see the log)");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::from_unix_secs;
    use crate::credentials::Credentials;
    use crate::manager::ServedToken;
    use crate::store::ReloginRecord;
    use oauth_broker_proto::LastError;

    const NOW: u64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC

    fn now() -> Now {
        Now {
            wall: from_unix_secs(NOW),
            boot: Duration::from_secs(86_400),
        }
    }

    /// A login whose token expires at `expires_at` (unix seconds).
    fn token(expires_at: u64) -> Arc<ServedToken> {
        Arc::new(
            ServedToken::new(&Credentials {
                access_token: Some("at".to_string().into()),
                expires_at: Some(from_unix_secs(expires_at)),
                obtained_at: from_unix_secs(NOW - 600),
                obtained_boot: None,
                refresh_token: "rt".to_string().into(),
                id_token: None,
                token_type: "Bearer".into(),
                scopes: vec![],
                account_id: None,
                metadata: Default::default(),
                refresh_hint_at: None,
            })
            .unwrap(),
        )
    }

    fn snapshot(state: TokenState) -> TokenSnapshot {
        let mut s = TokenSnapshot {
            logged_in: true,
            token: Some(token(NOW + 3000)),
            refresh_count: 12,
            ..Default::default()
        };
        match state {
            TokenState::Valid => {}
            TokenState::Refreshing => s.refreshing = true,
            TokenState::Expired => s.token = Some(token(NOW - 10)),
            TokenState::LoggedOut => {
                s.logged_in = false;
                s.token = None;
            }
            TokenState::ReloginRequired => {
                s.relogin = Some(ReloginRecord {
                    reason: "refresh_token_reused".into(),
                    message: "m".into(),
                })
            }
        }
        assert_eq!(s.state(now()), state);
        s
    }

    #[test]
    fn says_whether_the_login_is_alive() {
        assert_eq!(
            status_line(&snapshot(TokenState::Valid), now()),
            "logged in, token valid until 23:03 UTC, 12 refreshes"
        );
        let mut s = snapshot(TokenState::Valid);
        s.refresh_count = 1;
        s.degraded = Some("disk full".into());
        assert_eq!(
            status_line(&s, now()),
            "logged in, token valid until 23:03 UTC, 1 refresh; degraded: cannot save the state file (see the log)"
        );
        assert_eq!(
            status_line(&snapshot(TokenState::Refreshing), now()),
            "logged in, refreshing the token, 12 refreshes"
        );
    }

    #[test]
    fn names_the_command_that_fixes_it() {
        assert_eq!(
            status_line(&snapshot(TokenState::ReloginRequired), now()),
            "relogin required: refresh_token_reused — run brokerctl relogin"
        );
        assert_eq!(
            status_line(&snapshot(TokenState::LoggedOut), now()),
            "not logged in — run brokerctl relogin or brokerctl import"
        );
        let mut s = snapshot(TokenState::Expired);
        s.last_error = Some(LastError {
            code: "http_503".into(),
            message: "m".into(),
            hint: None,
            at: NOW,
        });
        assert_eq!(
            status_line(&s, now()),
            "token expired and the token endpoint is failing (http_503); retrying"
        );
    }
}
