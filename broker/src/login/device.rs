//! Device authorization grant (RFC 8628).
//!
//! 1. `POST` the device authorization endpoint (`client_id`, `scope`).
//! 2. Show `verification_uri` and `user_code` (the `device_code` event).
//! 3. Poll the token endpoint with the device code: the first poll at once,
//!    then every `interval`; `authorization_pending` keeps going, `slow_down`
//!    adds 5 s for good, `access_denied` and `expired_token` end the login,
//!    transient failures are retried a bounded number of times, and nothing is
//!    polled once the code has expired.
//!
//! GitHub answers polling errors with HTTP 200, so the body's `error` is read
//! before the status is trusted.

use super::failure::LoginFailure;
use super::pacing;
use super::{Ctx, LoginRunner};
use crate::config::BodyEncoding;
use crate::oauth::token_request::{post_and_read, Answer};
use crate::oauth::{classify_response, number_or_string, ErrorClass, RefreshError, TokenResponse};
use oauth_broker_proto::{ErrorCode, ExposeSecret, LoginEvent, SecretString};
use serde::Deserialize;
use url::Url;

/// The grant type of a device-code poll.
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Lifetime assumed when the server omits `expires_in` (it is required).
const DEFAULT_EXPIRES_IN: u64 = 900;

/// The device authorization response (RFC 8628 §3.2).
#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: SecretString,
    user_code: String,
    // Some servers still spell it the way early drafts did.
    #[serde(alias = "verification_url")]
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    #[serde(default, deserialize_with = "number_or_string")]
    expires_in: Option<u64>,
    #[serde(default, deserialize_with = "number_or_string")]
    interval: Option<u64>,
}

/// One poll's meaning.
enum Poll {
    Tokens(TokenResponse),
    Pending,
    SlowDown,
    Denied(Option<String>),
    Expired,
    Transient(RefreshError),
    Fatal(RefreshError),
}

/// Runs the device login up to the token response.
pub async fn run(ctx: &mut Ctx<'_>) -> Result<TokenResponse, LoginFailure> {
    let runner = ctx.runner;
    let endpoint = runner
        .discovery
        .device_authorization_endpoint(&runner.http, &runner.provider)
        .await
        .map_err(|e| runner.failure("finding the device authorization endpoint", &e))?
        .ok_or_else(|| {
            LoginFailure::configuration(
                &runner.provider.config_source,
                format!(
                    "the {} provider has no device authorization endpoint",
                    runner.provider.preset
                ),
            )
            .with_hint(format!(
                "set device_authorization_endpoint in {}, or use `brokerctl relogin --browser`",
                runner.provider.config_source
            ))
        })?;
    let token_url = runner
        .discovery
        .token_endpoint(&runner.http, &runner.provider)
        .await
        .map_err(|e| runner.failure("finding the token endpoint", &e))?;

    let device = authorize_device(runner, endpoint).await?;
    let (expires_in, mut pacing) = pacing::start(
        "device login",
        device.expires_in,
        DEFAULT_EXPIRES_IN,
        device.interval,
        runner.settings.device_transient_retries,
    );
    ctx.emit(LoginEvent::DeviceCode {
        verification_uri: device.verification_uri.clone(),
        verification_uri_complete: device.verification_uri_complete.clone(),
        user_code: device.user_code.clone(),
        expires_in,
    });
    loop {
        if pacing.expired() {
            return Err(LoginFailure::code_expired(&runner.account));
        }
        match poll(runner, &token_url, &device.device_code).await {
            Poll::Tokens(tokens) => return Ok(tokens),
            Poll::Pending => pacing.answered(),
            Poll::SlowDown => {
                pacing.slow_down();
                tracing::info!(
                    interval_secs = pacing.interval().as_secs(),
                    "device login: the server asked to slow down"
                );
            }
            Poll::Denied(description) => {
                let detail = description.map(|d| format!(": {d}")).unwrap_or_default();
                return Err(LoginFailure::retry_login(
                    &runner.account,
                    format!(
                        "the login was denied at the authorization server (access_denied{detail})"
                    ),
                ));
            }
            Poll::Expired => return Err(LoginFailure::code_expired(&runner.account)),
            Poll::Transient(e) => {
                tracing::warn!(reason = %e.reason, "device login: polling failed; retrying");
                if !pacing.failed(e.reason == "timeout", e.retry_after) {
                    return Err(runner.failure("polling the token endpoint", &e));
                }
            }
            Poll::Fatal(e) => return Err(runner.failure("the device login", &e)),
        }
        pacing
            .wait(ctx.cancel)
            .await
            .map_err(|stop| LoginFailure::stopped(stop, &runner.account))?;
    }
}

/// Step 1: ask for a device code.
async fn authorize_device(
    runner: &LoginRunner,
    endpoint: Url,
) -> Result<DeviceAuthorization, LoginFailure> {
    let fields = vec![("scope", runner.provider.scopes.join(" "))];
    let Answer {
        status,
        retry_after,
        body,
    } = post_and_read(
        &runner.http,
        &runner.provider,
        endpoint,
        fields,
        BodyEncoding::Form,
    )
    .await
    .map_err(|e| runner.failure("the device authorization request", &e))?;
    if !(200..300).contains(&status) {
        // Reuse the token-endpoint classification for the error answer.
        let e = match classify_response(status, retry_after, &body) {
            Err(e) => e,
            Ok(_) => RefreshError::transient(
                format!("http_{status}"),
                format!("the device authorization endpoint answered HTTP {status}"),
                false,
            ),
        };
        return Err(runner.failure("the device authorization request", &e));
    }
    serde_json::from_slice(&body).map_err(|_| {
        LoginFailure::new(
            ErrorCode::UpstreamUnavailable,
            "the device authorization endpoint answered with something that is not a device authorization (no device_code, user_code and verification_uri)",
        )
    })
}

/// One poll of the token endpoint.
async fn poll(runner: &LoginRunner, token_url: &Url, device_code: &SecretString) -> Poll {
    let fields = vec![
        ("grant_type", DEVICE_GRANT.to_string()),
        ("device_code", device_code.expose_secret().to_string()),
    ];
    let Answer {
        status,
        retry_after,
        body,
    } = match post_and_read(
        &runner.http,
        &runner.provider,
        token_url.clone(),
        fields,
        BodyEncoding::Form,
    )
    .await
    {
        Ok(answer) => answer,
        Err(e) => return Poll::Transient(e),
    };
    if status < 500 && status != 429 {
        if let Some((code, description)) = flat_error(&body) {
            match code.as_str() {
                "authorization_pending" => return Poll::Pending,
                "slow_down" => return Poll::SlowDown,
                "access_denied" => return Poll::Denied(description),
                "expired_token" => return Poll::Expired,
                _ => {}
            }
        }
    }
    // Everything else is classified like a refresh answer; a 200 carrying an
    // unknown error is a refusal, not a token.
    let status = if (200..300).contains(&status) && flat_error(&body).is_some() {
        400
    } else {
        status
    };
    match classify_response(status, retry_after, &body) {
        Ok(tokens) => Poll::Tokens(tokens),
        Err(e) if matches!(e.class, ErrorClass::Transient { .. }) => Poll::Transient(e),
        Err(e) => Poll::Fatal(e),
    }
}

/// `{"error": "…", "error_description": "…"}` (the only shape RFC 8628 uses).
fn flat_error(body: &[u8]) -> Option<(String, Option<String>)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = value.get("error")?.as_str()?.to_string();
    let description = value
        .get("error_description")
        .and_then(|d| d.as_str())
        .map(|d| d.chars().filter(|c| !c.is_control()).take(200).collect());
    Some((code, description))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flat_errors_only() {
        assert_eq!(
            flat_error(br#"{"error":"slow_down","error_description":"x"}"#),
            Some(("slow_down".into(), Some("x".into())))
        );
        assert_eq!(flat_error(br#"{"error":{"code":"x"}}"#), None);
        assert_eq!(flat_error(b"<html>"), None);
    }

    #[test]
    fn device_authorization_accepts_string_numbers_and_old_spelling() {
        let d: DeviceAuthorization = serde_json::from_str(
            r#"{"device_code":"d","user_code":"U","verification_url":"https://v","expires_in":"900","interval":"5"}"#,
        )
        .unwrap();
        assert_eq!((d.expires_in, d.interval), (Some(900), Some(5)));
        assert_eq!(d.verification_uri, "https://v");
    }
}
