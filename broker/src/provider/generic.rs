//! `generic`: any standards-conforming OAuth 2.0 / OIDC server. Everything comes
//! from the config file (explicit endpoints or discovery from `issuer`).

use super::Preset;
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
};
