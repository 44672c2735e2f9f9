//! The answer to a token request.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// An access token handed to a client.
///
/// `Debug` never shows the token itself; `token_id` is a non-secret fingerprint
/// that clients send back in `Request::Unauthorized`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenGrant {
    /// The bearer credential.
    #[serde(serialize_with = "crate::secret_serde::serialize")]
    pub access_token: SecretString,
    /// Usually `Bearer`.
    #[serde(default = "default_token_type")]
    pub token_type: String,
    /// Expiry, unix seconds.
    pub expires_at: u64,
    /// First 12 hex digits of SHA-256 of the token: safe to log and compare.
    pub token_id: String,
    /// Granted scopes, if the provider said.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Non-secret metadata, e.g. `account_id` or the API base URL a provider
    /// returned next to the token (GitHub Copilot's `endpoints.api`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// The OIDC id token issued with the access token, if any; only in
    /// answers to a `Token` request with `identity` (as the two fields
    /// below). Tool credential files need it next to the access token
    /// (Codex's `auth.json`), so a client-side projector (`brokerctl project
    /// --follow`) can write the same file as the broker's own projection.
    #[serde(
        default,
        serialize_with = "crate::secret_serde::serialize_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub id_token: Option<SecretString>,
    /// When the broker received this token (unix seconds): the start of its
    /// lifetime, which tool files record (`last_refresh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obtained_at: Option<u64>,
    /// Non-secret fingerprint of the refresh token the broker holds (the same
    /// 12 hex digits as `token_id`), so a projector can tell a file holding
    /// the broker's own refresh token without ever seeing that token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_id: Option<String>,
}

fn default_token_type() -> String {
    "Bearer".to_string()
}

/// The non-secret fingerprint of a token: the first 12 hex digits of its SHA-256.
pub fn token_fingerprint(token: &SecretString) -> String {
    let digest = Sha256::digest(token.expose_secret().as_bytes());
    let mut out = String::with_capacity(12);
    for byte in &digest[..6] {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}
