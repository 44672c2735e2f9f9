//! Codex CLI's `auth.json` (ChatGPT sign-in). Facts observed with the real
//! Codex CLI 0.169 (shared/PROVIDERS.md):
//!
//! * Codex sends `tokens.access_token` as the bearer token and
//!   `tokens.account_id` as `ChatGPT-Account-ID`, and parses the `id_token`'s
//!   claims (no signature check), so both must be there.
//! * It refreshes on its own once the access token's JWT `exp` is within
//!   5 minutes, and after a 401. Before either it re-reads this file and, if the
//!   file changed for the same `account_id`, adopts it without any network
//!   call. So the file must always hold a token whose `exp` is more than
//!   5 minutes away: the default margin is 10 minutes.
//! * `codex logout` revokes the file's refresh token: the file only ever holds
//!   the placeholder.

use super::target::{Identity, ToolFormat, PLACEHOLDER_REFRESH_TOKEN};
use crate::config::ProjectionKind;
use crate::manager::ServedToken;
use oauth_broker_proto::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime};

/// Codex refreshes on its own 5 minutes before `exp`; stay 5 more ahead.
const DEFAULT_MARGIN: Duration = Duration::from_secs(10 * 60);

/// Latest believable JWT `exp` (early 2106, the latest time the broker
/// represents). The claim comes from the token the server issued; a larger one
/// is garbage, not a date.
const MAX_PLAUSIBLE_EXP: u64 = crate::clock::MAX_UNIX_SECS;

/// The `codex` projection kind.
pub struct Codex;

impl ToolFormat for Codex {
    fn kind(&self) -> ProjectionKind {
        ProjectionKind::Codex
    }

    fn default_refresh_margin(&self) -> Duration {
        DEFAULT_MARGIN
    }

    /// Codex judges the token by its JWT `exp`, not by what the token
    /// endpoint said: use the same clock. An absurd `exp` counts as unknown
    /// (then the token endpoint's expiry is all there is).
    fn tool_expiry(&self, token: &ServedToken) -> Option<SystemTime> {
        crate::jwt::expiry(token.access_token().expose_secret())
            .and_then(exp_time)
            .or(token.expires_at)
    }

    fn identity_of_login(&self, token: &ServedToken) -> Identity {
        Identity {
            account_id: token.account_id.clone(),
            subject: subject(token.id_token.as_ref().or(Some(token.access_token()))),
        }
    }

    fn inspect(&self, file: &Map<String, Value>) -> (Identity, Option<SecretString>) {
        let tokens = file.get("tokens").and_then(Value::as_object);
        let text = |key: &str| tokens.and_then(|t| t.get(key)).and_then(Value::as_str);
        let id_token = text("id_token").map(|t| SecretString::from(t.to_string()));
        let claims_account = id_token
            .as_ref()
            .and_then(|t| crate::jwt::claims(t.expose_secret()))
            .and_then(|c| {
                c.get("https://api.openai.com/auth")?
                    .get("chatgpt_account_id")?
                    .as_str()
                    .map(str::to_string)
            });
        let identity = Identity {
            account_id: text("account_id").map(str::to_string).or(claims_account),
            subject: subject(id_token.as_ref()),
        };
        let refresh_token = text("refresh_token").map(|t| SecretString::from(t.to_string()));
        (identity, refresh_token)
    }

    fn access_token_in(&self, file: &Map<String, Value>) -> Option<SecretString> {
        let token = file.get("tokens")?.get("access_token")?.as_str()?;
        Some(SecretString::from(token.to_string()))
    }

    fn render(
        &self,
        token: &ServedToken,
        mut file: Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let access_token = token.access_token();
        let id_token = token.id_token.as_ref().ok_or(
            "the broker's login has no id_token, which Codex needs; run `brokerctl relogin` (or import tokens that include the id_token)",
        )?;
        let account_id = token.account_id.as_ref().ok_or(
            "the broker's tokens carry no ChatGPT account id, which Codex needs; is the provider really ChatGPT (preset openai-codex)?",
        )?;
        file.insert("auth_mode".into(), "chatgpt".into());
        file.insert("OPENAI_API_KEY".into(), Value::Null);
        file.insert(
            "tokens".into(),
            json!({
                "id_token": id_token.expose_secret(),
                "access_token": access_token.expose_secret(),
                "refresh_token": PLACEHOLDER_REFRESH_TOKEN,
                "account_id": account_id,
            }),
        );
        // `2025-06-01T14:03:22Z`, the form Codex writes.
        let last_refresh = crate::ctl::output::rfc3339(crate::clock::unix_secs(token.obtained_at));
        file.insert("last_refresh".into(), last_refresh.into());
        Ok(file)
    }
}

/// The time a JWT `exp` claim names; `None` when it is not a believable date
/// (rather than clamping it, as `from_unix_secs` would).
fn exp_time(exp: u64) -> Option<SystemTime> {
    (exp <= MAX_PLAUSIBLE_EXP).then(|| crate::clock::from_unix_secs(exp))
}

/// The JWT `sub` claim of a token, if it is a JWT.
fn subject(token: Option<&SecretString>) -> Option<String> {
    let claims = crate::jwt::claims(token?.expose_secret())?;
    claims.get("sub")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Credentials;

    fn served(c: &Credentials) -> ServedToken {
        ServedToken::new(c).unwrap()
    }
    use base64::Engine;

    fn jwt(payload: Value) -> String {
        let enc = |v: Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        format!("{}.{}.c2ln", enc(json!({"alg": "none"})), enc(payload))
    }

    fn creds() -> Credentials {
        let auth = json!({"chatgpt_account_id": "acct-1"});
        Credentials {
            access_token: Some(
                jwt(json!({"sub": "user-1", "exp": 1_700_003_600u64, "https://api.openai.com/auth": auth}))
                    .into(),
            ),
            expires_at: Some(crate::clock::from_unix_secs(1_700_003_000)),
            obtained_at: crate::clock::from_unix_secs(1_700_000_000),
            obtained_boot: None,
            refresh_token: "rt-secret-42".to_string().into(),
            id_token: Some(jwt(json!({"sub": "user-1", "https://api.openai.com/auth": auth})).into()),
            token_type: "Bearer".into(),
            scopes: vec![],
            account_id: Some("acct-1".into()),
            metadata: Default::default(),
            refresh_hint_at: None,
        }
    }

    #[test]
    fn renders_the_codex_shape_with_the_placeholder() {
        let c = creds();
        let mut existing = Map::new();
        existing.insert("custom".into(), "kept".into());
        let file = Codex.render(&served(&c), existing).unwrap();
        assert_eq!(file["auth_mode"], "chatgpt");
        assert_eq!(file["OPENAI_API_KEY"], Value::Null);
        assert_eq!(file["custom"], "kept");
        assert_eq!(
            file["tokens"]["access_token"],
            c.access_token.as_ref().unwrap().expose_secret()
        );
        assert_eq!(file["tokens"]["refresh_token"], PLACEHOLDER_REFRESH_TOKEN);
        assert_eq!(file["tokens"]["account_id"], "acct-1");
        assert_eq!(file["last_refresh"], "2023-11-14T22:13:20Z");
        assert!(!Value::Object(file).to_string().contains("rt-secret-42"));
    }

    #[test]
    fn judges_expiry_by_the_jwt_and_reads_identity_back() {
        let c = creds();
        assert_eq!(
            Codex.tool_expiry(&served(&c)),
            Some(crate::clock::from_unix_secs(1_700_003_600))
        );
        let file = Codex.render(&served(&c), Map::new()).unwrap();
        let (identity, refresh) = Codex.inspect(&file);
        assert_eq!(identity, Codex.identity_of_login(&served(&c)));
        assert_eq!(identity.account_id.as_deref(), Some("acct-1"));
        assert_eq!(identity.subject.as_deref(), Some("user-1"));
        assert_eq!(refresh.unwrap().expose_secret(), PLACEHOLDER_REFRESH_TOKEN);
    }

    #[test]
    fn an_absurd_exp_counts_as_unknown() {
        for exp in [u64::MAX, u64::MAX / 2, MAX_PLAUSIBLE_EXP + 1] {
            let mut c = creds();
            c.access_token = Some(jwt(json!({"sub": "user-1", "exp": exp})).into());
            assert_eq!(Codex.tool_expiry(&served(&c)), c.expires_at, "exp {exp}");
            c.expires_at = None;
            assert_eq!(Codex.tool_expiry(&served(&c)), None, "exp {exp}");
        }
    }

    #[test]
    fn refuses_to_render_without_what_codex_needs() {
        let mut c = creds();
        c.id_token = None;
        assert!(Codex
            .render(&served(&c), Map::new())
            .unwrap_err()
            .contains("id_token"));
        let mut c = creds();
        c.account_id = None;
        assert!(Codex
            .render(&served(&c), Map::new())
            .unwrap_err()
            .contains("account id"));
    }
}
