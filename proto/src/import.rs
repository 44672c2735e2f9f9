//! Tokens handed to the broker by `brokerctl import`.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Existing tokens to adopt. The broker validates, persists and from then on owns
/// them: the caller should forget the refresh token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportTokens {
    /// Required: the refresh token the broker will rotate from now on.
    #[serde(serialize_with = "crate::secret_serde::serialize")]
    pub refresh_token: SecretString,
    /// Optional current access token (saves one refresh).
    #[serde(
        default,
        serialize_with = "crate::secret_serde::serialize_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub access_token: Option<SecretString>,
    /// Access-token expiry, unix seconds. Without it an access token is refreshed
    /// before first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// OIDC id token (carries the account id for some providers).
    #[serde(
        default,
        serialize_with = "crate::secret_serde::serialize_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub id_token: Option<SecretString>,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Token type, default `Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Provider account id, if the source knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}
