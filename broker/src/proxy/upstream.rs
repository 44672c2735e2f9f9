//! Where a proxy forwards: the preset's API base or the configured one, and
//! how a request's path and query land on it.
//!
//! Why per preset: the point of the proxy is that a tool needs nothing but a
//! base URL and a key, so the broker knows where its token is accepted. GitHub
//! Copilot names its API base in each session-token exchange (the
//! `api_base` metadata the manager publishes), so that upstream is read from
//! the current token at request time.

use crate::provider::{check_endpoint, is_loopback_host};
use url::Url;

/// ChatGPT's Codex backend (where Codex CLI sends `/responses` when signed in
/// with ChatGPT).
pub const OPENAI_CODEX_UPSTREAM: &str = "https://chatgpt.com/backend-api/codex";
/// The Anthropic API.
pub const ANTHROPIC_UPSTREAM: &str = "https://api.anthropic.com";
/// The xAI API.
pub const XAI_UPSTREAM: &str = "https://api.x.ai";

/// A proxy's upstream.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// A fixed base URL.
    Fixed(Url),
    /// The base URL the current token's metadata names (GitHub Copilot's
    /// `api_base`).
    FromTokenMetadata(&'static str),
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Fixed(url) => f.write_str(url.as_str()),
            Upstream::FromTokenMetadata(key) => write!(f, "(the token's {key})"),
        }
    }
}

impl Upstream {
    /// The configured upstream, else the preset's.
    pub fn resolve(configured: Option<&str>, preset: &str) -> Result<Upstream, String> {
        let text = match (configured, preset) {
            (Some(text), _) => text,
            (None, "openai-codex") => OPENAI_CODEX_UPSTREAM,
            (None, "anthropic") => ANTHROPIC_UPSTREAM,
            (None, "xai") => XAI_UPSTREAM,
            (None, "github-copilot") => {
                return Ok(Upstream::FromTokenMetadata(
                    crate::provider::github_copilot::API_BASE_METADATA,
                ))
            }
            (None, other) => {
                return Err(format!(
                    "preset {other:?} has no API base the proxy could default to; set `upstream = \"https://…\"` in the [[proxy]] table"
                ))
            }
        };
        parse_base(text).map(Upstream::Fixed)
    }

    /// The base URL for a request made with a token carrying `metadata`.
    pub fn base(
        &self,
        metadata: &std::collections::BTreeMap<String, String>,
    ) -> Result<Url, String> {
        match self {
            Upstream::Fixed(url) => Ok(url.clone()),
            Upstream::FromTokenMetadata(key) => match metadata.get(*key) {
                Some(text) => parse_base(text),
                None => Err(format!(
                    "the current token names no {key}; the proxy does not know where to send the request (set `upstream` in the [[proxy]] table)"
                )),
            },
        }
    }
}

/// Parses and checks an upstream base: https, or http on loopback only.
pub fn parse_base(text: &str) -> Result<Url, String> {
    let url = Url::parse(text)
        .map_err(|e| format!("upstream {text:?} is not a URL ({e}); write https://host/path"))?;
    check_endpoint(&url, &[]).map_err(|why| format!("upstream {text:?}: {why}"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "upstream {text:?} has a query or fragment; give the base URL only"
        ));
    }
    debug_assert!(url.scheme() == "https" || is_loopback_host(&url));
    Ok(url)
}

/// The upstream URI of a request for `path_and_query` (origin form, starting
/// with `/`): the base's path, then the request's.
pub fn target(base: &Url, path_and_query: &str) -> Result<http::Uri, String> {
    let mut text = String::with_capacity(base.as_str().len() + path_and_query.len());
    text.push_str(base.as_str().trim_end_matches('/'));
    text.push_str(path_and_query);
    text.parse::<http::Uri>()
        .map_err(|_| "the request path cannot be appended to the upstream URL".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_checks() {
        let up = Upstream::resolve(None, "openai-codex").unwrap();
        let base = up.base(&Default::default()).unwrap();
        assert_eq!(
            target(&base, "/responses?x=1").unwrap().to_string(),
            "https://chatgpt.com/backend-api/codex/responses?x=1"
        );
        let base = Upstream::resolve(None, "anthropic")
            .unwrap()
            .base(&Default::default())
            .unwrap();
        assert_eq!(
            target(&base, "/v1/messages").unwrap().to_string(),
            "https://api.anthropic.com/v1/messages"
        );
        assert!(Upstream::resolve(None, "generic")
            .unwrap_err()
            .contains("set `upstream"));
        assert!(Upstream::resolve(Some("http://example.com"), "generic").is_err());
        assert!(Upstream::resolve(Some("http://127.0.0.1:9/v1"), "generic").is_ok());
        let copilot = Upstream::resolve(None, "github-copilot").unwrap();
        assert!(copilot.base(&Default::default()).is_err());
        let meta = [(
            crate::provider::github_copilot::API_BASE_METADATA.to_string(),
            "https://api.individual.githubcopilot.com".to_string(),
        )]
        .into();
        assert_eq!(
            copilot.base(&meta).unwrap().as_str(),
            "https://api.individual.githubcopilot.com/"
        );
        assert!(copilot
            .base(
                &[(
                    crate::provider::github_copilot::API_BASE_METADATA.to_string(),
                    "http://evil.example".to_string()
                )]
                .into()
            )
            .is_err());
    }
}
