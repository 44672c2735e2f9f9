//! The backend's answers, and serving them over TLS.
//!
//! One handler decides by method and path rather than an axum route table:
//! the paths differ by prefix between Codex's built-in provider
//! (`/backend-api/codex/responses`) and custom providers or SDKs
//! (`/v1/responses`), and every request must be recorded the same way.

use std::sync::atomic::Ordering;
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

use super::{BackendRequest, Shared};

/// Accepts TLS connections and serves each with HTTP/1.1 until the task is
/// dropped.
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
                .with_upgrades()
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
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // Read the body whole (Codex compresses it; only the headers matter here,
    // except for the authorization server's requests, passed on as they are).
    let body = axum::body::to_bytes(request.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let bearer = bearer(&headers);
    let websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let bare_path = path.split('?').next().unwrap_or_default().to_string();

    let mut held = false;
    let (status, response) = if host.split(':').next() == Some(super::AUTH_HOST) {
        pass_to_auth_server(&app, &method, &path, &headers, body).await
    } else if websocket {
        // Codex falls back to HTTPS at once on 426 (it retries other errors).
        text(StatusCode::UPGRADE_REQUIRED, "no websockets here")
    } else if method == Method::GET && bare_path.ends_with("/wham/accounts/check") {
        accounts(&app)
    } else if method == Method::GET && bare_path.ends_with("/codex/models") {
        json_answer(StatusCode::OK, json!({"models": []}))
    } else if method == Method::POST && bare_path.ends_with("/responses") {
        if app.hold_next_turn.swap(false, Ordering::SeqCst) {
            held = true;
            wait_until_dead(&app, bearer.as_deref()).await;
        }
        if authorized(&app, bearer.as_deref()) {
            turn()
        } else {
            unauthorized()
        }
    } else if method == Method::GET && bare_path == "/v1/models" {
        if authorized(&app, bearer.as_deref()) {
            json_answer(StatusCode::OK, json!({"object": "list", "data": []}))
        } else {
            unauthorized()
        }
    } else {
        json_answer(StatusCode::NOT_FOUND, json!({"detail": "not found"}))
    };
    app.log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(BackendRequest {
            at,
            host,
            method: method.to_string(),
            path,
            bearer,
            account_id: headers
                .get("chatgpt-account-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            websocket,
            status: status.as_u16(),
            held,
        });
    response
}

/// Passes a request for `auth.openai.com` on to the fake authorization server
/// (plain HTTP on loopback; its paths are OpenAI's), so that its counters see
/// a client's own refresh or revocation.
async fn pass_to_auth_server(
    app: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, Response) {
    let url = format!("{}{path}", app.auth.base_url().trim_end_matches('/'));
    let mut request = reqwest::Client::new()
        .request(method.clone(), url)
        .body(body);
    for name in [header::CONTENT_TYPE, header::ACCEPT, header::AUTHORIZATION] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status();
            let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
            let bytes = answer.bytes().await.unwrap_or_default();
            let mut response = (status, bytes).into_response();
            if let Some(content_type) = content_type {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
            }
            (status, response)
        }
        Err(_) => text(
            StatusCode::BAD_GATEWAY,
            "the fake authorization server is gone",
        ),
    }
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

fn unauthorized() -> (StatusCode, Response) {
    json_answer(
        StatusCode::UNAUTHORIZED,
        json!({"error": {"message": "Your authentication token has expired or is invalid.",
                         "type": "invalid_request_error", "code": "token_expired"}}),
    )
}

/// Waits (bounded) until `token` is no longer valid at the authorization
/// server.
async fn wait_until_dead(app: &Shared, token: Option<&str>) {
    let Some(token) = token else { return };
    // Until the token's own end (plus a margin for a loaded machine), however
    // long it still had to live: a fixed cap could answer while it is valid.
    let deadline = app
        .auth
        .access_token_expires_at(token)
        .map_or(Instant::now(), |end| end + Duration::from_secs(5))
        .max(Instant::now() + Duration::from_secs(30));
    while app.auth.is_access_token_valid(token) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn accounts(app: &Shared) -> (StatusCode, Response) {
    json_answer(
        StatusCode::OK,
        json!({
            "accounts": [{
                "id": app.account_id,
                "plan_type": "plus",
                "structure": "personal",
                "workspace_backend_origin": app.origin,
                "account_routing_override": "NO_CONSTRAINT",
            }],
            "account_ordering": [app.account_id],
            "default_account_id": app.account_id,
        }),
    )
}

/// A complete Responses-API turn answering "pong", as server-sent events.
fn turn() -> (StatusCode, Response) {
    (
        StatusCode::OK,
        ([(header::CONTENT_TYPE, "text/event-stream")], turn_events()).into_response(),
    )
}

/// The server-sent events of a Responses-API turn answering "pong" (also
/// what the proxy tests' fake upstream answers Codex with).
pub(crate) fn turn_events() -> String {
    turn_event_values("resp_1", "pong")
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect()
}

/// The events of a Responses-API turn `id` whose one message says `text`:
/// `response.created`, `response.output_item.done`, `response.completed`. The
/// same JSON objects go out as SSE `data:` lines or as WebSocket text
/// messages; an empty `text` gives a response without output (the answer to
/// Codex's `generate: false` warm-up request).
pub(crate) fn turn_event_values(id: &str, text: &str) -> Vec<serde_json::Value> {
    let message = json!({
        "type": "message", "id": format!("msg_{id}"), "role": "assistant", "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    });
    let output = if text.is_empty() {
        json!([])
    } else {
        json!([message])
    };
    let response = json!({
        "id": id, "object": "response", "status": "completed", "model": "gpt-test",
        "output": output,
        "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
    });
    let mut events = vec![json!({"type": "response.created", "response": {"id": id}})];
    if !text.is_empty() {
        events
            .push(json!({"type": "response.output_item.done", "output_index": 0, "item": message}));
    }
    events.push(json!({"type": "response.completed", "response": response}));
    events
}

fn json_answer(status: StatusCode, value: serde_json::Value) -> (StatusCode, Response) {
    (status, (status, axum::Json(value)).into_response())
}

fn text(status: StatusCode, body: &'static str) -> (StatusCode, Response) {
    (status, (status, body).into_response())
}
