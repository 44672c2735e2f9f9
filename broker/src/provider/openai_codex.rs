//! `openai-codex`: the ChatGPT sign-in used by Codex CLI. Second-hand facts from
//! Codex CLI's public source (see shared/PROVIDERS.md); the client id is the one
//! Codex CLI itself uses.

use super::Preset;
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
};

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
