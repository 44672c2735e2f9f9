//! `github-copilot`: GitHub's device flow, then the Copilot session-token
//! exchange is what "refresh" means. Second-hand facts from public clients
//! (copilot-api, Hermes Agent; see shared/PROVIDERS.md); the client id is the
//! one GitHub's own Copilot editor plugins use.
//!
//! The GitHub token (`ghu_…`) does not expire and comes without a refresh
//! token; the broker stores it as the credential's refresh token and never
//! rotates it. Clients get the short-lived Copilot session token.

use super::{DeviceScheme, LoginSpec, Preset, RefreshKind};
use crate::config::BodyEncoding;
use oauth_broker_proto::LoginMethod;

/// The github-copilot preset.
pub const PRESET: Preset = Preset {
    name: "github-copilot",
    issuer: None,
    token_endpoint: Some("https://github.com/login/oauth/access_token"),
    authorization_endpoint: None,
    device_authorization_endpoint: Some("https://github.com/login/device/code"),
    revocation_endpoint: None,
    exchange_endpoint: Some("https://api.github.com/copilot_internal/v2/token"),
    client_id: Some("Iv1.b507a08c87ecfe98"),
    scopes: &["read:user"],
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
    refresh_kind: RefreshKind::CopilotExchange,
    no_api_access_on_403: false,
};

/// `Editor-Version` sent with the exchange (the endpoint wants an editor).
pub const EDITOR_VERSION: &str = "vscode/1.104.1";
/// `User-Agent` sent with the exchange.
pub const USER_AGENT: &str = "GitHubCopilotChat/0.26.7";
/// Metadata key under which the API base (`endpoints.api`) is handed to clients.
pub const API_BASE_METADATA: &str = "api_base";
