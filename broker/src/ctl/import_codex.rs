//! `brokerctl import --codex [PATH]`: adopt the ChatGPT login of Codex CLI.
//!
//! Codex CLI keeps it in `$CODEX_HOME/auth.json` (default `~/.codex/auth.json`):
//! `{"auth_mode":"chatgpt","OPENAI_API_KEY":null,"tokens":{"id_token",
//! "access_token","refresh_token","account_id"},"last_refresh":…}`. After the
//! import two programs hold the same single-use refresh token; whichever
//! refreshes second gets `refresh_token_reused` and the server revokes the
//! login for both. So the import always ends with plain instructions for
//! taking Codex CLI's copy out of play.

use oauth_broker_client::proto::ImportTokens;
use oauth_broker_client::SecretString;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// `$CODEX_HOME/auth.json`, else `~/.codex/auth.json`.
pub fn default_path() -> Result<PathBuf, String> {
    if let Some(home) = std::env::var_os("CODEX_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(home).join("auth.json"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".codex").join("auth.json")),
        None => Err(
            "neither CODEX_HOME nor HOME is set; pass the file: `brokerctl import --codex PATH`"
                .into(),
        ),
    }
}

/// Reads the tokens of a Codex CLI `auth.json`. Messages name the field, never
/// a value.
pub fn parse(bytes: &[u8]) -> Result<ImportTokens, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "not valid JSON (line {}, column {}); is this a Codex CLI auth.json?",
            e.line(),
            e.column()
        )
    })?;
    let Value::Object(object) = value else {
        return Err("not a JSON object; is this a Codex CLI auth.json?".into());
    };
    let mode = object.get("auth_mode").and_then(Value::as_str);
    let tokens = match object.get("tokens") {
        Some(Value::Object(tokens)) => tokens,
        _ if mode == Some("apikey") || has_string(&object, "OPENAI_API_KEY") => {
            return Err("this Codex CLI login uses an API key, not a ChatGPT sign-in; there is no refresh token to import".into())
        }
        _ => return Err("no \"tokens\" object; is this a Codex CLI auth.json of a ChatGPT sign-in?".into()),
    };
    let field = |name: &str| -> Result<Option<String>, String> {
        match tokens.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("field \"tokens.{name}\" must be a string")),
        }
    };
    let refresh_token = field("refresh_token")?
        .ok_or_else(|| "no \"tokens.refresh_token\"; log in with Codex CLI first (`codex login`) or use `brokerctl relogin`".to_string())?;
    Ok(ImportTokens {
        refresh_token: SecretString::from(refresh_token),
        access_token: field("access_token")?.map(SecretString::from),
        // The broker reads the expiry from the access token's `exp`.
        expires_at: None,
        id_token: field("id_token")?.map(SecretString::from),
        scope: None,
        token_type: None,
        account_id: field("account_id")?,
    })
}

fn has_string(object: &Map<String, Value>, key: &str) -> bool {
    object
        .get(key)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

/// What the user must do now, in plain words.
pub fn warning(path: &Path) -> String {
    let p = path.display();
    format!(
        "\
brokerctl: the broker now owns the ChatGPT login that Codex CLI keeps in {p}.
brokerctl: WARNING: Codex CLI still has the same refresh token and will spend it the next time
brokerctl: it refreshes on its own. The server accepts each refresh token only once and then logs
brokerctl: out BOTH Codex CLI and the broker (refresh_token_reused). Do one of these now:
brokerctl:   1. let Codex use the broker: enable the broker's codex projection (it rewrites
brokerctl:      {p} with tokens from the broker), or configure Codex to run
brokerctl:      `brokerctl token` as its auth command (see the README); or
brokerctl:   2. make Codex forget its copy: move the file away, e.g.
brokerctl:      mv {p} {p}.bak
brokerctl: Do NOT run `codex logout`: it revokes this very token at the server and logs the broker out too.
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_client::ExposeSecret;

    #[test]
    fn reads_a_chatgpt_login() {
        let t = parse(
            br#"{"auth_mode":"chatgpt","OPENAI_API_KEY":null,
                 "tokens":{"id_token":"id-1","access_token":"at-1","refresh_token":"rt-1","account_id":"acct-1"},
                 "last_refresh":"2025-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(t.refresh_token.expose_secret(), "rt-1");
        assert_eq!(t.access_token.unwrap().expose_secret(), "at-1");
        assert_eq!(t.id_token.unwrap().expose_secret(), "id-1");
        assert_eq!(t.account_id.as_deref(), Some("acct-1"));
    }

    #[test]
    fn api_key_logins_and_garbage_are_explained_without_values() {
        let err = parse(br#"{"auth_mode":"apikey","OPENAI_API_KEY":"sk-SECRET"}"#).unwrap_err();
        assert!(err.contains("API key") && !err.contains("SECRET"), "{err}");
        let err = parse(br#"{"OPENAI_API_KEY":"sk-SECRET","tokens":null}"#).unwrap_err();
        assert!(err.contains("API key"), "{err}");
        let err = parse(br#"{"tokens":{"access_token":"at-SECRET"}}"#).unwrap_err();
        assert!(
            err.contains("tokens.refresh_token") && !err.contains("SECRET"),
            "{err}"
        );
        let err = parse(br#"{"tokens":{"refresh_token":["rt-SECRET"]}}"#).unwrap_err();
        assert!(!err.contains("SECRET"), "{err}");
        assert!(parse(b"[]").is_err());
        assert!(parse(b"{").is_err());
    }

    #[test]
    fn warning_names_the_file_and_both_ways_out() {
        let w = warning(Path::new("/h/.codex/auth.json"));
        assert!(w.contains("/h/.codex/auth.json.bak"));
        assert!(w.contains("brokerctl token"));
        assert!(w.contains("Do NOT run `codex logout`"));
    }
}
