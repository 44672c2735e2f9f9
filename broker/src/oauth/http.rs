//! The HTTP client used for every call to the authorization server.

use std::time::Duration;

/// A client that never follows redirects (a redirect from a token endpoint is a
/// captive portal or a misconfiguration, and following it could carry the
/// refresh token to another host), with bounded connect and request times.
pub fn build_http_client(request_timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10).min(request_timeout))
        .timeout(request_timeout)
        .user_agent(concat!("oauth-broker/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))
}
