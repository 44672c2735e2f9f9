//! OIDC discovery (`/.well-known/openid-configuration`), cached, with every
//! discovered endpoint re-checked against the provider's host allow-list on every
//! use — a cached hostile `token_endpoint` would otherwise receive the refresh
//! token forever.

use super::RefreshError;
use crate::provider::{check_endpoint, ProviderSpec};
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

/// The subset of an OIDC discovery document the broker uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DiscoveryDocument {
    /// Issuer identifier.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Token endpoint.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// Browser authorization endpoint.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// RFC 8628 device authorization endpoint.
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    /// RFC 7009 revocation endpoint.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
}

/// Lazily fetched discovery document of the configured issuer.
#[derive(Debug)]
pub struct Discovery {
    cached: Mutex<Option<DiscoveryDocument>>,
}

impl Default for Discovery {
    fn default() -> Self {
        Self::new()
    }
}

impl Discovery {
    /// An empty cache.
    pub fn new() -> Self {
        Discovery {
            cached: Mutex::new(None),
        }
    }

    /// The discovery document, fetched on first use. Failures are transient.
    pub async fn document(
        &self,
        http: &reqwest::Client,
        provider: &ProviderSpec,
    ) -> Result<DiscoveryDocument, RefreshError> {
        let mut cached = self.cached.lock().await;
        if let Some(doc) = cached.as_ref() {
            return Ok(doc.clone());
        }
        let issuer = provider.issuer.as_ref().ok_or_else(|| {
            RefreshError::configuration(
                "no_issuer",
                format!(
                    "no endpoint configured and no issuer for discovery; set token_endpoint or issuer in {}",
                    provider.config_source
                ),
            )
        })?;
        let url = discovery_url(issuer);
        let resp = http.get(url.clone()).send().await.map_err(|e| {
            let mut err = super::classify_transport(&e);
            err.message = format!("OIDC discovery failed: {}", err.message);
            err
        })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(RefreshError::transient(
                format!("discovery_http_{status}"),
                format!("OIDC discovery at {url} answered HTTP {status}"),
                false,
            ));
        }
        // Bounded like every other answer read from the network.
        let body = super::token_request::read_bounded(resp).await?;
        let doc: DiscoveryDocument = serde_json::from_slice(&body).map_err(|_| {
            RefreshError::transient(
                "discovery_unparsable",
                format!("OIDC discovery at {url} did not return a discovery document"),
                false,
            )
        })?;
        *cached = Some(doc.clone());
        Ok(doc)
    }

    /// The token endpoint: the configured one, else the discovered one, checked
    /// against the allow-list now.
    pub async fn token_endpoint(
        &self,
        http: &reqwest::Client,
        provider: &ProviderSpec,
    ) -> Result<Url, RefreshError> {
        let url = match &provider.token_endpoint {
            Some(url) => url.clone(),
            None => {
                let doc = self.document(http, provider).await?;
                let raw = doc.token_endpoint.ok_or_else(|| {
                    RefreshError::configuration(
                        "no_token_endpoint",
                        "the discovery document lists no token_endpoint; set token_endpoint in the config",
                    )
                })?;
                Url::parse(&raw).map_err(|_| {
                    RefreshError::configuration(
                        "bad_token_endpoint",
                        "the discovery document's token_endpoint is not a URL",
                    )
                })?
            }
        };
        checked(url, provider)
    }
}

impl Discovery {
    /// The browser authorization endpoint: configured, else discovered (when an
    /// issuer is set), checked against the allow-list now. `None` when the
    /// provider has none.
    pub async fn authorization_endpoint(
        &self,
        http: &reqwest::Client,
        provider: &ProviderSpec,
    ) -> Result<Option<Url>, RefreshError> {
        self.optional(http, provider, &provider.authorization_endpoint, |d| {
            d.authorization_endpoint.clone()
        })
        .await
    }

    /// The RFC 8628 device authorization endpoint, like
    /// [`Discovery::authorization_endpoint`].
    pub async fn device_authorization_endpoint(
        &self,
        http: &reqwest::Client,
        provider: &ProviderSpec,
    ) -> Result<Option<Url>, RefreshError> {
        self.optional(
            http,
            provider,
            &provider.device_authorization_endpoint,
            |d| d.device_authorization_endpoint.clone(),
        )
        .await
    }

    /// The RFC 7009 revocation endpoint, like
    /// [`Discovery::authorization_endpoint`].
    pub async fn revocation_endpoint(
        &self,
        http: &reqwest::Client,
        provider: &ProviderSpec,
    ) -> Result<Option<Url>, RefreshError> {
        self.optional(http, provider, &provider.revocation_endpoint, |d| {
            d.revocation_endpoint.clone()
        })
        .await
    }

    async fn optional(
        &self,
        http: &reqwest::Client,
        provider: &ProviderSpec,
        configured: &Option<Url>,
        pick: impl FnOnce(&DiscoveryDocument) -> Option<String>,
    ) -> Result<Option<Url>, RefreshError> {
        let url = match configured {
            Some(url) => url.clone(),
            None if provider.issuer.is_none() => return Ok(None),
            None => {
                let doc = self.document(http, provider).await?;
                let Some(raw) = pick(&doc) else {
                    return Ok(None);
                };
                Url::parse(&raw).map_err(|_| {
                    RefreshError::configuration(
                        "bad_discovered_endpoint",
                        "the discovery document lists an endpoint that is not a URL",
                    )
                })?
            }
        };
        checked(url, provider).map(Some)
    }
}

/// Re-checks an endpoint before use; a refusal is a configuration error.
pub fn checked(url: Url, provider: &ProviderSpec) -> Result<Url, RefreshError> {
    check_endpoint(&url, &provider.allowed_hosts).map_err(|why| {
        RefreshError::configuration(
            "endpoint_refused",
            format!("refusing endpoint {url}: {why}"),
        )
    })?;
    Ok(url)
}

fn discovery_url(issuer: &Url) -> Url {
    let mut url = issuer.clone();
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{path}/.well-known/openid-configuration"));
    url
}
