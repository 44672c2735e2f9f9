//! OAuth over HTTP without the broker: a refresh and an API call the way a
//! program that keeps its own copy of the tokens does them today (Codex CLI,
//! an IDE extension, an agent). The storm demo's "status quo" side and the
//! benchmark's token-endpoint baseline use it.

use std::time::{Duration, Instant};

use serde_json::Value;

/// One program's own copy of the tokens.
#[derive(Debug, Clone)]
pub struct OwnTokens {
    pub access_token: String,
    pub refresh_token: String,
    /// When the access token expires, by this program's clock.
    pub expires_at: Instant,
    /// Its lifetime as issued.
    pub lifetime: Duration,
}

/// The answer of one refresh.
#[derive(Debug, Clone)]
pub enum Refreshed {
    /// New tokens (the refresh token rotated unless the server keeps it).
    Tokens(OwnTokens),
    /// The server refused the refresh token (`invalid_grant`,
    /// `refresh_token_reused`, …): only a new login helps.
    Refused(String),
    /// No usable answer (network, 5xx, …).
    Failed(String),
}

/// `grant_type=refresh_token` at `token_endpoint` with a public client id.
pub async fn refresh(
    http: &reqwest::Client,
    token_endpoint: &str,
    client_id: &str,
    refresh_token: &str,
) -> Refreshed {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("refresh_token", refresh_token)
        .append_pair("client_id", client_id)
        .finish();
    let sent = http
        .post(token_endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) => return Refreshed::Failed(format!("request failed: {e}")),
    };
    let status = response.status();
    let received_at = Instant::now();
    let json: Value = match response.json().await {
        Ok(json) => json,
        Err(e) => return Refreshed::Failed(format!("HTTP {status}, unreadable body: {e}")),
    };
    if status.is_success() {
        let access_token = json["access_token"].as_str().map(str::to_owned);
        let expires_in = json["expires_in"].as_u64().unwrap_or(3600);
        let lifetime = Duration::from_secs(expires_in);
        return match access_token {
            Some(access_token) => Refreshed::Tokens(OwnTokens {
                access_token,
                refresh_token: json["refresh_token"]
                    .as_str()
                    .unwrap_or(refresh_token)
                    .to_owned(),
                expires_at: received_at + lifetime,
                lifetime,
            }),
            None => Refreshed::Failed("HTTP 200 without an access token".to_owned()),
        };
    }
    // Both error shapes: flat `{"error": "invalid_grant"}` and nested
    // `{"error": {"code": "refresh_token_reused"}}`.
    let code = json["error"]
        .as_str()
        .or_else(|| json["error"]["code"].as_str())
        .unwrap_or("unknown_error")
        .to_owned();
    if status.is_client_error() {
        Refreshed::Refused(code)
    } else {
        Refreshed::Failed(format!("HTTP {status}: {code}"))
    }
}

/// What an API said to a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAnswer {
    Ok,
    Unauthorized,
    Failed,
}

/// `GET <url>` with the token, as an API call.
pub async fn call_api(http: &reqwest::Client, url: &str, access_token: &str) -> ApiAnswer {
    match http.get(url).bearer_auth(access_token).send().await {
        Ok(r) if r.status().is_success() => ApiAnswer::Ok,
        Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => ApiAnswer::Unauthorized,
        _ => ApiAnswer::Failed,
    }
}
