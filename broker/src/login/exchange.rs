//! The end of every login: an authorization code is redeemed at the token
//! endpoint (RFC 6749 §4.1.3 with the PKCE verifier), and a token response
//! becomes the credentials the broker keeps.
//!
//! Answers are classified exactly like refresh answers (`oauth::classify`), so
//! both error shapes are understood. A code is single-use: only failures that
//! provably did not reach the server (connect errors, 429, 5xx) are retried; a
//! lost answer is not, because the code may already be spent.

use super::failure::LoginFailure;
use super::LoginRunner;
use crate::config::BodyEncoding;
use crate::credentials::Credentials;
use crate::oauth::token_request::post_and_read;
use crate::oauth::{
    classify_response, merge_token_response, ErrorClass, RefreshError, TokenResponse,
};
use crate::provider::RefreshKind;
use oauth_broker_proto::{ErrorCode, ExposeSecret, SecretString};
use std::time::{Duration, SystemTime};
use url::Url;

/// Extra attempts after a transient failure that certainly did not spend the code.
const RETRIES: u32 = 2;
/// Pause between those attempts (longer if the server asks for it).
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// One authorization-code redemption.
pub struct CodeGrant<'a> {
    /// The code from the redirect (or from OpenAI's device scheme).
    pub code: &'a SecretString,
    /// Exactly the `redirect_uri` of the authorization request.
    pub redirect_uri: &'a str,
    /// The PKCE verifier.
    pub verifier: &'a SecretString,
    /// The PKCE challenge, echoed next to the verifier when the provider wants
    /// it (xAI).
    pub echo_challenge: Option<&'a str>,
    /// `state`, sent along when the provider wants it (Anthropic).
    pub state: Option<&'a str>,
    /// Form or JSON body.
    pub encoding: BodyEncoding,
}

/// Redeems `grant` at `token_url`.
pub async fn redeem_code(
    runner: &LoginRunner,
    token_url: Url,
    grant: CodeGrant<'_>,
) -> Result<TokenResponse, LoginFailure> {
    let mut fields = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", grant.code.expose_secret().to_string()),
        ("redirect_uri", grant.redirect_uri.to_string()),
        ("code_verifier", grant.verifier.expose_secret().to_string()),
    ];
    if let Some(challenge) = grant.echo_challenge {
        fields.push(("code_challenge", challenge.to_string()));
        fields.push((
            "code_challenge_method",
            super::pkce::Pkce::METHOD.to_string(),
        ));
    }
    if let Some(state) = grant.state {
        fields.push(("state", state.to_string()));
    }
    let mut attempt = 0;
    loop {
        let result = post_token(runner, token_url.clone(), fields.clone(), grant.encoding).await;
        match result {
            Err(e)
                if attempt < RETRIES
                    && matches!(e.class, ErrorClass::Transient { ambiguous: false }) =>
            {
                attempt += 1;
                let pause = e
                    .retry_after
                    .unwrap_or(RETRY_PAUSE)
                    .min(Duration::from_secs(10));
                tracing::warn!(reason = %e.reason, attempt, "code exchange failed transiently; retrying");
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err(runner.failure("the code exchange", &e)),
            Ok(resp) => return Ok(resp),
        }
    }
}

/// One token-endpoint request, classified like a refresh.
async fn post_token(
    runner: &LoginRunner,
    url: Url,
    fields: Vec<(&'static str, String)>,
    encoding: BodyEncoding,
) -> Result<TokenResponse, RefreshError> {
    let answer = post_and_read(&runner.http, &runner.provider, url, fields, encoding).await?;
    classify_response(answer.status, answer.retry_after, &answer.body)
}

/// The credentials to keep after a login's token response. For GitHub
/// Copilot the (non-expiring) GitHub token is the long-lived credential and is
/// kept as the refresh token; the session token is obtained by the exchange.
/// Everywhere else a login without a refresh token is useless to the broker.
pub fn credentials_from(
    runner: &LoginRunner,
    resp: TokenResponse,
    now: SystemTime,
) -> Result<Credentials, LoginFailure> {
    let scopes_fallback = || runner.provider.scopes.clone();
    match runner.provider.refresh_kind {
        RefreshKind::CopilotExchange => {
            // The access token (`ghu_…`) is what the exchange accepts; GitHub
            // sends no refresh token for this client.
            let github_token = resp.access_token.ok_or_else(|| {
                LoginFailure::new(
                    ErrorCode::UpstreamUnavailable,
                    "the login answer carried no token",
                )
            })?;
            Ok(Credentials {
                access_token: None,
                expires_at: None,
                obtained_at: now,
                obtained_boot: None,
                refresh_token: github_token,
                id_token: None,
                token_type: "Bearer".to_string(),
                scopes: resp
                    .scope
                    .map(|s| {
                        s.split([' ', ','])
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_else(scopes_fallback),
                account_id: None,
                metadata: Default::default(),
                refresh_hint_at: None,
            })
        }
        RefreshKind::OAuth => {
            let no_scope = resp.scope.is_none();
            let mut creds = merge_token_response(None, resp, now).ok_or_else(|| {
                LoginFailure::new(
                    ErrorCode::BadRequest,
                    "the authorization server issued no refresh token, so the broker could not keep this login alive",
                )
                .with_hint(format!(
                    "request the `offline_access` scope (`scopes` in {}) and log in again",
                    runner.provider.config_source
                ))
            })?;
            if no_scope {
                creds.scopes = scopes_fallback();
            }
            Ok(creds)
        }
    }
}
