//! `POST /oauth/token`: parse, apply faults, dispatch to a grant, record.
//!
//! Every request is counted twice: once on arrival
//! (`token_requests_received`, so tests can wait for a request that is still
//! being delayed) and once when its outcome is decided, together with that
//! outcome (`token_requests`, `refresh_requests`, …).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::faults::{self, Unprocessed};
use super::grants;
use super::App;
use crate::fake_server::body;
use crate::fake_server::connection::ConnectionControl;
use crate::fake_server::fault::Fault;
use crate::fake_server::state::Inner;
use crate::fake_server::stats::{BodyEncoding, TokenOutcome, TokenRequestRecord};

pub(crate) const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// What is known about a request before it is processed.
#[derive(Debug, Clone)]
pub(crate) struct RequestInfo {
    pub received_at: Instant,
    pub grant_type: Option<String>,
    pub encoding: BodyEncoding,
    pub client_id: Option<String>,
    pub parsed: bool,
}

/// Counts a handled request and logs it (without token values).
pub(crate) fn record(i: &mut Inner, req: &RequestInfo, outcome: TokenOutcome) {
    let s = &mut i.stats;
    s.token_requests += 1;
    let grant_key = match (&req.grant_type, req.parsed) {
        (_, false) => "<unparsable>".to_owned(),
        (Some(g), true) => g.clone(),
        (None, true) => "<missing>".to_owned(),
    };
    *s.token_requests_by_grant.entry(grant_key).or_default() += 1;
    match req.encoding {
        BodyEncoding::Form => s.form_bodies += 1,
        BodyEncoding::Json => s.json_bodies += 1,
        BodyEncoding::Other => s.other_bodies += 1,
    }
    match req.grant_type.as_deref() {
        Some("refresh_token") => s.refresh_requests += 1,
        Some(DEVICE_GRANT) => {
            s.device_polls += 1;
            i.device_polls.push(req.received_at);
        }
        _ => {}
    }
    i.token_log.push(TokenRequestRecord {
        received_at: req.received_at,
        grant_type: req.grant_type.clone(),
        encoding: req.encoding,
        client_id: req.client_id.clone(),
        outcome,
    });
}

/// Fields that carry secrets are never logged.
const SECRET_FIELDS: &[&str] = &[
    "refresh_token",
    "code",
    "code_verifier",
    "device_code",
    "client_secret",
];

/// The request's non-secret fields plus `header:user-agent`, for assertions
/// such as "the PKCE challenge was echoed" or "no claude-code User-Agent".
fn logged_params(
    headers: &HeaderMap,
    parsed: Option<&body::Params>,
) -> std::collections::BTreeMap<String, String> {
    let mut out: std::collections::BTreeMap<String, String> = parsed
        .map(|p| {
            p.fields
                .iter()
                .filter(|(k, _)| !SECRET_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(ua) = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        out.insert("header:user-agent".to_owned(), ua.to_owned());
    }
    out
}

pub(crate) async fn handle(
    State(app): State<App>,
    ConnectInfo(conn): ConnectInfo<ConnectionControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received_at = Instant::now();
    let parsed = body::parse(&headers, &body);
    let req = RequestInfo {
        received_at,
        grant_type: parsed
            .as_ref()
            .ok()
            .and_then(|p| p.get("grant_type").map(str::to_owned)),
        encoding: match &parsed {
            Ok(p) => p.encoding,
            Err((enc, _)) => *enc,
        },
        client_id: parsed
            .as_ref()
            .ok()
            .and_then(|p| body::client_id(&headers, p)),
        parsed: parsed.is_ok(),
    };
    let params = logged_params(&headers, parsed.as_ref().ok());
    let (fault, base_url) = app.update(|i| {
        i.token_params.push(params);
        i.stats.token_requests_received += 1;
        let fault = i.faults.next();
        if fault.is_some() {
            i.stats.faults_injected += 1;
        }
        (fault, i.base_url.clone())
    });
    if let Some(f) = &fault {
        tracing::debug!(fault = ?f, "fake token endpoint: injecting fault");
    }

    let app_for_fault = app.clone();
    let req_for_fault = req.clone();
    let on_unprocessed = move |f: &Fault, how: Unprocessed| {
        app_for_fault.update(|i| {
            if matches!(how, Unprocessed::Dropped) {
                i.stats.connections_dropped += 1;
            }
            record(i, &req_for_fault, TokenOutcome::Fault(f.clone()));
        })
    };
    let process = move |drop_after: bool| {
        let parsed = parsed.map_err(|(_, why)| why);
        grants::process(&app, &headers, parsed, &req, drop_after)
    };
    faults::apply(fault, &base_url, &conn, on_unprocessed, process).await
}
