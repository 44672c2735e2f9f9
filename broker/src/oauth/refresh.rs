//! The RFC 6749 §6 refresh (form or JSON body) and RFC 7009 revocation.

use super::discovery::{checked, Discovery};
use super::{classify_response, classify_transport, merge_token_response, parse_retry_after};
use super::{RefreshError, Refresher};
use crate::clock::Clock;
use crate::config::{BodyEncoding, ClientAuth};
use crate::credentials::Credentials;
use crate::provider::ProviderSpec;
use futures_util::future::BoxFuture;
use oauth_broker_proto::ExposeSecret;
use std::sync::Arc;
use url::Url;

/// Largest token-endpoint answer read; a token response is a few KiB.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Refreshes with a standard token endpoint.
pub struct OAuthRefresher {
    http: reqwest::Client,
    provider: Arc<ProviderSpec>,
    discovery: Discovery,
    clock: Arc<dyn Clock>,
}

impl OAuthRefresher {
    /// A refresher for `provider`.
    pub fn new(http: reqwest::Client, provider: Arc<ProviderSpec>, clock: Arc<dyn Clock>) -> Self {
        OAuthRefresher {
            http,
            provider,
            discovery: Discovery::new(),
            clock,
        }
    }

    /// Adds client authentication and sends a token-endpoint style request with
    /// `fields` in the configured encoding.
    async fn post(
        &self,
        url: Url,
        fields: Vec<(&'static str, String)>,
        encoding: BodyEncoding,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut fields = fields;
        let mut req = self.http.post(url).header("Accept", "application/json");
        match (&self.provider.client_secret, self.provider.client_auth) {
            (Some(secret), ClientAuth::ClientSecretBasic) => {
                req = req.basic_auth(&self.provider.client_id, Some(secret.expose_secret()));
            }
            (Some(secret), ClientAuth::ClientSecretPost) => {
                fields.push(("client_id", self.provider.client_id.clone()));
                fields.push(("client_secret", secret.expose_secret().to_string()));
            }
            (None, _) => fields.push(("client_id", self.provider.client_id.clone())),
        }
        req = match encoding {
            BodyEncoding::Form => req.form(&fields),
            BodyEncoding::Json => {
                let map: serde_json::Map<String, serde_json::Value> = fields
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
                    .collect();
                req.json(&map)
            }
        };
        req.send().await
    }

    async fn do_refresh(&self, current: &Credentials) -> Result<Credentials, RefreshError> {
        let url = self
            .discovery
            .token_endpoint(&self.http, &self.provider)
            .await?;
        let fields = vec![
            ("grant_type", "refresh_token".to_string()),
            (
                "refresh_token",
                current.refresh_token.expose_secret().to_string(),
            ),
        ];
        let resp = self
            .post(url, fields, self.provider.refresh_body)
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = resp.status().as_u16();
        let retry_after = parse_retry_after(
            resp.headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        let body = read_bounded(resp).await?;
        let parsed = classify_response(status, retry_after, &body)?;
        merge_token_response(Some(current), parsed, self.clock.now()).ok_or_else(|| {
            RefreshError::transient(
                "no_access_token",
                "the token endpoint answered without an access token",
                true,
            )
        })
    }

    async fn do_revoke(&self, current: &Credentials) -> bool {
        let Some(url) = self.provider.revocation_endpoint.clone() else {
            return false;
        };
        let Ok(url) = checked(url, &self.provider) else {
            return false;
        };
        let fields = vec![
            ("token", current.refresh_token.expose_secret().to_string()),
            ("token_type_hint", "refresh_token".to_string()),
        ];
        match self.post(url, fields, BodyEncoding::Form).await {
            Ok(resp) => resp.status().is_success(),
            Err(e) => {
                tracing::warn!(reason = %classify_transport(&e), "token revocation failed");
                false
            }
        }
    }
}

/// Reads a body up to [`MAX_RESPONSE_BYTES`]; a failure mid-body is ambiguous
/// (the server has processed the request).
async fn read_bounded(mut resp: reqwest::Response) -> Result<Vec<u8>, RefreshError> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(RefreshError::transient(
                        "response_too_large",
                        "the token endpoint's answer is implausibly large",
                        true,
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(classify_transport(&e)),
        }
    }
}

impl Refresher for OAuthRefresher {
    fn refresh<'a>(
        &'a self,
        current: &'a Credentials,
    ) -> BoxFuture<'a, Result<Credentials, RefreshError>> {
        Box::pin(self.do_refresh(current))
    }

    fn revoke<'a>(&'a self, current: &'a Credentials) -> BoxFuture<'a, bool> {
        Box::pin(self.do_revoke(current))
    }
}
