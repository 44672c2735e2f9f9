//! `xai`: xAI (Grok) sign-in. Second-hand facts from public clients (see
//! shared/PROVIDERS.md); the client id is the one those clients use.
//!
//! Endpoints come from OIDC discovery at `https://auth.x.ai`; every endpoint,
//! configured or discovered, must be https on `x.ai` or `*.x.ai` and is
//! re-checked on every use, because a cached hostile `token_endpoint` would
//! otherwise receive the refresh token forever.

use super::{DeviceScheme, LoginSpec, Preset, RefreshKind};
use crate::config::BodyEncoding;
use oauth_broker_proto::LoginMethod;

/// The xai preset. A 403 from the token endpoint means the subscription tier
/// has no API access: reported as `no_api_access`, not as a dead login.
pub const PRESET: Preset = Preset {
    name: "xai",
    issuer: Some("https://auth.x.ai"),
    token_endpoint: None,
    authorization_endpoint: None,
    device_authorization_endpoint: Some("https://auth.x.ai/oauth2/device/code"),
    revocation_endpoint: None,
    exchange_endpoint: None,
    client_id: Some("b1a00492-073a-47ea-816f-4c329264a828"),
    scopes: &[
        "openid",
        "profile",
        "email",
        "offline_access",
        "grok-cli:access",
        "api:access",
    ],
    refresh_body: BodyEncoding::Form,
    allowed_hosts: &["x.ai"],
    default_login: LoginMethod::Device,
    redirect_port: Some(56121),
    login: LoginSpec {
        device_scheme: DeviceScheme::Rfc8628,
        redirect_uri: "http://127.0.0.1:{port}/callback",
        fallback_ports: &[],
        authorize_params: &[("plan", "generic")],
        prompt_consent_for_offline_access: true,
        code_body: BodyEncoding::Form,
        echo_challenge: true,
        state_in_exchange: false,
    },
    refresh_kind: RefreshKind::OAuth,
    no_api_access_on_403: true,
};
