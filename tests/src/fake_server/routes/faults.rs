//! Applying an injected [`Fault`] around an endpoint's normal processing.
//!
//! Why processing runs in a spawned task: on a real server a request that
//! arrived is processed even if the client hangs up while it waits (that is
//! what burns refresh tokens). A handler future, in contrast, may be
//! cancelled when its connection dies; a spawned task is not.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use crate::fake_server::connection::ConnectionControl;
use crate::fake_server::fault::{Fault, FaultPlan};

const CAPTIVE_PAGE: &str = "<!DOCTYPE html><html><head><title>Sign in to Wi-Fi</title></head>\
<body><h1>Welcome to Hotel Wi-Fi</h1><p>Please accept the terms to continue.</p>\
<form method=\"post\" action=\"/accept\"><button>Accept</button></form></body></html>";

/// `GET /captive`: where [`Fault::Redirect`] sends clients.
pub(crate) async fn captive_page() -> Html<&'static str> {
    Html(CAPTIVE_PAGE)
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn json_response(code: u16, body: String) -> Response {
    (
        status(code),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The canned answer of a fault that replaces processing.
fn canned(fault: &Fault, base_url: &str) -> Response {
    match fault {
        Fault::Status(code) => json_response(
            *code,
            json!({"error": "server_error", "error_description": format!("injected HTTP {code}")})
                .to_string(),
        ),
        Fault::Custom {
            status: code,
            content_type,
            body,
        } => {
            let mut r = (status(*code), body.clone()).into_response();
            if let Ok(v) = HeaderValue::from_str(content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r
        }
        Fault::TooManyRequests { retry_after_secs } => {
            let mut r = json_response(
                429,
                json!({"error": "temporarily_unavailable", "error_description": "too many requests"})
                    .to_string(),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            r
        }
        Fault::Html { status: code } => (status(*code), Html(CAPTIVE_PAGE)).into_response(),
        Fault::TruncatedJson => json_response(200, r#"{"access_token": "abc"#.to_owned()),
        Fault::NoAccessToken => json_response(200, r#"{"token_type":"Bearer"}"#.to_owned()),
        Fault::Redirect => (
            StatusCode::FOUND,
            [(header::LOCATION, format!("{base_url}/captive"))],
        )
            .into_response(),
        Fault::Delay(_)
        | Fault::DropConnection
        | Fault::RotateThenDrop
        | Fault::DelayThenRotateThenDrop(_) => {
            unreachable!("{fault:?} is not a canned answer")
        }
    }
}

/// What became of a request that had a fault.
pub(crate) enum Unprocessed {
    /// A canned answer was sent instead of processing.
    Answered,
    /// The connection was closed before processing.
    Dropped,
}

/// Runs `process` under `fault`.
///
/// * `on_unprocessed(fault, how)` records requests the fault kept from
///   being processed;
/// * `process(drop_after)` does the endpoint's work and records its outcome;
///   `drop_after` tells it the answer will be dropped.
pub(crate) async fn apply<P, U>(
    fault: Option<Fault>,
    base_url: &str,
    conn: &ConnectionControl,
    on_unprocessed: U,
    process: P,
) -> Response
where
    P: FnOnce(bool) -> Response + Send + 'static,
    U: FnOnce(&Fault, Unprocessed),
{
    let Some(fault) = fault else {
        return process(false);
    };
    match fault.plan() {
        FaultPlan::Respond(f) => {
            on_unprocessed(&f, Unprocessed::Answered);
            canned(&f, base_url)
        }
        FaultPlan::DropNow => {
            on_unprocessed(&fault, Unprocessed::Dropped);
            conn.drop_connection();
            dropped_placeholder()
        }
        FaultPlan::Process { delay, drop_after } => {
            let task = tokio::spawn(async move {
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
                process(drop_after)
            });
            let resp = task.await.unwrap_or_else(|_| {
                (StatusCode::INTERNAL_SERVER_ERROR, "fake server task failed").into_response()
            });
            if drop_after {
                conn.drop_connection();
                return dropped_placeholder();
            }
            resp
        }
    }
}

/// Returned from a handler whose connection was dropped; never reaches the
/// client because every write on the connection fails.
fn dropped_placeholder() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, "connection dropped").into_response()
}
