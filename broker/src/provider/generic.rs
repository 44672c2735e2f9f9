//! `generic`: any standards-conforming OAuth 2.0 / OIDC server. Everything comes
//! from the config file (explicit endpoints or discovery from `issuer`).

use super::{DeviceScheme, LoginSpec, Preset, RefreshKind};
use crate::config::BodyEncoding;
use oauth_broker_proto::LoginMethod;

/// The generic preset: no pinned values, RFC 6749 form bodies.
pub const PRESET: Preset = Preset {
    name: "generic",
    issuer: None,
    token_endpoint: None,
    authorization_endpoint: None,
    device_authorization_endpoint: None,
    revocation_endpoint: None,
    exchange_endpoint: None,
    client_id: None,
    scopes: &["openid", "offline_access"],
    refresh_body: BodyEncoding::Form,
    allowed_hosts: &[],
    default_login: LoginMethod::Device,
    redirect_port: None,
    login: LoginSpec {
        device_scheme: DeviceScheme::Rfc8628,
        redirect_uri: "http://127.0.0.1:{port}/callback",
        fallback_ports: &[],
        authorize_params: &[],
        prompt_consent_for_offline_access: true,
        code_body: BodyEncoding::Form,
        echo_challenge: false,
        state_in_exchange: false,
    },
    refresh_kind: RefreshKind::OAuth,
    no_api_access_on_403: false,
};
