//! The error frames the manager answers with. Every one names the cause and the
//! command that fixes it.

use oauth_broker_proto::{ErrorCode, ErrorFrame};
use std::time::Duration;

/// Reason recorded when a refresh that may have been processed by the server (a
/// crash or a lost connection mid-refresh) is followed by a refusal.
pub const REFRESH_INTERRUPTED: &str = "refresh_interrupted";

/// `brokerctl` invocation for this account, e.g. `brokerctl --account work relogin`.
pub fn ctl(account: &str, sub: &str) -> String {
    if account == crate::paths::DEFAULT_ACCOUNT {
        format!("brokerctl {sub}")
    } else {
        format!("brokerctl --account {account} {sub}")
    }
}

/// No login yet.
pub fn not_logged_in(account: &str) -> ErrorFrame {
    ErrorFrame::new(
        ErrorCode::NotLoggedIn,
        format!("account {account:?} has no login yet"),
    )
    .with_hint(format!(
        "run `{}` (or `{}` to hand over existing tokens)",
        ctl(account, "relogin"),
        ctl(account, "import FILE")
    ))
}

/// The message for a relogin reason.
pub fn relogin_message(reason: &str, detail: &str) -> String {
    if reason == REFRESH_INTERRUPTED {
        "an interrupted refresh (crash or lost connection) may have let the server rotate the refresh token without the broker learning the new one; the server now refuses it".to_string()
    } else {
        detail.to_string()
    }
}

/// The refresh token is dead.
pub fn relogin_required(account: &str, reason: &str, message: &str) -> ErrorFrame {
    ErrorFrame::new(ErrorCode::ReloginRequired, message.to_string())
        .with_reason(reason)
        .with_hint(relogin_hint(account))
}

/// The hint given with every `relogin_required`.
pub fn relogin_hint(account: &str) -> String {
    format!("run `{}` to log in again", ctl(account, "relogin"))
}

/// No valid token and the token endpoint is failing.
pub fn upstream_unavailable(
    message: &str,
    hint: Option<String>,
    retry_after: Duration,
) -> ErrorFrame {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let mut frame = ErrorFrame::new(ErrorCode::UpstreamUnavailable, message.to_string())
        .with_retry_after(secs.max(1));
    frame.hint = Some(hint.unwrap_or_else(|| {
        "the broker retries by itself with backoff; check the network or the provider's status"
            .to_string()
    }));
    frame
}
