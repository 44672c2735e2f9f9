//! HTTP surface of the fake server: one file per endpoint.
//!
//! Handlers parse, then make their whole decision in one
//! [`Shared::update`] call (see `state.rs`), then render.

use std::sync::Arc;

use axum::routing::{any, get, post};
use axum::Router;

use super::state::Shared;

pub(crate) mod authorize;
mod copilot;
mod device;
mod discovery;
mod faults;
mod grants;
mod openai_device;
mod resource;
mod revoke;
mod token;

/// Handler state.
pub(crate) type App = Arc<Shared>;

pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/oauth/token", post(token::handle))
        .route("/oauth/authorize", get(authorize::handle))
        .route("/oauth/device/code", post(device::start))
        .route("/device", get(device::page))
        .route("/oauth/revoke", post(revoke::handle))
        .route("/.well-known/openid-configuration", get(discovery::handle))
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::handle),
        )
        .route("/userinfo", get(resource::userinfo))
        .route("/api/me", get(resource::userinfo))
        .route("/copilot_internal/v2/token", get(copilot::exchange))
        .route("/copilot-api/{*rest}", any(resource::copilot_api))
        .route("/captive", get(faults::captive_page))
        .route(
            "/api/accounts/deviceauth/usercode",
            post(openai_device::user_code),
        )
        .route("/api/accounts/deviceauth/token", post(openai_device::poll))
        .route("/codex/device", get(openai_device::page))
        .with_state(app)
}
