//! `github`: a GitHub user token for tools that want the *GitHub* token
//! itself — GitHub Copilot CLI sends it as `Bearer` straight to
//! `api.github.com` and `api.githubcopilot.com` (observed with Copilot CLI
//! 1.0.102, see `broker/tests/e2e_copilot_cli.rs`), unlike the
//! `github-copilot` preset, whose clients get a Copilot session token.
//!
//! The tokens worth a broker are those of a GitHub App with expiring user
//! tokens: `ghu_…` access tokens that live 8 hours and `ghr_…` refresh tokens
//! that rotate on every use (GitHub's documentation; second-hand, not run
//! against github.com here). There is no public GitHub App whose tokens are
//! documented to work with Copilot, so the preset has no client id: register
//! one (Settings → Developer settings → GitHub Apps, "Enable Device Flow",
//! "Expire user authorization tokens" on) and write its client id.
//!
//! GitHub answers token-endpoint errors with HTTP 200 and a flat OAuth error
//! (`{"error":"bad_refresh_token"}`), which `oauth::classify` understands.

use super::{DeviceScheme, LoginSpec, Preset, RefreshKind};
use crate::config::BodyEncoding;
use oauth_broker_proto::LoginMethod;

/// The github preset.
pub const PRESET: Preset = Preset {
    name: "github",
    issuer: None,
    token_endpoint: Some("https://github.com/login/oauth/access_token"),
    authorization_endpoint: Some("https://github.com/login/oauth/authorize"),
    device_authorization_endpoint: Some("https://github.com/login/device/code"),
    revocation_endpoint: None,
    exchange_endpoint: None,
    // Deliberately none: see the module docs.
    client_id: None,
    // A GitHub App's permissions come from its registration, not from scopes.
    scopes: &[],
    refresh_body: BodyEncoding::Form,
    allowed_hosts: &["github.com"],
    default_login: LoginMethod::Device,
    redirect_port: None,
    login: LoginSpec {
        device_scheme: DeviceScheme::Rfc8628,
        redirect_uri: "http://127.0.0.1:{port}/callback",
        fallback_ports: &[],
        authorize_params: &[],
        prompt_consent_for_offline_access: false,
        code_body: BodyEncoding::Form,
        echo_challenge: false,
        state_in_exchange: false,
    },
    refresh_kind: RefreshKind::OAuth,
    no_api_access_on_403: false,
};
