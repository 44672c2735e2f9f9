//! `POST /oauth/device/code` (RFC 8628 §3.1–3.2) and the verification page.
//!
//! The polling half lives in the token endpoint (`grants.rs`); the user half
//! is the test API (`approve_device`, `deny_device`, …).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use super::App;
use crate::fake_server::body;
use crate::fake_server::errors::OAuthError;
use crate::fake_server::stats::DeviceCodeInfo;

pub(crate) async fn start(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match body::parse(&headers, &body) {
        Ok(p) => p,
        Err((_, why)) => return OAuthError::flat(400, "invalid_request", &why).into_response(),
    };
    let client_id = body::client_id(&headers, &params);
    let answer = app.update(|i| {
        i.stats.device_code_requests += 1;
        if client_id.as_deref() != Some(i.cfg.client_id.as_str()) {
            i.stats.invalid_client += 1;
            return Err(OAuthError::flat(401, "invalid_client", "unknown client"));
        }
        let now = Instant::now();
        let scope = params
            .get("scope")
            .map(str::to_owned)
            .unwrap_or_else(|| i.cfg.default_scope.clone());
        let started = i
            .device
            .start(&i.cfg.client_id, &scope, i.cfg.device_code_ttl, now);
        let verification_uri = format!("{}/device", i.base_url);
        let info = DeviceCodeInfo {
            verification_uri_complete: format!(
                "{verification_uri}?user_code={}",
                started.user_code
            ),
            verification_uri,
            user_code: started.user_code.clone(),
            interval: i.cfg.device_interval_secs,
            issued_at: now,
        };
        i.device.remember(info.clone());
        Ok(json!({
            "device_code": started.device_code,
            "user_code": info.user_code,
            "verification_uri": info.verification_uri,
            "verification_uri_complete": info.verification_uri_complete,
            "expires_in": i.cfg.device_code_ttl.as_secs(),
            "interval": info.interval,
        }))
    });
    match answer {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body.to_string(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /device`: a page where a human would type the user code.
pub(crate) async fn page() -> Html<&'static str> {
    Html("<!DOCTYPE html><html><body><h1>Enter the code shown on your device</h1></body></html>")
}
