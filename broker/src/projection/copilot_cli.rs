//! GitHub Copilot CLI's `config.json` (`$COPILOT_HOME/config.json`, default
//! `~/.copilot/config.json`). Facts observed with the real Copilot CLI
//! 1.0.102 (`broker/tests/e2e_copilot_cli.rs`, README "GitHub Copilot CLI"):
//!
//! * Where no keychain is available (or with `"storeTokenPlaintext": true` in
//!   `settings.json`) the login is kept here, under `authTokens`, keyed
//!   `https://github.com:<login>` and `https://github.com:<login>:github`,
//!   each `{"token": "<GitHub token>"}`; `loggedInUsers` and
//!   `lastLoggedInUser` name the account. Copilot CLI writes `//` comment
//!   lines at the top of the file.
//! * It stores no refresh token and no expiry (not even when the token
//!   endpoint returned `ghr_…` and `expires_in`), so it never refreshes: the
//!   file holds nothing a projection must guard, and there is no placeholder
//!   to write.
//! * It reads the file at start-up and again after a 401 from
//!   `api.githubcopilot.com` ("Request failed (user_credential_refresh).
//!   Retrying..."), then retries with the file's token. It does not re-read it
//!   before each request. So a session that outlives its token heals with one
//!   401, provided the file already holds the broker's next token.
//!
//! The broker does not know the GitHub login, so it writes the token into
//! every `https://github.com:` entry the file has, or, if there is none, into
//! the two entries for `lastLoggedInUser`. A file naming no GitHub account is
//! refused with a hint (`copilot login` once writes one).

use super::target::{Identity, ToolFormat};
use crate::config::ProjectionKind;
use crate::manager::ServedToken;
use oauth_broker_proto::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime};

/// Copilot CLI never refreshes on its own; the margin only keeps a token in
/// the file that new sessions can use for a while.
const DEFAULT_MARGIN: Duration = Duration::from_secs(5 * 60);

const TOKENS_KEY: &str = "authTokens";
const GITHUB_PREFIX: &str = "https://github.com:";
const GITHUB_HOST: &str = "https://github.com";

/// The `copilot-cli` projection kind.
pub struct CopilotCli;

impl ToolFormat for CopilotCli {
    fn kind(&self) -> ProjectionKind {
        ProjectionKind::CopilotCli
    }

    fn default_refresh_margin(&self) -> Duration {
        DEFAULT_MARGIN
    }

    fn tool_expiry(&self, token: &ServedToken) -> Option<SystemTime> {
        token.expires_at
    }

    fn identity_of_login(&self, _token: &ServedToken) -> Identity {
        Identity::default()
    }

    /// The GitHub token the file holds stands in for "the tool's own login"
    /// (the file has no refresh token): a file with one is backed up before
    /// the first write, so `brokerctl project --restore` gives Copilot CLI
    /// its own login back.
    fn inspect(&self, file: &Map<String, Value>) -> (Identity, Option<SecretString>) {
        let token = file
            .get(TOKENS_KEY)
            .and_then(Value::as_object)
            .and_then(|tokens| {
                tokens
                    .iter()
                    .filter(|(key, _)| key.starts_with(GITHUB_PREFIX))
                    .find_map(|(_, entry)| entry.get("token").and_then(Value::as_str))
            })
            .map(|t| SecretString::from(t.to_string()));
        (Identity::default(), token)
    }

    fn render(
        &self,
        token: &ServedToken,
        mut file: Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let access_token = token.access_token().expose_secret().to_string();
        let mut tokens = match file.remove(TOKENS_KEY) {
            Some(Value::Object(tokens)) => tokens,
            _ => Map::new(),
        };
        let mut keys: Vec<String> = tokens
            .keys()
            .filter(|key| key.starts_with(GITHUB_PREFIX))
            .cloned()
            .collect();
        if keys.is_empty() {
            let login = last_logged_in_login(&file).ok_or(
                "it names no github.com account; run `copilot login` once (the broker then \
                 replaces that token), or add \"lastLoggedInUser\": {\"host\": \"https://github.com\", \
                 \"login\": \"<your GitHub login>\"}",
            )?;
            keys = vec![
                format!("{GITHUB_PREFIX}{login}"),
                format!("{GITHUB_PREFIX}{login}:github"),
            ];
        }
        for key in keys {
            let mut entry = match tokens.remove(&key) {
                Some(Value::Object(entry)) => entry,
                _ => Map::new(),
            };
            entry.insert("token".into(), access_token.clone().into());
            tokens.insert(key, Value::Object(entry));
        }
        file.insert(TOKENS_KEY.into(), Value::Object(tokens));
        Ok(file)
    }

    /// Copilot CLI starts the file with `//` comment lines.
    fn parse(&self, bytes: &[u8]) -> Option<Map<String, Value>> {
        let text = std::str::from_utf8(bytes).ok()?;
        let json: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        serde_json::from_str(&json).ok()
    }
}

/// `lastLoggedInUser.login` when its host is github.com.
fn last_logged_in_login(file: &Map<String, Value>) -> Option<&str> {
    let user = file.get("lastLoggedInUser")?;
    if user.get("host").and_then(Value::as_str) != Some(GITHUB_HOST) {
        return None;
    }
    user.get("login")
        .and_then(Value::as_str)
        .filter(|login| !login.is_empty() && !login.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Credentials;
    use serde_json::json;
    use std::time::UNIX_EPOCH;

    fn served() -> ServedToken {
        ServedToken::new(&Credentials {
            access_token: Some("ghu_broker".to_string().into()),
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(1_700_028_800)),
            obtained_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            obtained_boot: None,
            refresh_token: "ghr_real".to_string().into(),
            id_token: None,
            token_type: "bearer".into(),
            scopes: vec![],
            account_id: None,
            metadata: Default::default(),
            refresh_hint_at: None,
        })
        .unwrap()
    }

    /// What Copilot CLI 1.0.102 writes after `copilot login`.
    const WRITTEN_BY_COPILOT: &str = r#"// User settings belong in settings.json.
// This file is managed automatically.
{
  "authTokens": {
    "https://github.com:octo:github": {
      "token": "gho_own"
    },
    "https://github.com:octo": {
      "token": "gho_own"
    }
  },
  "loggedInUsers": [
    {
      "host": "https://github.com",
      "login": "octo",
      "kind": "githubDotCom"
    }
  ],
  "lastLoggedInUser": {
    "host": "https://github.com",
    "login": "octo"
  }
}
"#;

    #[test]
    fn reads_past_the_comments_and_replaces_every_github_token() {
        let file = CopilotCli.parse(WRITTEN_BY_COPILOT.as_bytes()).unwrap();
        let (_, own) = CopilotCli.inspect(&file);
        assert_eq!(own.unwrap().expose_secret(), "gho_own");
        let file = CopilotCli.render(&served(), file).unwrap();
        assert_eq!(
            file["authTokens"],
            json!({"https://github.com:octo:github": {"token": "ghu_broker"},
                   "https://github.com:octo": {"token": "ghu_broker"}})
        );
        assert_eq!(file["lastLoggedInUser"]["login"], "octo");
        assert_eq!(file["loggedInUsers"][0]["kind"], "githubDotCom");
    }

    #[test]
    fn keeps_other_hosts_and_fills_in_the_last_user() {
        let Value::Object(file) = json!({
            "authTokens": {"https://ghe.example.com:me": {"token": "ghe"}},
            "lastLoggedInUser": {"host": "https://github.com", "login": "octo"},
        }) else {
            unreachable!()
        };
        let file = CopilotCli.render(&served(), file).unwrap();
        assert_eq!(
            file["authTokens"]["https://ghe.example.com:me"]["token"],
            "ghe"
        );
        assert_eq!(
            file["authTokens"]["https://github.com:octo"]["token"],
            "ghu_broker"
        );
        assert_eq!(
            file["authTokens"]["https://github.com:octo:github"]["token"],
            "ghu_broker"
        );
    }

    #[test]
    fn a_file_naming_no_account_is_refused_with_the_fix() {
        let err = CopilotCli.render(&served(), Map::new()).unwrap_err();
        assert!(err.contains("copilot login"), "{err}");
        assert!(!err.contains("ghu_broker"));
        assert!(CopilotCli.parse(b"// only a comment\n[1]").is_none());
    }
}
