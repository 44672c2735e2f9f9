//! OpenAI's device login (what `codex login --device-auth` speaks), which is
//! not RFC 8628:
//!
//! 1. `POST {issuer}/api/accounts/deviceauth/usercode` JSON `{"client_id"}` →
//!    `{device_auth_id, user_code (or usercode), interval}` (`interval` is a
//!    string);
//! 2. the user enters the code at `{issuer}/codex/device` (valid 15 minutes);
//! 3. poll `POST {issuer}/api/accounts/deviceauth/token` JSON
//!    `{device_auth_id, user_code}`: 403/404 mean "not yet", 2xx brings
//!    `{authorization_code, code_challenge, code_verifier}`;
//! 4. the code is exchanged at the token endpoint (form) with
//!    `redirect_uri={issuer}/deviceauth/callback` and that verifier.
//!
//! Second-hand facts from Codex CLI's public source. Pacing, expiry and
//! transient-failure rules are the same as for RFC 8628.

use super::exchange::{redeem_code, CodeGrant};
use super::failure::LoginFailure;
use super::pacing;
use super::{Ctx, LoginRunner};
use crate::config::BodyEncoding;
use crate::oauth::token_request::{read_answer, read_bounded, Answer};
use crate::oauth::{
    checked_endpoint, classify_transport, number_or_string, RefreshError, TokenResponse,
};
use crate::provider::openai_codex::device::{
    CALLBACK_PATH, DEFAULT_EXPIRES_IN_SECS, TOKEN_PATH, USER_CODE_PATH, VERIFICATION_PATH,
};
use oauth_broker_proto::{ErrorCode, ExposeSecret, LoginEvent, SecretString};
use serde::Deserialize;
use url::Url;

/// Step 1's answer.
#[derive(Deserialize)]
struct UserCode {
    device_auth_id: SecretString,
    #[serde(alias = "usercode")]
    user_code: String,
    #[serde(default, deserialize_with = "number_or_string")]
    interval: Option<u64>,
    /// Not in OpenAI's documented answer; honoured when present.
    #[serde(default, deserialize_with = "number_or_string")]
    expires_in: Option<u64>,
}

/// Step 3's success.
#[derive(Deserialize)]
struct CodeSuccess {
    authorization_code: SecretString,
    code_verifier: SecretString,
    #[serde(default)]
    code_challenge: Option<String>,
}

enum Poll {
    Done(CodeSuccess),
    Pending,
    Transient(RefreshError),
    Refused(u16, Option<String>),
}

/// Runs OpenAI's device login up to the token response.
pub async fn run(ctx: &mut Ctx<'_>) -> Result<TokenResponse, LoginFailure> {
    let runner = ctx.runner;
    let provider = &runner.provider;
    let issuer = provider.issuer.as_ref().ok_or_else(|| {
        LoginFailure::configuration(
            &provider.config_source,
            "OpenAI's device login lives under the issuer, and no issuer is configured",
        )
    })?;
    let endpoint = |path: &str| -> Result<Url, LoginFailure> {
        let raw = format!("{}{path}", issuer.as_str().trim_end_matches('/'));
        let url = Url::parse(&raw).map_err(|_| {
            LoginFailure::configuration(&provider.config_source, format!("{raw} is not a URL"))
        })?;
        checked_endpoint(url, provider).map_err(|e| runner.failure("the device login", &e))
    };
    let user_code_url = endpoint(USER_CODE_PATH)?;
    let poll_url = endpoint(TOKEN_PATH)?;
    let verification_uri = endpoint(VERIFICATION_PATH)?.to_string();
    let callback = endpoint(CALLBACK_PATH)?.to_string();
    let token_url = runner
        .discovery
        .token_endpoint(&runner.http, provider)
        .await
        .map_err(|e| runner.failure("finding the token endpoint", &e))?;

    let code = request_user_code(runner, user_code_url).await?;
    let (expires_in, mut pacing) = pacing::start(
        "device login (OpenAI scheme)",
        code.expires_in,
        DEFAULT_EXPIRES_IN_SECS,
        code.interval,
        runner.settings.device_transient_retries,
    );
    ctx.emit(LoginEvent::DeviceCode {
        verification_uri,
        verification_uri_complete: None,
        user_code: code.user_code.clone(),
        expires_in,
    });
    let success = loop {
        if pacing.expired() {
            return Err(LoginFailure::code_expired(&runner.account));
        }
        match poll(runner, &poll_url, &code).await {
            Poll::Done(success) => break success,
            Poll::Pending => pacing.answered(),
            Poll::Transient(e) => {
                tracing::warn!(reason = %e.reason, "device login: polling failed; retrying");
                if !pacing.failed(e.reason == "timeout", e.retry_after) {
                    return Err(runner.failure("polling the device login", &e));
                }
            }
            Poll::Refused(status, reason) => {
                let reason = reason.unwrap_or_else(|| format!("http_{status}"));
                return Err(LoginFailure::retry_login(
                    &runner.account,
                    format!("the authorization server ended the device login with HTTP {status} ({reason})"),
                ));
            }
        }
        pacing
            .wait(ctx.cancel)
            .await
            .map_err(|stop| LoginFailure::stopped(stop, &runner.account))?;
    };
    if let Some(challenge) = &success.code_challenge {
        // The server hands out both halves; a mismatch means a broken answer,
        // and the exchange would fail anyway.
        if *challenge != super::pkce::s256(success.code_verifier.expose_secret()) {
            tracing::warn!("device login: the returned code_challenge does not match the verifier");
        }
    }
    redeem_code(
        runner,
        token_url,
        CodeGrant {
            code: &success.authorization_code,
            redirect_uri: &callback,
            verifier: &success.code_verifier,
            echo_challenge: None,
            state: None,
            encoding: BodyEncoding::Form,
        },
    )
    .await
}

async fn request_user_code(runner: &LoginRunner, url: Url) -> Result<UserCode, LoginFailure> {
    let body = serde_json::json!({ "client_id": runner.provider.client_id });
    let resp = runner
        .http
        .post(url)
        .header("Accept", "application/json")
        .json(&body)
        .send()
        .await
        .map_err(|e| runner.failure("requesting a device code", &classify_transport(&e)))?;
    let status = resp.status().as_u16();
    let bytes = read_bounded(resp)
        .await
        .map_err(|e| runner.failure("requesting a device code", &e))?;
    match status {
        200..=299 => serde_json::from_slice(&bytes).map_err(|_| {
            LoginFailure::new(
                ErrorCode::UpstreamUnavailable,
                "the device-code answer has no device_auth_id and user_code",
            )
        }),
        404 => Err(LoginFailure::new(
            ErrorCode::BadRequest,
            "device login is not enabled for this account or workspace (HTTP 404)",
        )
        .with_hint("use `brokerctl relogin --browser`, or enable device code login in the ChatGPT security settings")),
        429 | 500..=599 => Err(LoginFailure::new(
            ErrorCode::UpstreamUnavailable,
            format!("requesting a device code failed with HTTP {status}"),
        )
        .with_hint("try again in a moment")),
        _ => Err(LoginFailure::configuration(
            &runner.provider.config_source,
            format!(
                "requesting a device code failed with HTTP {status} ({})",
                error_code(&bytes).unwrap_or_else(|| "no error code".into())
            ),
        )),
    }
}

async fn poll(runner: &LoginRunner, url: &Url, code: &UserCode) -> Poll {
    let body = serde_json::json!({
        "device_auth_id": code.device_auth_id.expose_secret(),
        "user_code": code.user_code,
    });
    let resp = match runner
        .http
        .post(url.clone())
        .header("Accept", "application/json")
        .json(&body)
        .send()
        .await
    {
        Ok(resp) => resp,
        Err(e) => return Poll::Transient(classify_transport(&e)),
    };
    let Answer {
        status,
        retry_after,
        body: bytes,
    } = match read_answer(resp).await {
        Ok(answer) => answer,
        Err(e) => return Poll::Transient(e),
    };
    match status {
        200..=299 => match serde_json::from_slice::<CodeSuccess>(&bytes) {
            Ok(success) => Poll::Done(success),
            Err(_) => Poll::Transient(RefreshError::transient(
                "unparsable_response",
                "the device login answered 2xx without an authorization code",
                false,
            )),
        },
        403 | 404 => Poll::Pending,
        429 | 500..=599 => {
            let mut e = RefreshError::transient(
                format!("http_{status}"),
                format!("the device login poll failed with HTTP {status}"),
                false,
            );
            e.retry_after = retry_after;
            Poll::Transient(e)
        }
        _ => Poll::Refused(status, error_code(&bytes)),
    }
}

/// The error code of either error shape, bounded and printable.
fn error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let code = error
        .as_str()
        .or_else(|| error.get("code").and_then(|c| c.as_str()))?;
    Some(code.chars().filter(|c| !c.is_control()).take(100).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_code_answer_variants() {
        let a: UserCode =
            serde_json::from_str(r#"{"device_auth_id":"d","usercode":"AB-CD","interval":"5"}"#)
                .unwrap();
        assert_eq!((a.user_code.as_str(), a.interval), ("AB-CD", Some(5)));
        let b: UserCode =
            serde_json::from_str(r#"{"device_auth_id":"d","user_code":"X","interval":3}"#).unwrap();
        assert_eq!((b.user_code.as_str(), b.interval), ("X", Some(3)));
    }

    #[test]
    fn error_codes_of_both_shapes() {
        assert_eq!(error_code(br#"{"error":"x"}"#).as_deref(), Some("x"));
        assert_eq!(
            error_code(br#"{"error":{"code":"y","message":"m"}}"#).as_deref(),
            Some("y")
        );
        assert_eq!(error_code(b"nope"), None);
    }
}
