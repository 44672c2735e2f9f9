//! How a provider logs in: which device scheme it speaks, where the browser is
//! sent back to, and the small deviations from RFC 6749/7636/8252 that its own
//! public clients make (extra authorize parameters, echoing the PKCE challenge,
//! JSON code exchanges). Kept apart from the endpoints because these are facts
//! about the login *conversation*, not about where it happens.

use crate::config::BodyEncoding;

/// Which device login a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceScheme {
    /// RFC 8628 device authorization grant.
    Rfc8628,
    /// OpenAI's own scheme (`/api/accounts/deviceauth/*` under the issuer), which
    /// ends in an authorization code exchanged with PKCE.
    OpenAi,
    /// The provider has no device login.
    Unsupported,
}

/// What "refresh" means for a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshKind {
    /// RFC 6749 §6 refresh at the token endpoint.
    OAuth,
    /// GitHub Copilot: the long-lived GitHub token is exchanged for a short-lived
    /// session token at the exchange endpoint; nothing rotates.
    CopilotExchange,
}

/// The static login facts of a preset.
#[derive(Debug, Clone)]
pub struct LoginSpec {
    /// Device login scheme.
    pub device_scheme: DeviceScheme,
    /// Redirect URI of the browser login; `{port}` is replaced by the loopback
    /// listener's port. A non-loopback URI (Anthropic's) means the provider shows
    /// the result on its own page and the user pastes it.
    pub redirect_uri: &'static str,
    /// Ports tried after the preferred one is busy (OpenAI: 1457).
    pub fallback_ports: &'static [u16],
    /// Extra query parameters of the authorization URL.
    pub authorize_params: &'static [(&'static str, &'static str)],
    /// Send `prompt=consent` when `offline_access` is requested (OIDC Core §11:
    /// conforming servers otherwise drop the scope and issue no refresh token).
    pub prompt_consent_for_offline_access: bool,
    /// Body encoding of the authorization-code exchange.
    pub code_body: BodyEncoding,
    /// Echo `code_challenge` and `code_challenge_method` in the code exchange
    /// (xAI).
    pub echo_challenge: bool,
    /// Send `state` in the code exchange (Anthropic).
    pub state_in_exchange: bool,
}

/// The login facts after the config file's overrides.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// Device login scheme.
    pub device_scheme: DeviceScheme,
    /// Redirect URI template (`{port}` = the listener's port).
    pub redirect_uri: String,
    /// Preferred loopback port (0 = chosen by the OS).
    pub redirect_port: u16,
    /// Ports tried when the preferred one is taken.
    pub fallback_ports: Vec<u16>,
    /// Extra authorization URL parameters, in order.
    pub authorize_params: Vec<(String, String)>,
    /// See [`LoginSpec::prompt_consent_for_offline_access`].
    pub prompt_consent_for_offline_access: bool,
    /// Body encoding of the code exchange.
    pub code_body: BodyEncoding,
    /// See [`LoginSpec::echo_challenge`].
    pub echo_challenge: bool,
    /// See [`LoginSpec::state_in_exchange`].
    pub state_in_exchange: bool,
}
