//! Protected resources: `/userinfo` (also `/api/me`) and the fake Copilot API.
//!
//! Why: end-to-end tests must prove that the token a client got from the
//! broker actually works *now* — current, unexpired, family not revoked — the
//! way an API server would judge it, not just that it looks like a token.

use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::App;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                header::WWW_AUTHENTICATE,
                "Bearer error=\"invalid_token\", error_description=\"the access token is invalid or expired\"",
            ),
            (header::CONTENT_TYPE, "application/json"),
        ],
        json!({"error": "invalid_token"}).to_string(),
    )
        .into_response()
}

pub(crate) async fn userinfo(State(app): State<App>, headers: HeaderMap) -> Response {
    let token = bearer(&headers);
    let account = app.update(|i| {
        let ok = token.is_some_and(|t| i.families.is_access_valid(t, Instant::now()));
        if ok {
            i.stats.resource_ok += 1;
            Some(i.cfg.account_id.clone())
        } else {
            i.stats.resource_rejected += 1;
            None
        }
    });
    match account {
        Some(account) => axum::Json(json!({
            "sub": "user-test",
            "email": "user@example.com",
            "chatgpt_account_id": account,
        }))
        .into_response(),
        None => unauthorized(),
    }
}

pub(crate) async fn copilot_api(State(app): State<App>, headers: HeaderMap) -> Response {
    let token = bearer(&headers);
    let ok = app.update(|i| {
        let ok = token.is_some_and(|t| i.copilot.is_session_valid(t, Instant::now()));
        if ok {
            i.stats.resource_ok += 1;
        } else {
            i.stats.resource_rejected += 1;
        }
        ok
    });
    if ok {
        axum::Json(json!({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}))
            .into_response()
    } else {
        unauthorized()
    }
}
