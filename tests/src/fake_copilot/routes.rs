//! The fake's answers, and serving them over TLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::{CopilotRequest, Hold, Shared, LOGIN};

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
    let body = axum::body::to_bytes(request.into_body(), 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let bearer = bearer(&headers);
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let bare_path = path.split('?').next().unwrap_or_default().to_string();
    let valid = |token: Option<&str>| token.is_some_and(|t| app.auth.is_access_token_valid(t));

    let mut held = None;
    let (status, response) = match host.as_str() {
        "github.com" if bare_path == "/login/oauth/access_token" => json_answer(
            // GitHub's answer to a refresh token it does not know.
            StatusCode::OK,
            json!({"error": "bad_refresh_token",
                   "error_description": "The refresh token passed is incorrect or expired."}),
        ),
        "api.github.com" if !valid(bearer.as_deref()) => json_answer(
            StatusCode::UNAUTHORIZED,
            json!({"message": "Bad credentials", "status": "401"}),
        ),
        "api.github.com" if bare_path == "/copilot_internal/user" => {
            json_answer(StatusCode::OK, copilot_user())
        }
        "api.github.com" if bare_path == "/user" => json_answer(
            StatusCode::OK,
            json!({"login": LOGIN, "id": 1, "type": "User"}),
        ),
        "api.githubcopilot.com" if method == Method::POST && bare_path == "/responses" => {
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let follow_up = has_tool_output(&request);
            if !follow_up {
                held = app
                    .holds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop_front();
            }
            if held.is_some() {
                wait_until_dead(&app, bearer.as_deref()).await;
            }
            match held {
                Some(Hold::ToolCall) => responses(&request, true),
                _ if valid(bearer.as_deref()) => responses(&request, false),
                _ => unauthorized(),
            }
        }
        "api.githubcopilot.com" if !valid(bearer.as_deref()) => unauthorized(),
        "api.githubcopilot.com" if bare_path == "/models" => json_answer(StatusCode::OK, models()),
        _ => json_answer(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
    };
    app.log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(CopilotRequest {
            at,
            host,
            method: method.to_string(),
            path,
            bearer,
            status: status.as_u16(),
            held,
        });
    response
}

/// `Authorization: Bearer …` (the Copilot API, most of api.github.com) or
/// `Authorization: token …` (the release check).
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    ["bearer", "token"]
        .contains(&scheme.to_ascii_lowercase().as_str())
        .then(|| token.trim().to_string())
}

/// Whether a Responses-API request carries a tool's result (the second
/// request of a turn that called a tool).
fn has_tool_output(request: &Value) -> bool {
    request["input"].as_array().is_some_and(|items| {
        items
            .iter()
            .any(|i| i["type"].as_str() == Some("function_call_output"))
    })
}

/// Waits (bounded) until `token` is no longer valid.
async fn wait_until_dead(app: &Shared, token: Option<&str>) {
    let Some(token) = token else { return };
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.auth.is_access_token_valid(token) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the Copilot API says to a dead token.
fn unauthorized() -> (StatusCode, Response) {
    json_answer(
        StatusCode::UNAUTHORIZED,
        json!({"error": {"message": "unauthorized: token expired", "code": "unauthorized"}}),
    )
}

/// The account's Copilot entitlement (the fields Copilot CLI reads).
fn copilot_user() -> Value {
    json!({
        "login": LOGIN,
        "copilot_plan": "individual",
        "chat_enabled": true,
        "access_type_sku": "free_limited_copilot",
        "endpoints": {
            "api": "https://api.githubcopilot.com",
            "proxy": "https://proxy.githubcopilot.com",
            "telemetry": "https://telemetry.githubcopilot.com"
        },
        "organization_login_list": []
    })
}

fn models() -> Value {
    let model = |id: &str, endpoints: &[&str]| {
        json!({
            "id": id, "name": id, "object": "model", "vendor": "OpenAI", "version": id,
            "preview": false, "model_picker_enabled": true, "policy": {"state": "enabled"},
            "capabilities": {"family": id, "type": "chat", "tokenizer": "o200k_base",
                "limits": {"max_context_window_tokens": 128000, "max_output_tokens": 16384,
                           "max_prompt_tokens": 100000},
                "supports": {"streaming": true, "tool_calls": true, "parallel_tool_calls": true}},
            "supported_endpoints": endpoints,
            "billing": {"is_premium": false, "multiplier": 0}
        })
    };
    json!({"object": "list", "data": [
        model("gpt-5-mini", &["/chat/completions", "/responses"]),
        model("gpt-4.1", &["/chat/completions"]),
    ]})
}

/// A complete Responses-API answer as server-sent events: the text "pong",
/// or a call of a tool that does not exist.
fn responses(request: &Value, tool_call: bool) -> (StatusCode, Response) {
    let model = request["model"].as_str().unwrap_or("gpt-5-mini");
    let response = json!({"id": "resp_1", "object": "response", "created_at": 1,
                          "status": "in_progress", "model": model, "output": []});
    let (item, mut events) = if tool_call {
        let item = json!({"type": "function_call", "id": "fc_1", "call_id": "call_1",
                          "name": "no_such_tool", "arguments": "{}", "status": "completed"});
        let mut started = item.clone();
        started["status"] = "in_progress".into();
        started["arguments"] = "".into();
        let events = vec![
            (
                "response.output_item.added",
                json!({"output_index": 0, "item": started}),
            ),
            (
                "response.function_call_arguments.delta",
                json!({"item_id": "fc_1", "output_index": 0, "delta": "{}"}),
            ),
            (
                "response.function_call_arguments.done",
                json!({"item_id": "fc_1", "output_index": 0, "arguments": "{}"}),
            ),
        ];
        (item, events)
    } else {
        let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
        let item = json!({"id": "msg_1", "type": "message", "role": "assistant",
                          "status": "completed", "content": [part("pong")]});
        let mut started = item.clone();
        started["status"] = "in_progress".into();
        started["content"] = json!([]);
        let at = json!({"item_id": "msg_1", "output_index": 0, "content_index": 0});
        let with = |mut base: Value, key: &str, value: Value| {
            base[key] = value;
            base
        };
        let events = vec![
            (
                "response.output_item.added",
                json!({"output_index": 0, "item": started}),
            ),
            (
                "response.content_part.added",
                with(at.clone(), "part", part("")),
            ),
            (
                "response.output_text.delta",
                with(at.clone(), "delta", "pong".into()),
            ),
            (
                "response.output_text.done",
                with(at.clone(), "text", "pong".into()),
            ),
            ("response.content_part.done", with(at, "part", part("pong"))),
        ];
        (item, events)
    };
    events.insert(
        0,
        ("response.created", json!({"response": response.clone()})),
    );
    events.push((
        "response.output_item.done",
        json!({"output_index": 0, "item": item.clone()}),
    ));
    let mut completed = response;
    completed["status"] = "completed".into();
    completed["output"] = json!([item]);
    completed["usage"] = json!({"input_tokens": 3, "output_tokens": 1, "total_tokens": 4,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0}});
    events.push(("response.completed", json!({"response": completed})));
    let body: String = events
        .into_iter()
        .enumerate()
        .map(|(n, (kind, mut data))| {
            data["type"] = kind.into();
            data["sequence_number"] = n.into();
            format!("event: {kind}\ndata: {data}\n\n")
        })
        .collect();
    (
        StatusCode::OK,
        ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response(),
    )
}

fn json_answer(status: StatusCode, value: Value) -> (StatusCode, Response) {
    (status, (status, axum::Json(value)).into_response())
}
