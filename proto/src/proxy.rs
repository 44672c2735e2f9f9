//! The header-injecting proxy's part of the protocol: issuing and revoking
//! capability keys, and what `status` reports about proxies and keys.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// A newly issued proxy key: the only time the key itself travels. `Debug`
/// never shows it.
#[derive(Clone, Serialize, Deserialize)]
pub struct ProxyKeyIssued {
    /// The key's name (for `status` and `proxy revoke`).
    pub name: String,
    /// The key, shown once; the broker keeps only its hash.
    #[serde(serialize_with = "crate::secret_serde::serialize")]
    pub key: SecretString,
}

impl std::fmt::Debug for ProxyKeyIssued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyKeyIssued")
            .field("name", &self.name)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// A running proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStatus {
    /// Where it listens (`http://127.0.0.1:PORT` or `unix:/path`).
    pub listen: String,
    /// Where it forwards.
    pub upstream: String,
}

/// One proxy key (never the key or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyKeyStatus {
    /// Its name.
    pub name: String,
    /// When it was issued, unix seconds.
    pub created_at: u64,
    /// Requests it authorised since the broker started.
    #[serde(default)]
    pub requests: u64,
    /// Its last use since the broker started, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<u64>,
}
