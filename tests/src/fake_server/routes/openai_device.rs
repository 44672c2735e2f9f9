//! `POST /api/accounts/deviceauth/usercode` and
//! `POST /api/accounts/deviceauth/token`: OpenAI's device login scheme (see
//! `openai_device.rs` for the rules), plus the page the user would visit.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use super::App;
use crate::fake_server::body;
use crate::fake_server::openai_device::OpenAiPoll;

fn json_answer(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

pub(crate) async fn user_code(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let params = body::parse(&headers, &body);
    let answer = app.update(|i| {
        i.stats.openai_device_code_requests += 1;
        let client_id = params.as_ref().ok().and_then(|p| p.get("client_id"));
        if client_id != Some(i.cfg.client_id.as_str()) {
            i.stats.invalid_client += 1;
            return Err(());
        }
        let (id, user_code) = i.openai_device.start(i.cfg.device_code_ttl, Instant::now());
        // `interval` is a string in OpenAI's answer.
        Ok(json!({
            "device_auth_id": id,
            "user_code": user_code,
            "interval": i.cfg.device_interval_secs.to_string(),
        }))
    });
    match answer {
        Ok(body) => json_answer(StatusCode::OK, body),
        Err(()) => json_answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": "invalid_client", "message": "unknown client"}}),
        ),
    }
}

pub(crate) async fn poll(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let params = body::parse(&headers, &body).ok();
    let get = |k: &str| {
        params
            .as_ref()
            .and_then(|p| p.get(k))
            .unwrap_or_default()
            .to_owned()
    };
    let (id, user_code) = (get("device_auth_id"), get("user_code"));
    let (answer, n) = app.update(|i| {
        let now = Instant::now();
        i.stats.openai_device_polls += 1;
        i.openai_device_polls.push(now);
        (
            i.openai_device.poll(&id, &user_code, now),
            i.stats.openai_device_polls,
        )
    });
    match answer {
        // Both answers mean "not yet"; alternate so clients must accept both.
        OpenAiPoll::Pending if n % 2 == 1 => json_answer(
            StatusCode::FORBIDDEN,
            json!({"error": {"code": "deviceauth_authorization_pending", "message": "authorization pending"}}),
        ),
        OpenAiPoll::Pending => json_answer(
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "deviceauth_authorization_unknown", "message": "not found"}}),
        ),
        OpenAiPoll::Denied => json_answer(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": "access_denied", "message": "the user denied the request"}}),
        ),
        OpenAiPoll::Approved {
            code,
            challenge,
            verifier,
        } => json_answer(
            StatusCode::OK,
            json!({
                "authorization_code": code,
                "code_challenge": challenge,
                "code_verifier": verifier,
            }),
        ),
    }
}

/// `GET /codex/device`: where a human would type the code.
pub(crate) async fn page() -> Html<&'static str> {
    Html("<!DOCTYPE html><html><body><h1>Enter the code shown in your terminal</h1></body></html>")
}
