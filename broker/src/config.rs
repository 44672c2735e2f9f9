//! The account's configuration file (TOML).
//!
//! Unknown keys are an error that names the key: a typo such as `token_endpiont`
//! must not silently fall back to a preset's default and send the refresh token
//! somewhere unexpected. Every error names the file.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration used when the account has no config file: the preset that
/// serves the motivating case (ChatGPT sign-in shared by Codex CLI and friends).
pub const EMBEDDED_DEFAULT: &str = "# oauth-broker embedded default\npreset = \"openai-codex\"\n";

/// How the refresh request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    /// `application/x-www-form-urlencoded` (RFC 6749).
    Form,
    /// `application/json` (OpenAI, Anthropic).
    Json,
}

/// How a confidential client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`), the RFC 6749 default.
    #[default]
    ClientSecretBasic,
    /// Secret in the body (`client_secret_post`).
    ClientSecretPost,
}

/// The file as written by the user. Every provider field is optional: the preset
/// fills in what is missing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `generic`, `openai-codex`, `github-copilot`, `xai`, `anthropic`.
    pub preset: Option<String>,
    /// OIDC issuer for discovery.
    pub issuer: Option<String>,
    /// Token endpoint (refresh, code exchange).
    pub token_endpoint: Option<String>,
    /// RFC 8628 device authorization endpoint.
    pub device_authorization_endpoint: Option<String>,
    /// Browser authorization endpoint.
    pub authorization_endpoint: Option<String>,
    /// RFC 7009 revocation endpoint.
    pub revocation_endpoint: Option<String>,
    /// Session-token exchange endpoint (GitHub Copilot).
    pub exchange_endpoint: Option<String>,
    /// OAuth client id.
    pub client_id: Option<String>,
    /// File holding the client secret (confidential clients only).
    pub client_secret_file: Option<PathBuf>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub client_auth: Option<ClientAuth>,
    /// Scopes requested at login.
    pub scopes: Option<Vec<String>>,
    /// Refresh body encoding.
    pub refresh_body: Option<BodyEncoding>,
    /// Fixed loopback port for browser login (0 = OS-chosen).
    pub redirect_port: Option<u16>,
    /// Extra hosts allowed for endpoints (beyond the preset's pinned ones).
    pub allowed_hosts: Option<Vec<String>>,
    /// Refresh timing and HTTP limits.
    #[serde(default)]
    pub refresh: RefreshSettings,
    /// Socket server limits and access control.
    #[serde(default)]
    pub server: ServerSettings,
}

/// Refresh timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshSettings {
    /// Never refresh later than this many seconds before expiry (capped at a
    /// quarter of the token's lifetime, so short-lived tokens still get most of
    /// their life used).
    pub skew_secs: u64,
    /// Whole-request timeout for token-endpoint calls.
    pub http_timeout_secs: u64,
    /// First backoff delay after a transient failure.
    pub backoff_initial_ms: u64,
    /// Backoff cap.
    pub backoff_max_secs: u64,
}

impl Default for RefreshSettings {
    fn default() -> Self {
        RefreshSettings {
            skew_secs: 60,
            http_timeout_secs: 30,
            backoff_initial_ms: 1000,
            backoff_max_secs: 300,
        }
    }
}

impl RefreshSettings {
    /// `http_timeout_secs` as a duration.
    pub fn http_timeout(&self) -> Duration {
        Duration::from_secs(self.http_timeout_secs.max(1))
    }
}

/// Socket server limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Connections served at once; more are answered `busy` and closed.
    pub max_connections: usize,
    /// A started frame (and the handshake) must arrive completely within this.
    pub request_timeout_ms: u64,
    /// A connection with no request for this long is closed (clients reconnect).
    pub idle_timeout_secs: u64,
    /// Extra uids allowed to connect besides the broker's own.
    pub allow_uids: Vec<u32>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            max_connections: 512,
            request_timeout_ms: 5000,
            idle_timeout_secs: 600,
            allow_uids: Vec::new(),
        }
    }
}

/// A loaded configuration and where it came from.
#[derive(Debug, Clone)]
pub struct Config {
    /// The parsed file.
    pub file: ConfigFile,
    /// The file's path, or `None` for the embedded default.
    pub source: Option<PathBuf>,
}

impl Config {
    /// Human name of the source for error messages.
    pub fn source_name(&self) -> String {
        match &self.source {
            Some(path) => path.display().to_string(),
            None => "the embedded default configuration".to_string(),
        }
    }

    /// Loads `explicit` (must exist), else `default_path` if it exists, else the
    /// embedded default.
    pub fn load(explicit: Option<&Path>, default_path: &Path) -> anyhow::Result<Config> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None if default_path.exists() => default_path.to_path_buf(),
            None => {
                return Ok(Config {
                    file: parse(EMBEDDED_DEFAULT, "the embedded default configuration")?,
                    source: None,
                })
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read config file {}: {e}; create it or pass --config with an existing file",
                path.display()
            )
        })?;
        Ok(Config {
            file: parse(&text, &path.display().to_string())?,
            source: Some(path),
        })
    }
}

/// Parses config text; errors name the source and the offending key.
pub fn parse(text: &str, source: &str) -> anyhow::Result<ConfigFile> {
    toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().to_string();
        let location = e
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        anyhow::anyhow!("invalid config file {source}{location}: {msg}; fix or remove that entry")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let err = parse("preset = \"generic\"\ntoken_endpiont = \"x\"\n", "a.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("token_endpiont"), "{msg}");
        assert!(msg.contains("a.toml"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn unknown_nested_key_is_named() {
        let err = parse("[server]\nmax_conections = 3\n", "b.toml").unwrap_err();
        assert!(err.to_string().contains("max_conections"), "{err}");
    }

    #[test]
    fn embedded_default_parses() {
        let cfg = parse(EMBEDDED_DEFAULT, "embedded").unwrap();
        assert_eq!(cfg.preset.as_deref(), Some("openai-codex"));
    }
}
