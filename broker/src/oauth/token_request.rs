//! One request to a token-style endpoint (refresh, code exchange, device poll,
//! revocation): client authentication plus a form or JSON body, and a bounded
//! read of the answer. Shared so that every grant authenticates the client the
//! same way and no answer can make the broker buffer without limit.

use super::{classify_transport, parse_retry_after, RefreshError};
use crate::config::{BodyEncoding, ClientAuth};
use crate::provider::ProviderSpec;
use oauth_broker_proto::ExposeSecret;
use std::time::Duration;
use url::Url;

/// Largest token-endpoint answer read; a token response is a few KiB.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Adds client authentication (`client_secret_basic`, `client_secret_post`, or
/// the bare `client_id` of a public client) and sends `fields` in `encoding`.
pub async fn post_with_client_auth(
    http: &reqwest::Client,
    provider: &ProviderSpec,
    url: Url,
    fields: Vec<(&'static str, String)>,
    encoding: BodyEncoding,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut fields = fields;
    let mut req = http.post(url).header("Accept", "application/json");
    match (&provider.client_secret, provider.client_auth) {
        (Some(secret), ClientAuth::ClientSecretBasic) => {
            req = req.basic_auth(&provider.client_id, Some(secret.expose_secret()));
        }
        (Some(secret), ClientAuth::ClientSecretPost) => {
            fields.push(("client_id", provider.client_id.clone()));
            fields.push(("client_secret", secret.expose_secret().to_string()));
        }
        (None, _) => fields.push(("client_id", provider.client_id.clone())),
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

/// An answer read in full: what every caller classifies.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The server's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
    /// The body, at most [`MAX_RESPONSE_BYTES`].
    pub body: Vec<u8>,
}

/// [`post_with_client_auth`], then [`read_answer`]; a failure to send is
/// classified like every transport failure.
pub async fn post_and_read(
    http: &reqwest::Client,
    provider: &ProviderSpec,
    url: Url,
    fields: Vec<(&'static str, String)>,
    encoding: BodyEncoding,
) -> Result<Answer, RefreshError> {
    let resp = post_with_client_auth(http, provider, url, fields, encoding)
        .await
        .map_err(|e| classify_transport(&e))?;
    read_answer(resp).await
}

/// The status, `Retry-After` and bounded body of `resp`.
pub async fn read_answer(resp: reqwest::Response) -> Result<Answer, RefreshError> {
    let status = resp.status().as_u16();
    let retry_after = parse_retry_after(
        resp.headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
    );
    let body = read_bounded(resp).await?;
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// Reads a body up to [`MAX_RESPONSE_BYTES`]; a failure mid-body is ambiguous
/// (the server has processed the request).
pub async fn read_bounded(mut resp: reqwest::Response) -> Result<Vec<u8>, RefreshError> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(RefreshError::transient(
                        "response_too_large",
                        "the server's answer is implausibly large",
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
