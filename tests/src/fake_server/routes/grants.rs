//! The grant types of the token endpoint: refresh, authorization code, device.
//!
//! Why one function per grant, each under the lock: the decision (is this
//! refresh token current? rotate it; count it) must be atomic, or concurrent
//! refreshes would be miscounted — and the end-to-end tests assert exact
//! counts.

use std::time::Instant;

use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::token::{record, RequestInfo, DEVICE_GRANT};
use super::App;
use crate::fake_server::body::{self, Params};
use crate::fake_server::errors::OAuthError;
use crate::fake_server::families::{Accepted, Minted, RefreshError};
use crate::fake_server::state::Inner;
use crate::fake_server::stats::TokenOutcome;

/// Processes one parsed token request and records its outcome.
pub(crate) fn process(
    app: &App,
    headers: &HeaderMap,
    parsed: Result<Params, String>,
    req: &RequestInfo,
    drop_after: bool,
) -> Response {
    let result = app.update(|i| {
        let result = grant(i, headers, parsed);
        let outcome = match &result {
            Ok(_) if drop_after => TokenOutcome::IssuedThenDropped,
            Ok(_) => TokenOutcome::Issued,
            Err(e) => TokenOutcome::Rejected {
                status: e.status,
                error: e.code.clone(),
            },
        };
        if drop_after {
            i.stats.connections_dropped += 1;
        }
        record(i, req, outcome);
        result
    });
    match result {
        Ok(minted) => token_response(&minted),
        Err(e) => {
            tracing::debug!(status = e.status, error = %e.code, "fake token endpoint: rejected");
            e.into_response()
        }
    }
}

fn token_response(m: &Minted) -> Response {
    let mut body = json!({
        "access_token": m.access_token,
        "token_type": "Bearer",
        "expires_in": m.expires_in,
        "scope": m.scope,
    });
    if let Some(rt) = &m.refresh_token {
        body["refresh_token"] = rt.clone().into();
    }
    if let Some(id) = &m.id_token {
        body["id_token"] = id.clone().into();
    }
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        body.to_string(),
    )
        .into_response()
}

fn grant(
    i: &mut Inner,
    headers: &HeaderMap,
    parsed: Result<Params, String>,
) -> Result<Minted, OAuthError> {
    let shape = i.cfg.error_shape;
    let p = parsed.map_err(|why| OAuthError::invalid_request(shape, &why))?;
    let grant_type = p.get("grant_type").map(str::to_owned);
    // RFC 8628 polls authenticate the same way; all grants need the client.
    match body::client_id(headers, &p) {
        Some(c) if c == i.cfg.client_id => {}
        _ => {
            i.stats.invalid_client += 1;
            return Err(OAuthError::invalid_client(shape));
        }
    }
    let now = Instant::now();
    match grant_type.as_deref() {
        Some("refresh_token") => refresh(i, &p, now),
        Some("authorization_code") => authorization_code(i, &p, now),
        Some(DEVICE_GRANT) => device_code(i, &p, now),
        Some(_) => Err(OAuthError::shaped(
            shape,
            400,
            "unsupported_grant_type",
            "grant_type is not supported",
        )),
        None => Err(OAuthError::invalid_request(shape, "missing grant_type")),
    }
}

fn refresh(i: &mut Inner, p: &Params, now: Instant) -> Result<Minted, OAuthError> {
    let shape = i.cfg.error_shape;
    let Some(token) = p.get("refresh_token") else {
        return Err(OAuthError::invalid_request(shape, "missing refresh_token"));
    };
    let spec = Inner::mint_spec(&i.cfg, &i.base_url);
    let result = i.families.refresh(
        token,
        &spec,
        i.cfg.rotate_refresh_tokens,
        i.cfg.reuse_grace,
        now,
    );
    match result {
        Ok((minted, accepted)) => {
            i.stats.successful_refreshes += 1;
            if accepted == Accepted::GraceReplay {
                i.stats.grace_replays += 1;
            }
            Ok(minted)
        }
        Err(why) => {
            if why == RefreshError::Reused {
                i.stats.reuse_detections += 1;
                i.stats.families_revoked += 1;
                tracing::debug!("fake token endpoint: refresh token reuse, family revoked");
            } else {
                i.stats.invalid_refresh_attempts += 1;
            }
            Err(OAuthError::refresh(shape, why))
        }
    }
}

fn authorization_code(i: &mut Inner, p: &Params, now: Instant) -> Result<Minted, OAuthError> {
    let shape = i.cfg.error_shape;
    let Some(code) = p.get("code") else {
        return Err(OAuthError::invalid_request(shape, "missing code"));
    };
    let scope = i
        .codes
        .exchange(
            code,
            p.get("redirect_uri"),
            p.get("code_verifier"),
            &i.cfg.client_id,
            now,
        )
        .map_err(|(code, desc)| OAuthError::shaped(shape, 400, code, desc))?;
    i.stats.code_exchanges += 1;
    i.stats.grants_issued += 1;
    let spec = Inner::mint_spec(&i.cfg, &i.base_url);
    Ok(i.families.create(&spec, &scope, now))
}

fn device_code(i: &mut Inner, p: &Params, now: Instant) -> Result<Minted, OAuthError> {
    let status = i.cfg.device_error_status;
    let Some(device_code) = p.get("device_code") else {
        return Err(OAuthError::flat(
            400,
            "invalid_request",
            "missing device_code",
        ));
    };
    let client_id = i.cfg.client_id.clone();
    match i.device.poll(device_code, &client_id, now) {
        Ok(scope) => {
            i.stats.grants_issued += 1;
            let spec = Inner::mint_spec(&i.cfg, &i.base_url);
            Ok(i.families.create(&spec, &scope, now))
        }
        Err(code) => Err(OAuthError::flat(
            status,
            code,
            device_error_description(code),
        )),
    }
}

fn device_error_description(code: &str) -> &'static str {
    match code {
        "authorization_pending" => "the user has not yet completed authorization",
        "slow_down" => "polling too fast; add 5 seconds to the interval",
        "expired_token" => "the device code has expired",
        "access_denied" => "the user denied the request",
        _ => "unknown or spent device code",
    }
}
