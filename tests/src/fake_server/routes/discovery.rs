//! OIDC discovery / OAuth authorization-server metadata.
//!
//! The token endpoint it advertises can be replaced by a foreign one (e.g.
//! `https://evil.example.com/token`) so tests can prove the broker checks
//! discovered endpoints against its allow-list before sending a refresh
//! token anywhere.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::App;

pub(crate) async fn handle(State(app): State<App>) -> Json<Value> {
    let (base, token_endpoint) = app.update(|i| {
        i.stats.discovery_requests += 1;
        let base = i.base_url.clone();
        let token = i
            .cfg
            .discovery_token_endpoint
            .clone()
            .unwrap_or_else(|| format!("{base}/oauth/token"));
        (base, token)
    });
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": token_endpoint,
        "device_authorization_endpoint": format!("{base}/oauth/device/code"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code"
        ],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
    }))
}
