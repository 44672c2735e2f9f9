//! The side-by-side table of the storm demo.

use std::fmt::Write as _;

use super::{DemoConfig, SideResult};

/// The two results side by side, with a heading that says what ran.
pub fn render(config: &DemoConfig, status_quo: &SideResult, broker: &SideResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} programs sharing one login for {} access-token lifetimes of {} s, one API call each every {} ms",
        config.processes,
        config.lifetimes,
        config.token_lifetime.as_secs_f64(),
        config.request_interval.as_millis()
    );
    let _ = writeln!(
        out,
        "(fake authorization server: single-use rotating refresh tokens, reuse revokes the whole family)\n"
    );
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let rows: [(&str, String, String); 7] = [
        (
            "refresh attempts at the token endpoint",
            status_quo.refresh_attempts.to_string(),
            broker.refresh_attempts.to_string(),
        ),
        (
            "  refused (refresh token reused or revoked)",
            status_quo.refused_refreshes.to_string(),
            broker.refused_refreshes.to_string(),
        ),
        (
            "refresh-token reuse detected by the server",
            status_quo.reuse_detections.to_string(),
            broker.reuse_detections.to_string(),
        ),
        (
            "token family revoked (everyone logged out)",
            yes_no(status_quo.family_revoked).to_owned(),
            yes_no(broker.family_revoked).to_owned(),
        ),
        (
            "API requests",
            status_quo.requests.to_string(),
            broker.requests.to_string(),
        ),
        (
            "  failed",
            status_quo.failed_requests.to_string(),
            broker.failed_requests.to_string(),
        ),
        (
            "  failed, share",
            percent(status_quo.failed_requests, status_quo.requests),
            percent(broker.failed_requests, broker.requests),
        ),
    ];
    let _ = writeln!(
        out,
        "{:<44} {:>24} {:>16}",
        "", "status quo", "with the broker"
    );
    let _ = writeln!(
        out,
        "{:<44} {:>24} {:>16}",
        "", "(each refreshes itself)", "(one brokerd)"
    );
    for (what, left, right) in rows {
        let _ = writeln!(out, "{what:<44} {left:>24} {right:>16}");
    }
    let _ = writeln!(
        out,
        "\nStatus quo: the first program to refresh rotates the refresh token; the next one\n\
         presents the old one, the server takes that for theft and revokes the whole login.\n\
         With the broker: one refresher, ahead of expiry (at 75–80 % of each token's life):\n\
         no refresh token is ever presented twice, and nobody waits for one."
    );
    out
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "—".to_owned();
    }
    format!("{:.1} %", part as f64 * 100.0 / whole as f64)
}
