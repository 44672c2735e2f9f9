//! The proxy's own answers (the one place its failures become HTTP): a JSON
//! body both OpenAI and Anthropic SDKs show (`error.message`), naming the
//! cause and the fix.

use super::body::{full, ProxyBody};
use http::{header, Response, StatusCode};
use oauth_broker_proto::ErrorFrame;

/// A refusal: status, machine-readable code, message, optional hint.
pub fn respond(
    status: StatusCode,
    code: &str,
    message: &str,
    hint: Option<&str>,
) -> Response<ProxyBody> {
    let mut error = serde_json::json!({
        "type": "oauth_broker_proxy_error",
        "code": code,
        "message": message,
    });
    if let Some(hint) = hint {
        error["hint"] = hint.into();
    }
    let body = serde_json::json!({ "type": "error", "error": error }).to_string();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("a static response")
}

const KEY_HINT: &str =
    "create a key with `brokerctl proxy key --name TOOL` and give it to the tool as its API key";

/// Closes the connection after a key refusal: a caller without a key gets
/// no idle keep-alive connection to hold (see `serve.rs`).
fn close(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// No key presented.
pub fn no_key() -> Response<ProxyBody> {
    close(respond(
        StatusCode::UNAUTHORIZED,
        "proxy_key_missing",
        "oauth-broker proxy: no key; send a key the broker issued as the API key (Authorization: Bearer <key> or x-api-key: <key>)",
        Some(KEY_HINT),
    ))
}

/// A key the broker did not issue, or revoked.
pub fn bad_key() -> Response<ProxyBody> {
    close(respond(
        StatusCode::UNAUTHORIZED,
        "proxy_key_invalid",
        "oauth-broker proxy: the key is not one this broker issued, or it was revoked",
        Some(KEY_HINT),
    ))
}

/// The broker has no token to inject.
pub fn no_token(frame: ErrorFrame) -> Response<ProxyBody> {
    let code = serde_json::to_value(frame.code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "internal".into());
    let mut response = respond(
        StatusCode::SERVICE_UNAVAILABLE,
        &code,
        &format!("oauth-broker proxy: no access token: {}", frame.message),
        frame.hint.as_deref(),
    );
    if let Some(secs) = frame.retry_after_secs {
        if let Ok(v) = secs.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}

/// A request body over the cap.
pub fn too_large(cap: u64) -> Response<ProxyBody> {
    respond(
        StatusCode::PAYLOAD_TOO_LARGE,
        "proxy_body_too_large",
        &format!("oauth-broker proxy: the request body is larger than {cap} bytes"),
        Some("raise `max_body_bytes` in the [[proxy]] table if this is intended"),
    )
}

/// The request body could not be read.
pub fn unreadable() -> Response<ProxyBody> {
    respond(
        StatusCode::BAD_REQUEST,
        "proxy_body_unreadable",
        "oauth-broker proxy: the request body could not be read",
        None,
    )
}

/// The upstream cannot be used or reached.
pub fn upstream(why: &str) -> Response<ProxyBody> {
    respond(
        StatusCode::BAD_GATEWAY,
        "proxy_upstream_failed",
        &format!("oauth-broker proxy: {why}"),
        None,
    )
}
