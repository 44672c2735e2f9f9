//! The upstream HTTP client: hyper-util's pooled client over the same
//! hyper-rustls connector reqwest uses, with the webpki roots.
//!
//! Why not reqwest: it adds headers of its own (`accept`, …) and hides the
//! connection upgrade a WebSocket needs; the proxy must change nothing but
//! the credential, and hand the upgraded connection through.

use super::body::ProxyBody;
use hyper_rustls::{ConfigBuilderExt as _, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

/// The client type.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// A pooled client; plain http is used only for loopback upstreams (the
/// config and the per-request check refuse it elsewhere).
pub fn build() -> anyhow::Result<UpstreamClient> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| anyhow::anyhow!("TLS setup for the proxy failed: {e}"))?
    .with_webpki_roots()
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(15)));
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https))
}
