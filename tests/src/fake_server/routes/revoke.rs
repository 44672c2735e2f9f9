//! `POST /oauth/revoke` (RFC 7009).
//!
//! Revoking a refresh token revokes its whole family (RFC 7009 §2.1 allows
//! it and strict servers do it); revoking an access token revokes only that
//! token. Per §2.2 the answer is 200 even for unknown tokens. The revoked
//! values are recorded so tests can check that, e.g., a projected credential
//! file's placeholder — never the real refresh token — reached this endpoint.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::App;
use crate::fake_server::body;
use crate::fake_server::errors::OAuthError;

pub(crate) async fn handle(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match body::parse(&headers, &body) {
        Ok(p) => p,
        Err((_, why)) => return OAuthError::flat(400, "invalid_request", &why).into_response(),
    };
    let client_id = body::client_id(&headers, &params);
    let answer = app.update(|i| {
        i.stats.revocation_requests += 1;
        if client_id.is_some_and(|c| c != i.cfg.client_id) {
            i.stats.invalid_client += 1;
            return Err(OAuthError::flat(401, "invalid_client", "unknown client"));
        }
        let Some(token) = params.get("token") else {
            return Err(OAuthError::flat(400, "invalid_request", "missing token"));
        };
        if !i.revoke_family_of(token) && !i.families.revoke_access(token) {
            i.copilot.revoke(token);
        }
        i.revoked_tokens.push(token.to_owned());
        Ok(())
    });
    match answer {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}
