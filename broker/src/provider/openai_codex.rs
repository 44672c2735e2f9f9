//! `openai-codex`: the ChatGPT sign-in used by Codex CLI. Second-hand facts from
//! Codex CLI's public source (see shared/PROVIDERS.md); the client id is the one
//! Codex CLI itself uses.

use super::{DeviceScheme, LoginSpec, Preset, RefreshKind};
use crate::config::BodyEncoding;
use oauth_broker_proto::LoginMethod;

/// The openai-codex preset. Refresh bodies are JSON and errors come in the
/// nested shape (`{"error":{"code":"refresh_token_reused",…}}`).
pub const PRESET: Preset = Preset {
    name: "openai-codex",
    issuer: Some("https://auth.openai.com"),
    token_endpoint: Some("https://auth.openai.com/oauth/token"),
    authorization_endpoint: Some("https://auth.openai.com/oauth/authorize"),
    device_authorization_endpoint: None,
    revocation_endpoint: Some("https://auth.openai.com/oauth/revoke"),
    exchange_endpoint: None,
    client_id: Some("app_EMoamEEZ73f0CkXaXp7hrann"),
    scopes: &["openid", "profile", "email", "offline_access"],
    refresh_body: BodyEncoding::Json,
    allowed_hosts: &["auth.openai.com"],
    default_login: LoginMethod::Browser,
    redirect_port: Some(1455),
    login: LoginSpec {
        // Device login is OpenAI's own scheme under the issuer
        // (`/api/accounts/deviceauth/*`), not RFC 8628.
        device_scheme: DeviceScheme::OpenAi,
        // Codex CLI listens on 127.0.0.1 but registers the `localhost` spelling.
        redirect_uri: "http://localhost:{port}/auth/callback",
        fallback_ports: &[1457],
        authorize_params: &[
            ("id_token_add_organizations", "true"),
            ("codex_cli_simplified_flow", "true"),
            ("originator", "codex_cli_rs"),
        ],
        // Codex CLI does not send it and its login works without it.
        prompt_consent_for_offline_access: false,
        code_body: BodyEncoding::Form,
        echo_challenge: false,
        state_in_exchange: false,
    },
    refresh_kind: RefreshKind::OAuth,
    no_api_access_on_403: false,
};

/// OpenAI's device-login endpoints, all under the issuer.
pub mod device {
    /// `POST` JSON `{"client_id"}` → `{device_auth_id, user_code, interval}`.
    pub const USER_CODE_PATH: &str = "/api/accounts/deviceauth/usercode";
    /// `POST` JSON `{device_auth_id, user_code}`: 403/404 pending, 2xx done.
    pub const TOKEN_PATH: &str = "/api/accounts/deviceauth/token";
    /// Where the user enters the code.
    pub const VERIFICATION_PATH: &str = "/codex/device";
    /// The `redirect_uri` of the final code exchange.
    pub const CALLBACK_PATH: &str = "/deviceauth/callback";
    /// How long a user code is valid when the server does not say (15 min).
    pub const DEFAULT_EXPIRES_IN_SECS: u64 = 15 * 60;
}

/// The ChatGPT account id from the claim `https://api.openai.com/auth` of the id
/// token (or the access token, which carries it too).
pub fn account_id(creds: &crate::credentials::Credentials) -> Option<String> {
    use oauth_broker_proto::ExposeSecret;
    [creds.id_token.as_ref(), creds.access_token.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|token| {
            let claims = crate::jwt::claims(token.expose_secret())?;
            claims
                .get("https://api.openai.com/auth")?
                .get("chatgpt_account_id")?
                .as_str()
                .map(str::to_string)
        })
}
