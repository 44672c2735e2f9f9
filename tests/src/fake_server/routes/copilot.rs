//! `GET /copilot_internal/v2/token`: GitHub token → Copilot session token.
//!
//! Strict like the real endpoint: the GitHub token must come as
//! `Authorization: token <t>` (not `Bearer`); unknown or revoked tokens get
//! 401. Faults queued with `push_copilot_fault` apply here.

use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::faults::{self, Unprocessed};
use super::App;
use crate::fake_server::connection::ConnectionControl;
use crate::fake_server::fault::Fault;

fn github_token(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("token")
        .then(|| token.trim().to_owned())
}

pub(crate) async fn exchange(
    State(app): State<App>,
    ConnectInfo(conn): ConnectInfo<ConnectionControl>,
    headers: HeaderMap,
) -> Response {
    let seen: std::collections::BTreeMap<String, String> = [
        ("editor-version", headers.get("editor-version")),
        ("user-agent", headers.get(header::USER_AGENT)),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_owned(), v?.to_str().ok()?.to_owned())))
    .chain(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_whitespace().next())
            .map(|scheme| ("authorization-scheme".to_owned(), scheme.to_owned())),
    )
    .collect();
    let (fault, base_url) = app.update(|i| {
        i.copilot_headers.push(seen);
        i.stats.copilot_exchange_requests += 1;
        let fault = i.copilot_faults.next();
        if fault.is_some() {
            i.stats.faults_injected += 1;
        }
        (fault, i.base_url.clone())
    });
    let token = github_token(&headers);
    let app2 = app.clone();
    let on_unprocessed = move |_: &Fault, how: Unprocessed| {
        if matches!(how, Unprocessed::Dropped) {
            app2.update(|i| i.stats.connections_dropped += 1);
        }
    };
    let process = move |drop_after: bool| {
        let session = app.update(|i| {
            if drop_after {
                i.stats.connections_dropped += 1;
            }
            let now = Instant::now();
            let known = token
                .as_deref()
                .is_some_and(|t| i.copilot.knows_github_token(t) || i.families.is_access_live(t));
            if !known {
                return None;
            }
            i.stats.copilot_exchanges += 1;
            let s = i.copilot.issue_session(i.cfg.copilot_session_ttl, now);
            Some((s, i.cfg.copilot_refresh_in_secs, i.base_url.clone()))
        });
        match session {
            Some((s, refresh_in, base)) => axum::Json(json!({
                "token": s.token,
                "expires_at": s.expires_at_unix,
                "refresh_in": refresh_in,
                "endpoints": {"api": format!("{base}/copilot-api")},
                "sku": "fake_individual",
            }))
            .into_response(),
            None => (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({
                    "message": "Bad credentials",
                    "documentation_url": "https://docs.github.com/rest"
                })),
            )
                .into_response(),
        }
    };
    faults::apply(fault, &base_url, &conn, on_unprocessed, process).await
}
