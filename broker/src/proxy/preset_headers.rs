//! The headers a preset's API needs beside the bearer token.
//!
//! * `openai-codex`: ChatGPT's backend wants `ChatGPT-Account-ID` (the account
//!   id from the token's claims, which the manager publishes with the token);
//!   Codex CLI sends it itself when signed in, a tool pointed at the proxy
//!   with an API key does not.
//! * `anthropic`: OAuth access tokens are accepted by the Messages API only
//!   with the beta `oauth-2025-04-20` (added to whatever betas the tool asks
//!   for).
//! * `github-copilot`: the Copilot API wants an editor identity
//!   (`Editor-Version`, `Copilot-Integration-Id`); a tool's own value wins.
//!
//! Config `headers` are set last and replace a tool's value.

use super::headers::Merge;
use crate::manager::ServedToken;
use http::header::{HeaderName, HeaderValue};
use std::collections::BTreeMap;

/// The extra headers for a request made with `token` under `preset`.
pub fn extra_headers(
    preset: &str,
    token: &ServedToken,
    configured: &[(HeaderName, HeaderValue)],
) -> Vec<(HeaderName, HeaderValue, Merge)> {
    let mut out = Vec::new();
    match preset {
        "openai-codex" => {
            if let Some(v) = token
                .account_id
                .as_deref()
                .and_then(|id| HeaderValue::try_from(id).ok())
            {
                out.push((HeaderName::from_static("chatgpt-account-id"), v, Merge::Set));
            }
        }
        "anthropic" => out.push((
            HeaderName::from_static("anthropic-beta"),
            HeaderValue::from_static("oauth-2025-04-20"),
            Merge::AddToList,
        )),
        "github-copilot" => {
            out.push((
                HeaderName::from_static("editor-version"),
                HeaderValue::from_static(crate::provider::github_copilot::EDITOR_VERSION),
                Merge::IfAbsent,
            ));
            out.push((
                HeaderName::from_static("copilot-integration-id"),
                HeaderValue::from_static("vscode-chat"),
                Merge::IfAbsent,
            ));
        }
        _ => {}
    }
    out.extend(
        configured
            .iter()
            .map(|(n, v)| (n.clone(), v.clone(), Merge::Set)),
    );
    out
}

/// Parses the config's `headers` table; names the bad entry. `Authorization`
/// and `Host` are the proxy's own business.
pub fn parse_configured(
    table: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    table
        .iter()
        .map(|(name, value)| {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
            if n == http::header::AUTHORIZATION || n == http::header::HOST {
                return Err(format!(
                    "headers: {name} is set by the proxy itself; remove it from the [[proxy]] table"
                ));
            }
            let v = HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("headers: the value of {name} is not a valid header value"))?;
            Ok((n, v))
        })
        .collect()
}
