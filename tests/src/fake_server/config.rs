//! Knobs of the fake server.
//!
//! Why public fields plus `Default` instead of a builder: tests read best as
//! `FakeConfig { error_shape: ErrorShape::Nested, ..Default::default() }`.
//! Knobs that a test may want to flip while the server runs (TTL, error shape,
//! authorize behaviour, …) also have setters on
//! [`FakeAuthServer`](super::FakeAuthServer); this struct is only the initial
//! state.

use std::time::Duration;

/// How error bodies of the token endpoint look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorShape {
    /// RFC 6749 §5.2: HTTP 400 `{"error":"invalid_grant","error_description":"…"}`
    /// (401 for `invalid_client`).
    #[default]
    Flat,
    /// OpenAI style: HTTP 401
    /// `{"error":{"code":"refresh_token_reused","message":"…","type":"invalid_request_error"}}`.
    /// Refresh failures use the provider codes `refresh_token_reused`,
    /// `refresh_token_invalidated` and `refresh_token_expired`.
    Nested,
    /// GitHub style: HTTP 200 with the flat body; a rejected refresh token
    /// is `bad_refresh_token`.
    Github,
}

/// What `GET /oauth/authorize` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthorizeBehavior {
    /// Approve at once: `302 redirect_uri?code=…&state=<state>`.
    #[default]
    Approve,
    /// The user said no: `302 redirect_uri?error=access_denied&error_description=…&state=<state>`.
    Deny,
    /// A valid code, but with a state that is not the one the client sent
    /// (a CSRF attempt the client must reject).
    WrongState,
}

/// Initial configuration of a [`FakeAuthServer`](super::FakeAuthServer).
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Lifetime of issued access tokens. Short by default (4 s) so that tests
    /// see several refreshes quickly. `expires_in` is this value rounded
    /// down to whole seconds (never promising more than the server keeps).
    pub access_ttl: Duration,
    /// Shape (and HTTP status) of token endpoint errors.
    pub error_shape: ErrorShape,
    /// The only client id accepted; any other one gets `401 invalid_client`.
    pub client_id: String,
    /// Issue access tokens (and id tokens) shaped like unsigned JWTs whose
    /// payload carries `exp`, `sub` and the OpenAI claim
    /// `"https://api.openai.com/auth": {"chatgpt_account_id": <account_id>}`.
    /// When false, access tokens are opaque and no `id_token` is issued.
    pub jwt_access_tokens: bool,
    /// Value of `chatgpt_account_id` in JWT payloads.
    pub account_id: String,
    /// A used refresh token replayed within this window after its use is
    /// accepted once (some servers allow that to survive lost responses);
    /// outside it, or a second time, it is reuse: the family is revoked.
    /// Zero (default) means no grace at all.
    pub reuse_grace: Duration,
    /// Whether refresh answers carry a new refresh token. When false the
    /// server does not rotate: the refresh token stays valid and the answer
    /// has no `refresh_token` field (clients must keep the old one).
    pub rotate_refresh_tokens: bool,
    /// Whether logins (device, authorization code, [`issue_grant`]) issue a
    /// refresh token at all. False models GitHub's non-expiring device tokens.
    ///
    /// [`issue_grant`]: super::FakeAuthServer::issue_grant
    pub issue_refresh_tokens: bool,
    /// `scope` returned with tokens when the request did not name one.
    pub default_scope: String,
    /// Lifetime of a device code (then polls get `expired_token`).
    pub device_code_ttl: Duration,
    /// `interval` advertised by the device authorization endpoint, in seconds.
    pub device_interval_secs: u64,
    /// HTTP status of RFC 8628 polling errors (`authorization_pending`, …).
    /// 400 per RFC; GitHub answers 200.
    pub device_error_status: u16,
    /// Initial behaviour of `GET /oauth/authorize`.
    pub authorize_behavior: AuthorizeBehavior,
    /// When set, discovery advertises this `token_endpoint` instead of the
    /// real one (e.g. `https://evil.example.com/token`), for allow-list tests.
    pub discovery_token_endpoint: Option<String>,
    /// Lifetime of Copilot session tokens (`expires_at` = now + this).
    pub copilot_session_ttl: Duration,
    /// `refresh_in` of Copilot session tokens, in seconds.
    pub copilot_refresh_in_secs: u64,
    /// How much later than the server's own expiry the JWT `exp` claim of an
    /// access token says it expires (zero: the same). The server still
    /// enforces `access_ttl`. Models a token the server ends early, and lets
    /// a test give tools that judge tokens by `exp` (Codex CLI refreshes 5
    /// minutes before it) a token that looks long-lived while it really
    /// lives seconds.
    pub jwt_exp_slack: Duration,
    /// Put before opaque access tokens (empty by default). GitHub Copilot CLI
    /// takes only tokens with GitHub's prefixes (`ghu_`, `gho_`, …) and
    /// ignores others without a word, so its tests issue `ghu_…` tokens.
    pub access_token_prefix: String,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(4),
            error_shape: ErrorShape::Flat,
            client_id: "test-client".to_owned(),
            jwt_access_tokens: false,
            account_id: "acct-test".to_owned(),
            reuse_grace: Duration::ZERO,
            rotate_refresh_tokens: true,
            issue_refresh_tokens: true,
            default_scope: "openid offline_access".to_owned(),
            device_code_ttl: Duration::from_secs(600),
            device_interval_secs: 1,
            device_error_status: 400,
            authorize_behavior: AuthorizeBehavior::Approve,
            discovery_token_endpoint: None,
            copilot_session_ttl: Duration::from_secs(8),
            copilot_refresh_in_secs: 6,
            jwt_exp_slack: Duration::ZERO,
            access_token_prefix: String::new(),
        }
    }
}
