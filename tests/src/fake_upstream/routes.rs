//! The fake upstream's behaviour (see the module doc).

use super::{Shared, UpstreamRequest};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

type Body = BoxBody<Bytes, Infallible>;

pub(super) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(shared.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into()).boxed()
}

async fn answer(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                v.to_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let websocket = req
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let on_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    // Count the body as it streams (never more than a chunk held).
    let mut body_len = 0u64;
    let mut body = req.into_body();
    let mut first_bytes = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            body_len += data.len() as u64;
            if first_bytes.len() < 64 * 1024 {
                first_bytes.extend_from_slice(data);
            }
        }
    }
    let authorised = bearer.as_deref().is_some_and(|t| {
        (shared.check)(t)
            && !shared
                .refused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|r| r == t)
    });
    let response = if !authorised {
        Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("content-type", "application/json")
            .body(full(r#"{"error":{"message":"invalid token","type":"invalid_request_error","code":"invalid_api_key"}}"#))
            .unwrap()
    } else if on_upgrade.is_some()
        && path.contains("/responses")
        && shared.options.responses_websocket
    {
        let accept = headers
            .iter()
            .find(|(n, _)| n == "sec-websocket-key")
            .map(|(_, key)| super::responses_ws::accept_key(key.as_bytes()))
            .unwrap_or_default();
        let connection = shared.ws_connections.fetch_add(1, Ordering::SeqCst);
        let on_upgrade = on_upgrade.expect("an upgrade");
        tokio::spawn(super::responses_ws::serve(
            shared.clone(),
            on_upgrade,
            connection,
            bearer.clone(),
        ));
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", accept)
            .body(full(Bytes::new()))
            .unwrap()
    } else if on_upgrade.is_some() && path.contains("/responses") {
        // Codex tries a Responses WebSocket first and falls back to SSE on
        // 426, as with ChatGPT's backend in the Codex tests.
        Response::builder()
            .status(StatusCode::UPGRADE_REQUIRED)
            .body(full("no websockets here"))
            .unwrap()
    } else if let Some(on_upgrade) = on_upgrade {
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut io = TokioIo::new(upgraded);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if io.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .body(full(Bytes::new()))
            .unwrap()
    } else if path.starts_with("/sse") {
        let held = shared.clone();
        let stream = async_stream(held);
        Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(StreamBody::new(stream).boxed())
            .unwrap()
    } else if method == "POST"
        && path.split('?').next().unwrap_or("").ends_with("/responses")
        && is_codex(&headers)
    {
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(full(crate::fake_chatgpt::routes::turn_events()))
            .unwrap()
    } else if method == "GET" && path.split('?').next().unwrap_or("").ends_with("/models") {
        Response::builder()
            .header("content-type", "application/json")
            .body(full(r#"{"object":"list","data":[],"models":[]}"#))
            .unwrap()
    } else if path.ends_with("/chat/completions") && wants_stream(&first_bytes) {
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(full(chat_stream()))
            .unwrap()
    } else if path.ends_with("/chat/completions") {
        Response::builder()
            .header("content-type", "application/json")
            .body(full(
                serde_json::json!({
                    "id": "chatcmpl-proxy",
                    "object": "chat.completion",
                    "created": 1_700_000_000,
                    "model": "fake-model",
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": "through the proxy"},
                        "finish_reason": "stop"
                    }],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
                })
                .to_string(),
            ))
            .unwrap()
    } else {
        Response::builder()
            .header("content-type", "application/json")
            .body(full(
                serde_json::json!({"method": method, "path": path, "body_len": body_len})
                    .to_string(),
            ))
            .unwrap()
    };
    shared
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(UpstreamRequest {
            method,
            path,
            bearer,
            headers,
            body_len,
            status: response.status().as_u16(),
        });
    Ok(response)
}

/// Whether the request comes from Codex CLI (its `originator` header or
/// user agent): it gets a Responses-API turn.
fn is_codex(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(n, v)| {
        (n == "originator" && v.contains("codex")) || (n == "user-agent" && v.contains("codex"))
    })
}

/// Whether a JSON request body asks for a stream (`"stream": true`).
fn wants_stream(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("stream").and_then(|s| s.as_bool()))
        .unwrap_or(false)
}

/// An OpenAI-style streamed chat completion: two deltas, a finish, `[DONE]`.
fn chat_stream() -> String {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        serde_json::json!({
            "id": "chatcmpl-proxy",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "fake-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        })
    };
    let mut out = String::new();
    for event in [
        chunk(
            serde_json::json!({"role": "assistant", "content": "through"}),
            None,
        ),
        chunk(serde_json::json!({"content": " the proxy"}), None),
        chunk(serde_json::json!({}), Some("stop")),
    ] {
        out.push_str(&format!("data: {event}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out
}

/// `data: first`, then (after the release) `data: last`.
fn async_stream(
    shared: Arc<Shared>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures_util::stream::unfold(0u8, move |step| {
        let shared = shared.clone();
        async move {
            match step {
                0 => Some((Ok(Frame::data(Bytes::from_static(b"data: first\n\n"))), 1)),
                1 => {
                    shared.wait_for_release().await;
                    Some((Ok(Frame::data(Bytes::from_static(b"data: last\n\n"))), 2))
                }
                _ => None,
            }
        }
    })
}
