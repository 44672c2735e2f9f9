//! The fake's answers, and serving them over TLS.
//!
//! One handler decides by method and path and records every request the same
//! way, whichever host name it was sent to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;

use super::{AnthropicRequest, Hold, Shared};

/// Accepts TLS connections on `listener` and serves each with HTTP/1.1 until
/// the runtime stops.
pub(crate) async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: Arc<Shared>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let router = Router::new().fallback(handle).with_state(app);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            // A client that does not trust the CA just fails its handshake.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = TowerToHyperService::new(router);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Serves `listener` with plain HTTP/1.1 until the runtime stops: the fake as
/// an upstream on a loopback port of the test's own network (the broker's
/// proxy in front of it terminates nothing but the tool's plain connection).
pub(crate) async fn serve_plain(listener: TcpListener, app: Arc<Shared>) {
    let router = Router::new().fallback(handle).with_state(app);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let service = TowerToHyperService::new(router);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn handle(
    axum::extract::State(app): axum::extract::State<Arc<Shared>>,
    request: Request<Body>,
) -> Response {
    let at = Instant::now();
    let method = request.method().clone();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let headers = request.headers().clone();
    let _ = axum::body::to_bytes(request.into_body(), 16 * 1024 * 1024).await;
    let bearer = bearer(&headers);
    let bare_path = path.split('?').next().unwrap_or_default().to_string();

    let mut held = None;
    let (status, response) = if method == Method::POST && bare_path == "/v1/messages" {
        held = app
            .holds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        if held.is_some() {
            wait_until_dead(&app, bearer.as_deref()).await;
        }
        if held == Some(Hold::ToolCall) {
            tool_call()
        } else if authorized(&app, bearer.as_deref()) {
            message()
        } else {
            unauthorized()
        }
    } else if bare_path == "/v1/oauth/token" {
        // What Anthropic answers to a refresh token it does not know.
        json_answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": "Invalid refresh token"}),
        )
    } else {
        json_answer(
            StatusCode::NOT_FOUND,
            json!({"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}),
        )
    };
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    app.log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(AnthropicRequest {
            at,
            host: text(header::HOST),
            method: method.to_string(),
            path,
            bearer,
            oauth_beta: text(header::HeaderName::from_static("anthropic-beta"))
                .split(',')
                .any(|b| b.trim().starts_with("oauth-")),
            api_key: headers
                .get("x-api-key")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            status: status.as_u16(),
            held,
        });
    response
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::to_string)
}

/// A token the authorization server considers valid now.
fn authorized(app: &Shared, bearer: Option<&str>) -> bool {
    bearer.is_some_and(|token| app.auth.is_access_token_valid(token))
}

/// Anthropic's answer to an expired or unknown OAuth token.
fn unauthorized() -> (StatusCode, Response) {
    json_answer(
        StatusCode::UNAUTHORIZED,
        json!({"type": "error",
               "error": {"type": "authentication_error", "message": "OAuth token has expired."}}),
    )
}

/// Waits (bounded) until `token` is no longer valid at the authorization
/// server.
async fn wait_until_dead(app: &Shared, token: Option<&str>) {
    let Some(token) = token else { return };
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.auth.is_access_token_valid(token) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A complete Messages-API answer "pong", as server-sent events.
fn message() -> (StatusCode, Response) {
    events(&[
        json!({"type": "content_block_start", "index": 0,
               "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0,
               "delta": {"type": "text_delta", "text": "pong"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"output_tokens": 1}}),
    ])
}

/// A Messages-API answer that calls a tool Claude Code does not have.
fn tool_call() -> (StatusCode, Response) {
    events(&[
        json!({"type": "content_block_start", "index": 0,
               "content_block": {"type": "tool_use", "id": "toolu_1", "name": "NoSuchTool", "input": {}}}),
        json!({"type": "content_block_delta", "index": 0,
               "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
               "usage": {"output_tokens": 1}}),
    ])
}

/// An SSE answer: `message_start`, `content`, `message_stop`.
fn events(content: &[serde_json::Value]) -> (StatusCode, Response) {
    let start = json!({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 3, "output_tokens": 1}}});
    let stop = json!({"type": "message_stop"});
    let events: Vec<&serde_json::Value> = std::iter::once(&start)
        .chain(content)
        .chain(std::iter::once(&stop))
        .collect();
    let body: String = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect();
    (
        StatusCode::OK,
        ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response(),
    )
}

fn json_answer(status: StatusCode, value: serde_json::Value) -> (StatusCode, Response) {
    (status, (status, axum::Json(value)).into_response())
}
