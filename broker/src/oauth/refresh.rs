//! The RFC 6749 §6 refresh (form or JSON body) and RFC 7009 revocation.

use super::discovery::Discovery;
use super::token_request::{post_and_read, post_with_client_auth};
use super::{classify_response, classify_transport, merge_token_response};
use super::{RefreshError, Refresher};
use crate::clock::Clock;
use crate::config::BodyEncoding;
use crate::credentials::Credentials;
use crate::provider::ProviderSpec;
use futures_util::future::BoxFuture;
use oauth_broker_proto::ExposeSecret;
use std::sync::Arc;

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
        let answer = post_and_read(
            &self.http,
            &self.provider,
            url,
            fields,
            self.provider.refresh_body,
        )
        .await?;
        if answer.status == 403 && self.provider.no_api_access_on_403 {
            return Err(no_api_access());
        }
        let parsed = classify_response(answer.status, answer.retry_after, &answer.body)?;
        merge_token_response(Some(current), parsed, self.clock.now()).ok_or_else(|| {
            RefreshError::transient(
                "no_access_token",
                "the token endpoint answered without an access token",
                true,
            )
        })
    }

    async fn do_revoke(&self, current: &Credentials) -> bool {
        // The configured endpoint, else the one discovery lists (checked
        // against the allow-list like every discovered endpoint).
        let url = match self
            .discovery
            .revocation_endpoint(&self.http, &self.provider)
            .await
        {
            Ok(Some(url)) => url,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(reason = %e, "no usable revocation endpoint; skipping revocation");
                return false;
            }
        };
        let fields = vec![
            ("token", current.refresh_token.expose_secret().to_string()),
            ("token_type_hint", "refresh_token".to_string()),
        ];
        match post_with_client_auth(&self.http, &self.provider, url, fields, BodyEncoding::Form)
            .await
        {
            Ok(resp) => resp.status().is_success(),
            Err(e) => {
                tracing::warn!(reason = %classify_transport(&e), "token revocation failed");
                false
            }
        }
    }
}

/// xAI answers 403 when the account's subscription tier has no API access: the
/// login is fine, so this must not demand a relogin.
fn no_api_access() -> RefreshError {
    let mut err = RefreshError::configuration(
        "no_api_access",
        "the token endpoint answered HTTP 403: this account's subscription has no API access",
    );
    err.hint = Some(
        "use an account or plan that includes API access; the login itself is fine, so no relogin is needed"
            .to_string(),
    );
    err
}

impl Refresher for OAuthRefresher {
    fn refresh<'a>(
        &'a self,
        current: &'a Credentials,
    ) -> BoxFuture<'a, Result<Credentials, RefreshError>> {
        Box::pin(async move {
            self.do_refresh(current)
                .await
                .map_err(|e| e.redacting(current))
        })
    }

    fn revoke<'a>(&'a self, current: &'a Credentials) -> BoxFuture<'a, bool> {
        Box::pin(self.do_revoke(current))
    }
}
