//! Classification of every token-endpoint answer into exactly one class.
//!
//! Terminal (relogin): HTTP 400 `invalid_grant`, any 401, and the provider codes
//! `refresh_token_reused`, `refresh_token_expired`, `refresh_token_invalidated`,
//! `invalid_token`. Configuration: `invalid_client`, `unauthorized_client` and
//! other 4xx codes that say the request itself is wrong. Transient: network
//! errors, timeouts, 429, 5xx, redirects, HTML or otherwise unparsable bodies, and
//! a 200 without `access_token`. Both error shapes are understood: the flat RFC
//! 6749 `{"error":"…","error_description":"…"}` and the nested
//! `{"error":{"code":"…","message":"…"}}`.

use super::{RefreshError, TokenResponse};
use serde_json::Value;
use std::time::Duration;

const RELOGIN_CODES: &[&str] = &[
    "invalid_grant",
    "refresh_token_reused",
    "refresh_token_expired",
    "refresh_token_invalidated",
    "invalid_token",
    // GitHub's answer to a refresh token it no longer accepts (spent,
    // expired or revoked), sent with HTTP 200.
    "bad_refresh_token",
];

const CONFIGURATION_CODES: &[&str] = &[
    "invalid_client",
    "unauthorized_client",
    "invalid_request",
    "unsupported_grant_type",
    "invalid_scope",
];

/// Longest description quoted from a server in our messages.
const MAX_QUOTED: usize = 200;

/// Classifies an HTTP answer of the token endpoint. On success returns the parsed
/// token response.
pub fn classify_response(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<TokenResponse, RefreshError> {
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<TokenResponse>(body) {
            Ok(resp) if resp.access_token.is_some() => Ok(resp),
            // GitHub answers every token-endpoint error with HTTP 200 and an
            // OAuth error body: classify it as the error it names.
            Ok(_) if parse_error_body(body).is_some() => classify_response(400, retry_after, body),
            Ok(_) => Err(RefreshError::transient(
                "no_access_token",
                format!("the token endpoint answered HTTP {status} without an access_token"),
                true,
            )),
            Err(_) => Err(RefreshError::transient(
                "unparsable_response",
                format!(
                    "the token endpoint answered HTTP {status} with a body that is not a token response ({})",
                    describe_body(body)
                ),
                true,
            )),
        };
    }
    if (300..400).contains(&status) {
        return Err(RefreshError::transient(
            "redirect",
            format!("the token endpoint answered with a redirect (HTTP {status}); a captive portal or proxy may be in the way"),
            false,
        ));
    }
    let parsed = parse_error_body(body);
    let code = parsed.as_ref().map(|(code, _)| code.clone());
    let description = parsed.as_ref().and_then(|(_, d)| d.clone());
    let detail = |what: &str| match &description {
        Some(d) => format!("{what}: {d}"),
        None => what.to_string(),
    };

    if status == 429 {
        let mut err = RefreshError::transient(
            "rate_limited",
            detail("the token endpoint is rate limiting (HTTP 429)"),
            false,
        );
        err.retry_after = retry_after;
        return Err(err);
    }
    if status >= 500 {
        let mut err = RefreshError::transient(
            format!("http_{status}"),
            detail(&format!("the token endpoint failed with HTTP {status}")),
            false,
        );
        err.retry_after = retry_after;
        return Err(err);
    }
    if let Some(code) = &code {
        if RELOGIN_CODES.contains(&code.as_str()) {
            return Err(RefreshError::relogin(
                code.clone(),
                detail(&format!("the provider refused the refresh token ({code})")),
            ));
        }
        if CONFIGURATION_CODES.contains(&code.as_str()) {
            return Err(RefreshError::configuration(
                code.clone(),
                detail(&format!("the provider rejected the request ({code})")),
            ));
        }
    }
    if status == 401 {
        let reason = code.unwrap_or_else(|| "http_401".to_string());
        return Err(RefreshError::relogin(
            reason,
            detail("the token endpoint answered HTTP 401 to the refresh"),
        ));
    }
    match code {
        // A 4xx with a parsable OAuth error we do not know: the request is wrong,
        // not the network; retry slowly.
        Some(code) => Err(RefreshError::configuration(
            code.clone(),
            detail(&format!(
                "the token endpoint answered HTTP {status} ({code})"
            )),
        )),
        // A 4xx with an HTML or empty body is most likely a proxy or portal.
        None => {
            let mut err = RefreshError::transient(
                format!("http_{status}"),
                format!(
                    "the token endpoint answered HTTP {status} with no OAuth error ({})",
                    describe_body(body)
                ),
                false,
            );
            err.retry_after = retry_after;
            Err(err)
        }
    }
}

/// Classifies a transport failure. A connect failure means the request never left;
/// anything later (timeouts, resets, truncated bodies) is ambiguous: the server may
/// have rotated the refresh token.
pub fn classify_transport(err: &reqwest::Error) -> RefreshError {
    if err.is_connect() {
        return RefreshError::transient(
            "connect_failed",
            format!(
                "cannot connect to the token endpoint ({})",
                error_chain(err)
            ),
            false,
        );
    }
    if err.is_timeout() {
        return RefreshError::transient(
            "timeout",
            "the token endpoint did not answer in time",
            true,
        );
    }
    RefreshError::transient(
        "connection_lost",
        format!(
            "the connection to the token endpoint failed ({})",
            error_chain(err)
        ),
        true,
    )
}

/// Error text without URLs (which may carry query strings) and secrets.
fn error_chain(err: &reqwest::Error) -> String {
    let mut out = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
    while let Some(e) = source {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&e.to_string());
        source = e.source();
    }
    if out.is_empty() {
        out = "network error".to_string();
    }
    out.chars().take(MAX_QUOTED).collect()
}

/// `Retry-After` as delta-seconds (the HTTP-date form is rare for token
/// endpoints and treated as absent).
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Extracts `(code, description)` from either error shape.
fn parse_error_body(body: &[u8]) -> Option<(String, Option<String>)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(sanitize);
    match error {
        Value::String(code) => Some((sanitize(code), text(value.get("error_description")))),
        Value::Object(obj) => {
            let code = obj
                .get("code")
                .or_else(|| obj.get("type"))
                .and_then(Value::as_str)?;
            Some((sanitize(code), text(obj.get("message"))))
        }
        _ => None,
    }
}

/// One short line: servers sometimes echo input, so keep it bounded and printable.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_QUOTED)
        .collect()
}

fn describe_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        "empty body".to_string()
    } else if trimmed.starts_with('<') {
        "an HTML page".to_string()
    } else {
        format!("{} bytes", body.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::ErrorClass;

    fn class(status: u16, body: &str) -> (ErrorClass, String) {
        let err = classify_response(status, None, body.as_bytes()).unwrap_err();
        (err.class, err.reason)
    }

    #[test]
    fn flat_and_nested_relogin_codes() {
        assert_eq!(
            class(
                400,
                r#"{"error":"invalid_grant","error_description":"used"}"#
            ),
            (ErrorClass::Relogin, "invalid_grant".into())
        );
        assert_eq!(
            class(
                401,
                r#"{"error":{"code":"refresh_token_reused","message":"m"}}"#
            ),
            (ErrorClass::Relogin, "refresh_token_reused".into())
        );
        for code in [
            "refresh_token_expired",
            "refresh_token_invalidated",
            "invalid_token",
        ] {
            let body = format!(r#"{{"error":{{"code":"{code}"}}}}"#);
            assert_eq!(class(400, &body).0, ErrorClass::Relogin);
        }
        assert_eq!(class(401, "").0, ErrorClass::Relogin);
        assert_eq!(class(401, "<html>").1, "http_401");
        // GitHub: HTTP 200 with an OAuth error body.
        assert_eq!(
            class(
                200,
                r#"{"error":"bad_refresh_token","error_description":"The refresh token passed is incorrect or expired."}"#
            ),
            (ErrorClass::Relogin, "bad_refresh_token".into())
        );
        assert_eq!(
            class(200, r#"{"error":"incorrect_client_credentials"}"#).0,
            ErrorClass::Configuration
        );
    }

    #[test]
    fn configuration_codes() {
        assert_eq!(
            class(401, r#"{"error":"invalid_client"}"#).0,
            ErrorClass::Configuration
        );
        assert_eq!(
            class(400, r#"{"error":"unauthorized_client"}"#).0,
            ErrorClass::Configuration
        );
    }

    #[test]
    fn transient_answers() {
        let t = |a| matches!(a, ErrorClass::Transient { .. });
        assert!(t(class(500, "oops").0));
        assert!(t(class(503, r#"{"error":"temporarily_unavailable"}"#).0));
        assert!(t(class(429, "").0));
        assert!(t(class(302, "").0));
        assert!(t(class(200, "<html>portal</html>").0));
        assert!(t(class(200, r#"{"access_token": "abc"#).0));
        assert!(t(class(200, r#"{"token_type":"Bearer"}"#).0));
        assert!(t(class(400, "<html>proxy</html>").0));
    }

    #[test]
    fn retry_after_is_kept_for_429_and_5xx() {
        let err = classify_response(429, Some(Duration::from_secs(7)), b"").unwrap_err();
        assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(Some(" 12 ")),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
    }

    #[test]
    fn success_parses() {
        let ok =
            classify_response(200, None, br#"{"access_token":"a","expires_in":"60"}"#).unwrap();
        assert_eq!(ok.expires_in, Some(60));
    }
}
