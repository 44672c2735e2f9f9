//! The answer to a status request. Contains nothing secret.

use serde::{Deserialize, Serialize};

/// Where the account's login stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    /// No tokens: log in or import.
    LoggedOut,
    /// A valid access token is cached.
    Valid,
    /// A refresh is in flight.
    Refreshing,
    /// The access token expired and the last refresh failed transiently; the broker
    /// keeps retrying with backoff.
    Expired,
    /// The refresh token was refused for good; only a new login helps.
    ReloginRequired,
}

impl TokenState {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::LoggedOut => "logged_out",
            TokenState::Valid => "valid",
            TokenState::Refreshing => "refreshing",
            TokenState::Expired => "expired",
            TokenState::ReloginRequired => "relogin_required",
        }
    }
}

/// The endpoints the broker talks to (all public URLs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// OIDC issuer, if configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Where refresh tokens are spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// Browser login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// Device login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    /// RFC 7009 revocation, used by logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// Session-token exchange (GitHub Copilot): what "refresh" means there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_endpoint: Option<String>,
}

/// The most recent failure, kept until the next success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// The reason of the last refresh failure: the provider's error code
    /// (`invalid_grant`, `refresh_token_reused`, …) or the broker's name for a
    /// transport failure (`http_503`, `connection_lost`, `token_already_expired`).
    /// Not a protocol [`ErrorCode`](crate::ErrorCode): those only travel in
    /// error frames.
    pub code: String,
    /// One line, no secrets.
    pub message: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// When it happened, unix seconds.
    pub at: u64,
}

/// One credential-projection target (a tool's credential file the broker keeps fed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionStatus {
    /// Target kind, e.g. `codex`.
    pub kind: String,
    /// The file it writes.
    pub path: String,
    /// Last successful write, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_write_at: Option<u64>,
    /// Last failure, if the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// How the file is replaced: `rename` (atomic) or `in-place` (same inode,
    /// for a single-file bind mount). Absent from older brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    /// Why `write` is `in-place`: configured, or what the broker found (the
    /// file is a mount point, a rename failed with `EBUSY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_reason: Option<String>,
    /// Fingerprint (`token_id`) of the access token of the broker's last
    /// write: equal to the status's `token_id` when the file is fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The last time the broker found a login of the tool's own in the file
    /// after having written it (the tool refreshed or logged in by itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_wrote: Option<ToolWrote>,
}

/// What the broker found in a projected file that it had not written: the
/// tool put a login of its own there. Fingerprints only, never a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolWrote {
    /// When the broker found it, unix seconds.
    pub at: u64,
    /// A real refresh token (not the placeholder) was in the file.
    #[serde(default)]
    pub refresh_token: bool,
    /// An access token the broker never issued was in the file (its
    /// fingerprint matched none of the broker's).
    #[serde(default)]
    pub unknown_access_token: bool,
}

/// What `brokerctl project --restore` did to a projection target's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreOutcome {
    /// The tool's own file, saved before the broker's first write, is back.
    BackupRestored,
    /// There was no backup (no file before the broker's): the broker's file was
    /// removed, so the tool is logged out.
    Removed,
    /// Neither a backup nor a file of the broker's: nothing was changed.
    LeftAlone,
}

/// The answer to a projection restore: the target stops being written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionRestored {
    /// Target kind, e.g. `codex`.
    pub kind: String,
    /// The tool's file.
    pub path: String,
    /// What happened to it.
    pub outcome: RestoreOutcome,
}

/// Everything `brokerctl status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The broker's crate version.
    pub broker_version: String,
    /// The broker's process id.
    pub pid: u32,
    /// Account name (one broker per account).
    pub account: String,
    /// Provider preset, e.g. `generic` or `openai-codex`.
    pub provider: String,
    /// Endpoints in use.
    #[serde(default)]
    pub endpoints: EndpointInfo,
    /// Login state.
    pub state: TokenState,
    /// Expiry of the cached access token, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_expires_at: Option<u64>,
    /// Fingerprint of the cached access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// Scopes of the cached token.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// When the last successful refresh (or login/import) happened, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_at: Option<u64>,
    /// When the broker plans its next refresh, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_at: Option<u64>,
    /// Successful refreshes since the state was created.
    #[serde(default)]
    pub refresh_count: u64,
    /// True when only a new login can help.
    #[serde(default)]
    pub relogin_required: bool,
    /// Why a relogin is required (`refresh_token_reused`, `refresh_interrupted`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relogin_reason: Option<String>,
    /// The last failure and its hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// Set when the broker serves tokens but cannot persist them (disk trouble):
    /// says why. Tokens keep flowing; the write is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    /// Provider account id (e.g. ChatGPT account id from the id token), not secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Credential-projection targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projections: Vec<ProjectionStatus>,
    /// The config file the broker runs with (absent: the embedded default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    /// The broker's state directory. Absent from older brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// The broker's wall clock when it answered, unix milliseconds: a client
    /// (on another host, over a forwarded socket) compares it with its own.
    /// Absent from older brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now_ms: Option<u64>,
    /// How 401 reports about freshly refreshed tokens were bounded (absent
    /// from older brokers: all zero).
    #[serde(default)]
    pub forced_refresh: ForcedRefreshStatus,
    /// Header-injecting proxies (`[[proxy]]` tables).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<crate::ProxyStatus>,
    /// Proxy capability keys with their use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_keys: Vec<crate::ProxyKeyStatus>,
}

/// Bounds on refreshes forced by 401 reports (`Unauthorized`): at most one per
/// token id, and a floor interval after each. A token that a forced refresh
/// just produced and that is refused again points to a provider problem, so
/// further reports are answered with the current token instead of spending
/// another refresh token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForcedRefreshStatus {
    /// Reports answered with the current token instead of a forced refresh,
    /// since the broker started.
    #[serde(default)]
    pub suppressed: u64,
    /// Until when (unix seconds) a report about the current token is answered
    /// without a refresh; absent when a report would force one now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_allowed_at: Option<u64>,
}
