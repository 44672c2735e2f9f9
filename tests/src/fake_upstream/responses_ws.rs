//! Codex's Responses API over WebSocket, as the fake upstream speaks it when
//! started with [`super::UpstreamOptions::responses_websocket`].
//!
//! What Codex CLI sends and expects (read from its source, `codex-api`'s
//! `responses_websocket.rs` and `core`'s `client.rs`, and checked against the
//! pinned 0.169.0 by the proxy test):
//!
//! * the upgrade is a `GET {base_url}/responses` with `Upgrade: websocket`,
//!   the provider's headers and its `Authorization: Bearer` (for a custom
//!   provider, the `env_key`'s value), an `OpenAI-Beta: responses_websockets=…`
//!   opt-in and a permessage-deflate offer (declined here by not answering it);
//!   no subprotocol;
//! * per model request one text message `{"type":"response.create", …}`
//!   carrying the body the HTTP POST would carry. Observed with 0.169.0: one
//!   socket per turn (per `codex exec`), on which come a warm-up with
//!   `"generate": false`, then the request, then each tool-output follow-up,
//!   these two naming the `previous_response_id` and sending only new input;
//! * the server answers with the SSE stream's events, each JSON object one text
//!   message (`response.created`, `response.output_item.done`,
//!   `response.completed`); `response.completed` ends the request, and the
//!   socket stays open for the next one. A close before it, or a binary
//!   message, fails the request; an upgrade answered `426` makes Codex use
//!   HTTP (SSE) for the rest of its session.
//!
//! A prompt holding [`TOOL_TURN`] is answered with a call of Codex's built-in
//! `update_plan` tool first, so that one turn makes two requests on its socket;
//! [`super::FakeUpstream::hold_websocket_answers`] holds each answer after
//! `response.created`, so a test can let the token rotate in between.
//!
//! The credential is checked once, at the upgrade (as by ChatGPT's backend,
//! which instead ends a connection after 60 minutes): every message on a
//! connection is recorded with the bearer token its upgrade carried.

use super::{Shared, WsMessage};
use futures_util::{SinkExt as _, StreamExt as _};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// `Sec-WebSocket-Accept` for the client's `Sec-WebSocket-Key`.
pub(super) fn accept_key(key: &[u8]) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key)
}

/// Serves one upgraded connection: answers each `response.create` with a
/// turn ("pong", or no output for a warm-up), until the client closes.
pub(super) async fn serve(
    shared: Arc<Shared>,
    on_upgrade: OnUpgrade,
    connection: usize,
    bearer: Option<String>,
) {
    let Ok(upgraded) = on_upgrade.await else {
        return;
    };
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    while let Some(Ok(message)) = ws.next().await {
        let text = match message {
            Message::Text(text) => text.to_string(),
            Message::Close(_) => return,
            _ => continue,
        };
        let request: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let kind = request["type"].as_str().unwrap_or("").to_string();
        // Fields are those of the HTTP body; tolerate them nested in `body`.
        let field = |name: &str| {
            let v = &request[name];
            if v.is_null() {
                request["body"][name].clone()
            } else {
                v.clone()
            }
        };
        let generate = field("generate").as_bool();
        let previous_response_id = field("previous_response_id").as_str().map(str::to_string);
        let input_items = field("input").as_array().map_or(0, Vec::len);
        let answers = kind.starts_with("response.create") || kind.starts_with("response.append");
        let response_id = answers.then(|| {
            format!(
                "resp_ws_{}",
                shared.ws_responses.fetch_add(1, Ordering::SeqCst)
            )
        });
        if let Some(id) = &response_id {
            let warm_up = generate == Some(false);
            let hold = shared.hold_websocket_answers.load(Ordering::SeqCst) && !warm_up;
            let events = if !warm_up && calls_tool(&text) {
                tool_call_events(id)
            } else {
                let text = if warm_up { "" } else { "pong" };
                crate::fake_chatgpt::routes::turn_event_values(id, text)
            };
            let (first, rest) = events.split_first().expect("a response.created event");
            if ws.send(Message::text(first.to_string())).await.is_err() {
                return;
            }
            record(
                &shared,
                WsMessage {
                    connection,
                    bearer: bearer.clone(),
                    kind,
                    generate,
                    previous_response_id,
                    input_items,
                    response_id: response_id.clone(),
                },
            );
            if hold {
                shared.wait_for_release().await;
            }
            for event in rest {
                if ws.send(Message::text(event.to_string())).await.is_err() {
                    return;
                }
            }
        } else {
            record(
                &shared,
                WsMessage {
                    connection,
                    bearer: bearer.clone(),
                    kind,
                    generate,
                    previous_response_id,
                    input_items,
                    response_id: None,
                },
            );
        }
    }
}

/// The prompt marker that makes the fake answer with a tool call first.
pub const TOOL_TURN: &str = "TOOL-TURN";

/// Whether a request asks for a tool call: its input holds [`TOOL_TURN`] and
/// no tool output yet (the follow-up request, which carries the output, is
/// answered "pong").
fn calls_tool(request: &str) -> bool {
    request.contains(TOOL_TURN) && !request.contains("function_call_output")
}

/// A response whose one output item calls Codex's built-in `update_plan`
/// tool, which Codex runs in-process (no sandbox, no approval) and answers in
/// a second request of the same turn.
fn tool_call_events(id: &str) -> Vec<serde_json::Value> {
    let call = serde_json::json!({
        "type": "function_call", "id": format!("fc_{id}"), "call_id": format!("call_{id}"),
        "name": "update_plan", "status": "completed",
        "arguments": r#"{"plan":[{"step":"say pong","status":"in_progress"}]}"#,
    });
    vec![
        serde_json::json!({"type": "response.created", "response": {"id": id}}),
        serde_json::json!({"type": "response.output_item.done", "output_index": 0, "item": call}),
        serde_json::json!({"type": "response.completed", "response": {
            "id": id, "object": "response", "status": "completed", "model": "gpt-test",
            "output": [call],
            "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
        }}),
    ]
}

fn record(shared: &Shared, message: WsMessage) {
    shared
        .ws_log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(message);
    shared.ws_seen.notify_all();
}
