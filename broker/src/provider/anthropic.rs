//! `anthropic`: Claude Pro/Max sign-in. Second-hand facts from public clients
//! (see shared/PROVIDERS.md); the client id is the one Claude Code uses.
//!
//! The browser login redirects to Anthropic's own page, which shows
//! `code#state` for the user to paste (`brokerctl relogin` reads it, or
//! `brokerctl complete-login 'code#state'`). The token endpoint answers 429 to
//! a `claude-code/*` User-Agent, so the broker never sends one (it always
//! identifies as `oauth-broker/<version>`).

use super::{DeviceScheme, LoginSpec, Preset, RefreshKind};
use crate::config::BodyEncoding;
use oauth_broker_proto::LoginMethod;

/// The anthropic preset: JSON bodies, single-use rotating refresh tokens.
pub const PRESET: Preset = Preset {
    name: "anthropic",
    issuer: None,
    token_endpoint: Some("https://platform.claude.com/v1/oauth/token"),
    authorization_endpoint: Some("https://claude.ai/oauth/authorize"),
    device_authorization_endpoint: None,
    revocation_endpoint: None,
    exchange_endpoint: None,
    client_id: Some("9d1c250a-e61b-44d9-88ed-5944d1962f5e"),
    scopes: &["org:create_api_key", "user:profile", "user:inference"],
    refresh_body: BodyEncoding::Json,
    allowed_hosts: &["claude.ai", "claude.com", "anthropic.com"],
    default_login: LoginMethod::Browser,
    redirect_port: None,
    login: LoginSpec {
        device_scheme: DeviceScheme::Unsupported,
        redirect_uri: "https://console.anthropic.com/oauth/code/callback",
        fallback_ports: &[],
        authorize_params: &[("code", "true")],
        prompt_consent_for_offline_access: false,
        code_body: BodyEncoding::Json,
        echo_challenge: false,
        state_in_exchange: true,
    },
    refresh_kind: RefreshKind::OAuth,
    no_api_access_on_403: false,
};
