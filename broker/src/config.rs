//! The account's configuration file (TOML).
//!
//! Unknown keys are an error that names the key: a typo such as `token_endpiont`
//! must not silently fall back to a preset's default and send the refresh token
//! somewhere unexpected. Every error names the file.

use crate::capped_read::{describe_cap, read_capped};
use crate::trusted_path;
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
    /// Browser-login redirect URI; `{port}` is replaced by the loopback
    /// listener's port. A non-loopback URI means "paste the result".
    pub redirect_uri: Option<String>,
    /// Login method used when `brokerctl relogin` names none.
    pub login_method: Option<oauth_broker_proto::LoginMethod>,
    /// Extra query parameters of the browser authorization URL (added to, or
    /// replacing, the preset's).
    pub authorize_params: Option<std::collections::BTreeMap<String, String>>,
    /// Interactive login limits.
    #[serde(default)]
    pub login: LoginSettings,
    /// Refresh timing and HTTP limits.
    #[serde(default)]
    pub refresh: RefreshSettings,
    /// Socket server limits and access control.
    #[serde(default)]
    pub server: ServerSettings,
    /// How the state is written.
    #[serde(default)]
    pub state: StateSettings,
    /// Credential-projection targets (`[[project]]`): tool credential files the
    /// broker keeps fed with its current access token.
    #[serde(default)]
    pub project: Vec<ProjectionConfig>,
    /// Header-injecting proxies (`[[proxy]]`): loopback reverse proxies that
    /// put the current access token on the requests of tools holding a key.
    #[serde(default)]
    pub proxy: Vec<crate::proxy::settings::ProxyConfig>,
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
    /// Least time between two refreshes forced by 401 reports: a token that a
    /// forced refresh just produced and that is refused again points to a
    /// provider problem, not to a need for more refresh tokens. During the
    /// floor such reports are answered with the current token.
    pub forced_refresh_floor_secs: u64,
}

impl Default for RefreshSettings {
    fn default() -> Self {
        RefreshSettings {
            skew_secs: 60,
            http_timeout_secs: 30,
            backoff_initial_ms: 1000,
            backoff_max_secs: 300,
            forced_refresh_floor_secs: 30,
        }
    }
}

impl RefreshSettings {
    /// `http_timeout_secs` as a duration.
    pub fn http_timeout(&self) -> Duration {
        Duration::from_secs(self.http_timeout_secs.max(1))
    }
}

/// Interactive login limits (`[login]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginSettings {
    /// How long a browser login waits for the redirect (or a pasted URL).
    pub browser_timeout_secs: u64,
    /// Consecutive transient failures (network, 5xx, 429) tolerated while
    /// polling a device login before it is given up.
    pub device_transient_retries: u32,
}

impl Default for LoginSettings {
    fn default() -> Self {
        LoginSettings {
            browser_timeout_secs: 600,
            device_transient_retries: 5,
        }
    }
}

impl LoginSettings {
    /// `browser_timeout_secs` as a duration.
    pub fn browser_timeout(&self) -> Duration {
        Duration::from_secs(self.browser_timeout_secs.max(1))
    }
}

/// How the state is written (`[state]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSettings {
    /// `journal` (default): a record appended to `state.journal` per save;
    /// `replace`: `state.json` replaced per save, the format of earlier
    /// versions (to go back to one, start this version once with it).
    pub writes: crate::store::StateWrites,
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

/// A tool whose own credential file the broker can keep fed (`kind = …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProjectionKind {
    /// Codex CLI's `auth.json` (ChatGPT sign-in).
    Codex,
    /// Claude Code's `.credentials.json` (Claude Pro/Max sign-in).
    ClaudeCode,
    /// Hermes Agent's `auth.json` (its `openai-codex` login).
    Hermes,
    /// GitHub Copilot CLI's `config.json` (`authTokens`, the GitHub token).
    CopilotCli,
    /// OpenClaw's shared auth profile store, a row of its SQLite state
    /// database (the `openai:default` ChatGPT/Codex OAuth profile).
    #[serde(rename = "openclaw")]
    OpenClaw,
}

impl ProjectionKind {
    /// The name used in the config file and by `brokerctl project`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectionKind::Codex => "codex",
            ProjectionKind::ClaudeCode => "claude-code",
            ProjectionKind::Hermes => "hermes",
            ProjectionKind::CopilotCli => "copilot-cli",
            ProjectionKind::OpenClaw => "openclaw",
        }
    }
}

/// One `[[project]]` table: a tool credential file the broker writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectionConfig {
    /// Which tool's file format (`codex`, `claude-code`, `hermes`,
    /// `copilot-cli` or `openclaw`).
    pub kind: ProjectionKind,
    /// The file; `~/` is the broker's home directory. Defaults to where the
    /// tool looks: `$CODEX_HOME/auth.json` or `~/.codex/auth.json`, and
    /// `$CLAUDE_CONFIG_DIR/.credentials.json` or `~/.claude/.credentials.json`,
    /// and `$HERMES_HOME/auth.json` or `~/.hermes/auth.json`, and
    /// `$COPILOT_HOME/config.json` or `~/.copilot/config.json`, and
    /// `$OPENCLAW_STATE_DIR/state/openclaw.sqlite` or
    /// `~/.openclaw/state/openclaw.sqlite`.
    pub path: Option<PathBuf>,
    /// The file always holds a token that stays valid at least this long (the
    /// tool's own refresh window plus a safety margin); the kind's default
    /// when absent.
    pub refresh_margin_secs: Option<u64>,
    /// How the file is replaced: `rename` (atomic, the default) or
    /// `in-place` (the same inode, for a file a container bind-mounts on its
    /// own). The broker switches to `in-place` by itself when it finds the
    /// file is a mount point or a rename onto it fails with `EBUSY`/`EXDEV`.
    #[serde(default)]
    pub write: WriteMode,
}

/// How a projection target replaces its file (`write = …`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteMode {
    /// A temp file renamed over the path: atomic for readers, but a new inode,
    /// which a single-file bind mount never shows.
    #[default]
    Rename,
    /// The same inode rewritten (see `projection/in_place.rs`).
    InPlace,
}

impl WriteMode {
    /// The name used in the config file and in `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::Rename => "rename",
            WriteMode::InPlace => "in-place",
        }
    }
}

impl ProjectionConfig {
    /// The file to write: `path` with `~` expanded, or the tool's default.
    /// `env` looks up environment variables (`HOME`, `CODEX_HOME`, …).
    pub fn resolved_path(&self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<PathBuf> {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        let home = || {
            var("HOME").map(PathBuf::from).ok_or_else(|| {
                anyhow::anyhow!(
                    "[[project]] kind = \"{}\": HOME is not set, so `~` cannot be expanded; write an absolute path",
                    self.kind.as_str()
                )
            })
        };
        let path = match &self.path {
            Some(path) => match path.strip_prefix("~") {
                Ok(rest) => home()?.join(rest),
                Err(_) => path.clone(),
            },
            None => match self.kind {
                ProjectionKind::Codex => match var("CODEX_HOME") {
                    Some(dir) => PathBuf::from(dir).join("auth.json"),
                    None => home()?.join(".codex/auth.json"),
                },
                ProjectionKind::ClaudeCode => match var("CLAUDE_CONFIG_DIR") {
                    Some(dir) => PathBuf::from(dir).join(".credentials.json"),
                    None => home()?.join(".claude/.credentials.json"),
                },
                ProjectionKind::Hermes => match var("HERMES_HOME") {
                    Some(dir) => PathBuf::from(dir).join("auth.json"),
                    None => home()?.join(".hermes/auth.json"),
                },
                ProjectionKind::CopilotCli => match var("COPILOT_HOME") {
                    Some(dir) => PathBuf::from(dir).join("config.json"),
                    None => home()?.join(".copilot/config.json"),
                },
                ProjectionKind::OpenClaw => match var("OPENCLAW_STATE_DIR") {
                    Some(dir) => PathBuf::from(dir).join("state/openclaw.sqlite"),
                    None => home()?.join(".openclaw/state/openclaw.sqlite"),
                },
            },
        };
        if !path.is_absolute() {
            anyhow::bail!(
                "[[project]] kind = \"{}\": path {} is relative; write an absolute path or one starting with `~/`",
                self.kind.as_str(),
                path.display()
            );
        }
        Ok(path)
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
        let text = read_trusted(&path)?;
        Ok(Config {
            file: parse(&text, &path.display().to_string())?,
            source: Some(path),
        })
    }
}

/// A config is a few KiB; anything larger is the wrong file.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads the config file (at most [`MAX_CONFIG_BYTES`]) after making sure no
/// other user could have written it: it decides where the refresh token is
/// sent (see [`crate::trusted_path`]). The check is made on the opened file
/// (the inode actually read) and on every directory above it.
fn read_trusted(path: &Path) -> anyhow::Result<String> {
    let file = crate::capped_read::open_nonblocking(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read config file {}: {e}; create it or pass --config with an existing file",
            path.display()
        )
    })?;
    let cannot_read =
        |e: std::io::Error| anyhow::anyhow!("cannot read config file {}: {e}", path.display());
    let meta = file.metadata().map_err(cannot_read)?;
    if meta.is_dir() {
        anyhow::bail!(
            "config file {} is a directory; pass --config with the file itself",
            path.display()
        );
    }
    let bytes = read_capped(&file, MAX_CONFIG_BYTES)
        .map_err(cannot_read)?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "config file {} is larger than {} (the limit for a config file); check that it is the right file",
                path.display(),
                describe_cap(MAX_CONFIG_BYTES)
            )
        })?;
    trusted_path::check_file_meta(&meta, path)
        .and_then(|()| trusted_path::check_parents(path, trusted_path::home_from_env().as_deref()))
        .map_err(|why| {
            anyhow::anyhow!(
                "{}",
                why.refusal(
                    "config file",
                    path,
                    "another user could change where the refresh token is sent"
                )
            )
        })?;
    String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "config file {} is not UTF-8 text; a config is TOML",
            path.display()
        )
    })
}

/// Parses config text; errors name the source and the offending key, and values
/// outside their sensible range are refused (a timeout of 10^19 seconds would
/// otherwise overflow the clock arithmetic).
pub fn parse(text: &str, source: &str) -> anyhow::Result<ConfigFile> {
    let file = parse_toml(text, source)?;
    validate_ranges(&file, source)?;
    Ok(file)
}

const DAY: u64 = 86_400;

fn validate_ranges(file: &ConfigFile, source: &str) -> anyhow::Result<()> {
    let checks: [(&str, u64, u64, u64); 9] = [
        ("[refresh] skew_secs", file.refresh.skew_secs, 0, DAY),
        (
            "[refresh] http_timeout_secs",
            file.refresh.http_timeout_secs,
            1,
            600,
        ),
        (
            "[refresh] backoff_initial_ms",
            file.refresh.backoff_initial_ms,
            1,
            3_600_000,
        ),
        (
            "[refresh] backoff_max_secs",
            file.refresh.backoff_max_secs,
            1,
            DAY,
        ),
        (
            "[refresh] forced_refresh_floor_secs",
            file.refresh.forced_refresh_floor_secs,
            0,
            DAY,
        ),
        (
            "[server] max_connections",
            file.server.max_connections as u64,
            1,
            65_536,
        ),
        (
            "[server] request_timeout_ms",
            file.server.request_timeout_ms,
            1,
            600_000,
        ),
        (
            "[server] idle_timeout_secs",
            file.server.idle_timeout_secs,
            1,
            7 * DAY,
        ),
        (
            "[login] browser_timeout_secs",
            file.login.browser_timeout_secs,
            1,
            DAY,
        ),
    ];
    for (key, value, min, max) in checks {
        if !(min..=max).contains(&value) {
            anyhow::bail!(
                "{key} = {value} in {source} is out of range; use a value from {min} to {max}"
            );
        }
    }
    Ok(())
}

fn parse_toml(text: &str, source: &str) -> anyhow::Result<ConfigFile> {
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
    fn out_of_range_values_are_refused_with_the_range() {
        let err = parse(
            "[refresh]\nbackoff_max_secs = 18446744073709551615\n",
            "c.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("backoff_max_secs"), "{err}");
        assert!(err.to_string().contains("from 1 to 86400"), "{err}");
        assert!(parse("[server]\nmax_connections = 0\n", "c.toml").is_err());
    }

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

    #[test]
    fn projection_targets_parse_and_expand_home() {
        let cfg = parse(
            "[[project]]\nkind = \"codex\"\npath = \"~/.codex/auth.json\"\n\n[[project]]\nkind = \"claude-code\"\nrefresh_margin_secs = 900\n",
            "p.toml",
        )
        .unwrap();
        let env = |name: &str| match name {
            "HOME" => Some("/home/u".to_string()),
            "CLAUDE_CONFIG_DIR" => Some("/cfg/claude".to_string()),
            _ => None,
        };
        assert_eq!(cfg.project.len(), 2);
        assert_eq!(cfg.project[0].kind, ProjectionKind::Codex);
        assert_eq!(
            cfg.project[0].resolved_path(env).unwrap(),
            PathBuf::from("/home/u/.codex/auth.json")
        );
        assert_eq!(cfg.project[1].refresh_margin_secs, Some(900));
        assert_eq!(
            cfg.project[1].resolved_path(env).unwrap(),
            PathBuf::from("/cfg/claude/.credentials.json")
        );
    }

    #[test]
    fn copilot_cli_target_defaults_to_copilot_home() {
        let cfg = parse("[[project]]\nkind = \"copilot-cli\"\n", "c.toml").unwrap();
        assert_eq!(cfg.project[0].kind, ProjectionKind::CopilotCli);
        assert_eq!(cfg.project[0].kind.as_str(), "copilot-cli");
        let home = |name: &str| (name == "HOME").then(|| "/home/u".to_string());
        assert_eq!(
            cfg.project[0].resolved_path(home).unwrap(),
            PathBuf::from("/home/u/.copilot/config.json")
        );
        let copilot_home = |name: &str| (name == "COPILOT_HOME").then(|| "/srv/c".to_string());
        assert_eq!(
            cfg.project[0].resolved_path(copilot_home).unwrap(),
            PathBuf::from("/srv/c/config.json")
        );
    }

    #[test]
    fn hermes_target_defaults_to_hermes_home() {
        let cfg = parse("[[project]]\nkind = \"hermes\"\n", "h.toml").unwrap();
        assert_eq!(cfg.project[0].kind, ProjectionKind::Hermes);
        assert_eq!(cfg.project[0].kind.as_str(), "hermes");
        let home = |name: &str| (name == "HOME").then(|| "/home/u".to_string());
        assert_eq!(
            cfg.project[0].resolved_path(home).unwrap(),
            PathBuf::from("/home/u/.hermes/auth.json")
        );
        let hermes_home = |name: &str| (name == "HERMES_HOME").then(|| "/srv/hermes".to_string());
        assert_eq!(
            cfg.project[0].resolved_path(hermes_home).unwrap(),
            PathBuf::from("/srv/hermes/auth.json")
        );
    }

    #[test]
    fn projection_errors_name_the_problem() {
        let err = parse("[[project]]\nkind = \"codex\"\npaht = \"x\"\n", "q.toml").unwrap_err();
        assert!(err.to_string().contains("paht"), "{err}");
        let err = parse("[[project]]\nkind = \"vim\"\n", "q.toml").unwrap_err();
        assert!(err.to_string().contains("vim"), "{err}");
        let cfg = parse(
            "[[project]]\nkind = \"codex\"\npath = \"auth.json\"\n",
            "q.toml",
        )
        .unwrap();
        let err = cfg.project[0].resolved_path(|_| None).unwrap_err();
        assert!(err.to_string().contains("relative"), "{err}");
        let cfg = parse("[[project]]\nkind = \"codex\"\n", "q.toml").unwrap();
        let err = cfg.project[0].resolved_path(|_| None).unwrap_err();
        assert!(err.to_string().contains("HOME"), "{err}");
    }
}
