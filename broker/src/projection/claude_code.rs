//! Claude Code's `.credentials.json` (Claude Pro/Max sign-in). Facts observed
//! with the real Claude Code 2.1.330 (shared/PROVIDERS.md) and checked again
//! with 2.1.332 in `broker/tests/e2e_claude_code.rs`:
//!
//! * The login lives under `claudeAiOauth`: `accessToken`, `refreshToken`,
//!   `expiresAt` (unix milliseconds), `scopes`, `subscriptionType`. The same
//!   file holds other entries (MCP server logins), so the broker only replaces
//!   the fields it owns and keeps everything else.
//! * Claude Code re-reads the file whenever its mtime changed, before every
//!   request; it refreshes on its own once `expiresAt` is within 5 minutes —
//!   at start-up, and after a 401 when the re-read file's `expiresAt` is that
//!   close (a 401 with a far `expiresAt` in the re-read file just retries with
//!   the file's token) — and wipes the file when that refresh fails with
//!   `invalid_grant`. The default margin is therefore 10 minutes, and a wiped
//!   file is rewritten at the next check.
//! * `expiresAt` is only Claude Code's cue to refresh, and its refresh can only
//!   fail here (the file holds a placeholder). So the written `expiresAt` is the
//!   token's expiry, but never less than [`LEAST_CLAIMED_LIFETIME`] after the
//!   broker got the token: a token that lives shorter than Claude Code's
//!   refresh window plus the margin (test servers issue seconds-long tokens;
//!   Anthropic's live hours and are written unchanged) would otherwise make
//!   every start of Claude Code a doomed refresh that wipes the file. While
//!   the broker runs it replaces the token long before that claimed expiry,
//!   and the API's 401 for a dead token makes Claude Code re-read the file
//!   (only if the file still holds that same token does it refresh — and
//!   wipe the file — as it would have done anyway).
//! * The file names no account, so the broker cannot tell whose login an
//!   existing file holds: it backs the file up before the first write.

use super::target::{Identity, ToolFormat, PLACEHOLDER_REFRESH_TOKEN};
use crate::config::ProjectionKind;
use crate::manager::ServedToken;
use oauth_broker_proto::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Claude Code refreshes on its own 5 minutes before expiry; stay 5 more ahead.
const DEFAULT_MARGIN: Duration = Duration::from_secs(10 * 60);

/// Claude Code's own refresh window (observed: `expiresAt` within 5 minutes).
const CLAUDE_CODE_REFRESH_WINDOW: Duration = Duration::from_secs(5 * 60);

/// The least lifetime a written `expiresAt` claims, counted from when the
/// broker got the token: the margin plus Claude Code's refresh window, so that
/// Claude Code never finds a freshly written short-lived token due.
pub const LEAST_CLAIMED_LIFETIME: Duration =
    Duration::from_secs(DEFAULT_MARGIN.as_secs() + CLAUDE_CODE_REFRESH_WINDOW.as_secs());

const LOGIN_KEY: &str = "claudeAiOauth";

/// The `claude-code` projection kind.
pub struct ClaudeCode;

impl ToolFormat for ClaudeCode {
    fn kind(&self) -> ProjectionKind {
        ProjectionKind::ClaudeCode
    }

    fn default_refresh_margin(&self) -> Duration {
        DEFAULT_MARGIN
    }

    fn tool_expiry(&self, token: &ServedToken) -> Option<SystemTime> {
        token
            .expires_at
            .map(|expires_at| claimed_expiry(token, expires_at))
    }

    fn identity_of_login(&self, _token: &ServedToken) -> Identity {
        Identity::default()
    }

    fn inspect(&self, file: &Map<String, Value>) -> (Identity, Option<SecretString>) {
        let refresh_token = file
            .get(LOGIN_KEY)
            .and_then(|login| login.get("refreshToken"))
            .and_then(Value::as_str)
            .map(|t| SecretString::from(t.to_string()));
        (Identity::default(), refresh_token)
    }

    fn access_token_in(&self, file: &Map<String, Value>) -> Option<SecretString> {
        let token = file.get(LOGIN_KEY)?.get("accessToken")?.as_str()?;
        Some(SecretString::from(token.to_string()))
    }

    fn render(
        &self,
        token: &ServedToken,
        mut file: Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let access_token = token.access_token();
        let expires_at = token
            .expires_at
            .ok_or("the broker does not know when its access token expires")?;
        let expires_at_ms = claimed_expiry(token, expires_at)
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut login = match file.remove(LOGIN_KEY) {
            Some(Value::Object(login)) => login,
            _ => Map::new(),
        };
        login.insert("accessToken".into(), access_token.expose_secret().into());
        login.insert("refreshToken".into(), PLACEHOLDER_REFRESH_TOKEN.into());
        login.insert("expiresAt".into(), expires_at_ms.into());
        if !token.scopes().is_empty() {
            login.insert("scopes".into(), token.scopes().to_vec().into());
        }
        file.insert(LOGIN_KEY.into(), Value::Object(login));
        Ok(file)
    }
}

/// The `expiresAt` Claude Code is shown: the real expiry, but at least
/// [`LEAST_CLAIMED_LIFETIME`] after the token was obtained (see the module
/// docs). Depends only on the token, so rewriting the same token writes the
/// same value.
fn claimed_expiry(token: &ServedToken, expires_at: SystemTime) -> SystemTime {
    expires_at.max(token.obtained_at + LEAST_CLAIMED_LIFETIME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Credentials;

    fn served(c: &Credentials) -> ServedToken {
        ServedToken::new(c).unwrap()
    }
    use serde_json::json;

    fn creds() -> Credentials {
        Credentials {
            access_token: Some("sk-ant-oat01-access".to_string().into()),
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(1_700_003_600)),
            obtained_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            obtained_boot: None,
            refresh_token: "sk-ant-ort01-real".to_string().into(),
            id_token: None,
            token_type: "Bearer".into(),
            scopes: vec!["user:inference".into(), "user:profile".into()],
            account_id: None,
            metadata: Default::default(),
            refresh_hint_at: None,
        }
    }

    #[test]
    fn replaces_only_the_login_fields() {
        let existing = json!({
            "claudeAiOauth": {"accessToken": "old", "refreshToken": "sk-ant-ort01-old",
                              "expiresAt": 1, "subscriptionType": "max"},
            "mcpOAuth": {"server": {"accessToken": "mcp"}},
        });
        let Value::Object(existing) = existing else {
            unreachable!()
        };
        let file = ClaudeCode.render(&served(&creds()), existing).unwrap();
        let login = &file["claudeAiOauth"];
        assert_eq!(login["accessToken"], "sk-ant-oat01-access");
        assert_eq!(login["refreshToken"], PLACEHOLDER_REFRESH_TOKEN);
        assert_eq!(login["expiresAt"], 1_700_003_600_000u64);
        assert_eq!(login["scopes"], json!(["user:inference", "user:profile"]));
        assert_eq!(login["subscriptionType"], "max");
        assert_eq!(file["mcpOAuth"]["server"]["accessToken"], "mcp");
        let (_, refresh) = ClaudeCode.inspect(&file);
        assert_eq!(refresh.unwrap().expose_secret(), PLACEHOLDER_REFRESH_TOKEN);
    }

    #[test]
    fn a_short_lived_token_claims_the_least_lifetime_and_a_long_one_its_own() {
        let obtained = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let short = Credentials {
            expires_at: Some(obtained + Duration::from_secs(6)),
            ..creds()
        };
        let short = served(&short);
        let file = ClaudeCode.render(&short, Map::new()).unwrap();
        let claimed = obtained + LEAST_CLAIMED_LIFETIME;
        let claimed_ms = claimed.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert_eq!(file["claudeAiOauth"]["expiresAt"], claimed_ms);
        assert_eq!(ClaudeCode.tool_expiry(&short), Some(claimed));
        // An hour-long token (as `creds()`) keeps its real expiry.
        let long = served(&creds());
        assert_eq!(ClaudeCode.tool_expiry(&long), long.expires_at);
    }
}
