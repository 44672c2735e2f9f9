//! The messages of a conversation: handshake, requests and responses.

use crate::{
    ErrorFrame, ImportTokens, LoginEvent, LoginMethod, ProjectionRestored, StatusReport, TokenGrant,
};
use serde::{Deserialize, Serialize};

/// First frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version the client speaks ([`crate::PROTOCOL_VERSION`]).
    pub protocol: u32,
    /// Free-form client name for logs, e.g. `brokerctl/0.1.0` or `my-agent`.
    #[serde(default)]
    pub client: String,
}

impl Hello {
    /// A hello for this crate's protocol version.
    pub fn new(client: impl Into<String>) -> Self {
        Hello {
            protocol: crate::PROTOCOL_VERSION,
            client: client.into(),
        }
    }
}

/// The broker's answer to a good [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Protocol version the broker will speak on this connection.
    pub protocol: u32,
    /// The broker's crate version.
    pub broker_version: String,
    /// The account this broker serves.
    pub account: String,
}

/// A request after the handshake. Each gets exactly one [`Response`], except
/// `Relogin`, which streams [`Response::Login`] events up to a final one.
///
/// `Debug` is written by hand: a pasted redirect URL carries an authorization
/// code, which must not show up in a debug print.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// An access token valid for at least `min_valid_secs` more seconds (capped by
    /// what a fresh token can give).
    Token {
        /// Minimum remaining lifetime wanted.
        #[serde(default)]
        min_valid_secs: u64,
        /// Also the login's identity: the OIDC id token, when the token was
        /// obtained and the refresh token's fingerprint (the grant's
        /// `id_token`, `obtained_at`, `refresh_token_id`). Only a
        /// client-side projector writing a tool's credential file needs
        /// them (`brokerctl project --follow`); every other client gets the
        /// lean answer, without the user's id token. Absent on the wire when
        /// false, so brokers that predate it see the plain request.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        identity: bool,
    },
    /// The caller's token was rejected with 401. If it is still the current one the
    /// broker forces one (coalesced) refresh; otherwise it returns the newer token.
    Unauthorized {
        /// `token_id` of the rejected token.
        token_id: String,
    },
    /// Broker state, never waits behind a refresh.
    Status,
    /// Adopt existing tokens.
    Import {
        /// The tokens.
        tokens: ImportTokens,
    },
    /// Run a login in the broker; streams events.
    Relogin {
        /// Device or browser; the preset's default when absent.
        #[serde(default)]
        method: Option<LoginMethod>,
    },
    /// During a browser login: the redirect URL the user pasted (for machines where
    /// the browser cannot reach the loopback listener).
    CompleteLogin {
        /// The full redirect URL, or `code#state`.
        redirect_url: String,
    },
    /// Forget the login (revoking at the server when possible).
    Logout,
    /// Stop writing a projection target's file and give it back to its tool
    /// (the backup of the tool's own login, if any).
    ProjectRestore {
        /// The target: its kind (`codex`) or its file's path.
        target: String,
    },
    /// Issue a proxy capability key (shown once).
    ProxyKey {
        /// Its name; `key-N` when absent.
        #[serde(default)]
        name: Option<String>,
    },
    /// Revoke a proxy capability key.
    ProxyRevoke {
        /// The key's name.
        name: String,
    },
}

/// A response frame from the broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Handshake accepted.
    Welcome(Welcome),
    /// An access token.
    Token(TokenGrant),
    /// Broker status.
    Status(Box<StatusReport>),
    /// Tokens imported and persisted.
    Imported {
        /// New access-token expiry, unix seconds (0 if it must be refreshed first).
        expires_at: u64,
    },
    /// Login forgotten.
    LoggedOut {
        /// Whether the provider's revocation endpoint confirmed the revocation.
        revoked: bool,
    },
    /// A login progress event.
    Login(LoginEvent),
    /// A projection target was restored and stopped.
    ProjectRestored(ProjectionRestored),
    /// A proxy key was issued.
    ProxyKey(crate::ProxyKeyIssued),
    /// A proxy key was revoked.
    ProxyRevoked {
        /// Its name.
        name: String,
    },
    /// The request failed.
    Error(ErrorFrame),
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Token {
                min_valid_secs,
                identity,
            } => f
                .debug_struct("Token")
                .field("min_valid_secs", min_valid_secs)
                .field("identity", identity)
                .finish(),
            Request::Unauthorized { token_id } => f
                .debug_struct("Unauthorized")
                .field("token_id", token_id)
                .finish(),
            Request::Status => f.write_str("Status"),
            Request::Import { tokens } => f.debug_struct("Import").field("tokens", tokens).finish(),
            Request::Relogin { method } => {
                f.debug_struct("Relogin").field("method", method).finish()
            }
            Request::CompleteLogin { .. } => f
                .debug_struct("CompleteLogin")
                .field("redirect_url", &"[REDACTED]")
                .finish(),
            Request::Logout => f.write_str("Logout"),
            other => f.write_str(other.name()),
        }
    }
}

impl Request {
    /// Short name for logs (never includes arguments, which may be secret).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Token { .. } => "token",
            Request::Unauthorized { .. } => "unauthorized",
            Request::Status => "status",
            Request::Import { .. } => "import",
            Request::Relogin { .. } => "relogin",
            Request::CompleteLogin { .. } => "complete_login",
            Request::Logout => "logout",
            Request::ProjectRestore { .. } => "project_restore",
            Request::ProxyKey { .. } => "proxy_key",
            Request::ProxyRevoke { .. } => "proxy_revoke",
        }
    }
}
