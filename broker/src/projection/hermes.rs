//! Hermes Agent's `auth.json` (its ChatGPT / Codex sign-in). Facts read in the
//! released Hermes Agent 0.19.0 (`hermes_cli/auth.py`,
//! `agent/credential_pool.py`) and observed by running it offline against the
//! broker (broker/tests/e2e_hermes.rs):
//!
//! * `$HERMES_HOME/auth.json` (default `~/.hermes/auth.json`) holds every
//!   provider's login: `providers.openai-codex` = `{tokens: {access_token,
//!   refresh_token, id_token, account_id}, last_refresh, auth_mode}` next to
//!   other providers' logins (Nous, xAI, … with rotating refresh tokens of
//!   their own), `active_provider`, and `credential_pool.openai-codex`, a list
//!   of entries the runtime actually selects from (the `device_code` entry
//!   mirrors `providers.openai-codex`). So the broker replaces only the Codex
//!   login and the pool entries that mirror it, and keeps every other key.
//! * Every read-modify-write of the file happens under an exclusive `flock`
//!   on `auth.lock` beside it (`_auth_store_lock`, polled with `LOCK_NB` for
//!   up to 15 s); the file itself is replaced by rename. The broker takes the
//!   same lock around its own read-modify-write, else a Hermes write racing
//!   with it would put the old token back (a lost update, not a torn file).
//! * Hermes sends the access token as the bearer token and takes the
//!   `ChatGPT-Account-ID` from its JWT claims. It refreshes on its own
//!   (`https://auth.openai.com/oauth/token`, fixed) when the JWT `exp` is
//!   within 120 s, but first re-reads this file under the lock and adopts a
//!   newer access token without any network call. The default margin is
//!   therefore 5 minutes.
//! * After a backend 401 Hermes force-refreshes whatever the file holds: with a
//!   projection that is one refused refresh of the placeholder, after which
//!   Hermes drops the Codex tokens from the file; the next check rewrites them.
//! * `hermes logout` only deletes the Codex login from this file (no revoke).

use super::codex::Codex;
use super::json_object::object_at;
use super::target::{Identity, ToolFormat, PLACEHOLDER_REFRESH_TOKEN};
use crate::config::ProjectionKind;
use crate::manager::ServedToken;
use oauth_broker_proto::SecretString;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Hermes refreshes on its own 120 s before `exp`; stay 3 minutes more ahead.
const DEFAULT_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Hermes's provider id for the ChatGPT sign-in.
const PROVIDER: &str = "openai-codex";

/// The pool entry Hermes seeds from `providers.openai-codex` (its own login).
const MIRROR_SOURCE: &str = "device_code";

/// What Hermes's `_save_codex_tokens` clears on a pool entry whose tokens it
/// replaces (error state of the old token).
const POOL_ERROR_KEYS: [&str; 6] = [
    "last_status",
    "last_status_at",
    "last_error_code",
    "last_error_reason",
    "last_error_message",
    "last_error_reset_at",
];

/// The `hermes` projection kind.
pub struct Hermes;

impl ToolFormat for Hermes {
    fn kind(&self) -> ProjectionKind {
        ProjectionKind::Hermes
    }

    fn default_refresh_margin(&self) -> Duration {
        DEFAULT_MARGIN
    }

    /// Hermes judges the token by its JWT `exp`, as Codex does.
    fn tool_expiry(&self, token: &ServedToken) -> Option<SystemTime> {
        Codex.tool_expiry(token)
    }

    fn identity_of_login(&self, token: &ServedToken) -> Identity {
        Codex.identity_of_login(token)
    }

    /// `providers.openai-codex.tokens` has the shape of Codex's `tokens`.
    fn inspect(&self, file: &Map<String, Value>) -> (Identity, Option<SecretString>) {
        let tokens = file
            .get("providers")
            .and_then(|p| p.get(PROVIDER))
            .and_then(|login| login.get("tokens"))
            .cloned();
        let mut as_codex = Map::new();
        if let Some(tokens) = tokens {
            as_codex.insert("tokens".into(), tokens);
        }
        Codex.inspect(&as_codex)
    }

    fn access_token_in(&self, file: &Map<String, Value>) -> Option<SecretString> {
        let login = file.get("providers")?.get(PROVIDER)?;
        let token = login.get("tokens")?.get("access_token")?.as_str()?;
        Some(SecretString::from(token.to_string()))
    }

    fn render(
        &self,
        token: &ServedToken,
        mut file: Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        // Codex's rendering checks the same needs (id token, account id) and
        // yields the `tokens` object Hermes stores.
        let codex = Codex.render(token, Map::new())?;
        let tokens = codex.get("tokens").cloned().unwrap_or_default();
        let last_refresh = codex.get("last_refresh").cloned().unwrap_or_default();
        let access_token = tokens
            .get("access_token")
            .cloned()
            .ok_or("the broker holds no access token yet")?;

        file.entry("version").or_insert(json!(1));
        let providers = object_at(&mut file, "providers");
        let login = object_at(providers, PROVIDER);
        let previous_access = login
            .get("tokens")
            .and_then(|t| t.get("access_token"))
            .cloned();
        login.insert("tokens".into(), tokens);
        login.insert("last_refresh".into(), last_refresh.clone());
        login.insert("auth_mode".into(), "chatgpt".into());
        // A refused refresh leaves this note; the new token answers it.
        login.remove("last_auth_error");
        if file.get("active_provider").is_none_or(Value::is_null) {
            file.insert("active_provider".into(), PROVIDER.into());
        }

        // The pool entries that mirror this login (Hermes's own rule in
        // `_sync_codex_pool_entries`): the `device_code` one, and a
        // `manual:device_code` one only if it held the login's previous access
        // token (else it is another account). An entry already holding the
        // current token is left alone: its error state (a 429 cooldown) is
        // about this token.
        if let Some(Value::Array(entries)) = file
            .get_mut("credential_pool")
            .and_then(|p| p.get_mut(PROVIDER))
        {
            for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
                let mirrors = match entry.get("source").and_then(Value::as_str) {
                    Some(MIRROR_SOURCE) => true,
                    Some("manual:device_code") => {
                        previous_access.is_some()
                            && entry.get("access_token") == previous_access.as_ref()
                    }
                    _ => false,
                };
                if !mirrors || entry.get("access_token") == Some(&access_token) {
                    continue;
                }
                entry.insert("access_token".into(), access_token.clone());
                entry.insert("refresh_token".into(), PLACEHOLDER_REFRESH_TOKEN.into());
                entry.insert("last_refresh".into(), last_refresh.clone());
                for key in POOL_ERROR_KEYS {
                    entry.insert(key.into(), Value::Null);
                }
            }
        }
        Ok(file)
    }

    /// `auth.lock` beside `auth.json` (Python's `with_suffix(".lock")`).
    fn lock_path(&self, path: &Path) -> Option<PathBuf> {
        Some(path.with_extension("lock"))
    }

    /// The file holds other providers' logins with rotating refresh tokens
    /// that Hermes may have spent since the backup was taken: give back only
    /// the Codex login (the backup's, or none), never the whole old file.
    fn give_back(
        &self,
        mut current: Map<String, Value>,
        backup: Option<&Map<String, Value>>,
    ) -> Option<Map<String, Value>> {
        let own_login = backup
            .and_then(|b| b.get("providers"))
            .and_then(|p| p.get(PROVIDER))
            .cloned();
        let own_pool = backup
            .and_then(|b| b.get("credential_pool"))
            .and_then(|p| p.get(PROVIDER))
            .cloned();
        let providers = object_at(&mut current, "providers");
        match own_login {
            Some(login) => providers.insert(PROVIDER.into(), login),
            None => providers.remove(PROVIDER),
        };
        let pool = object_at(&mut current, "credential_pool");
        match own_pool {
            Some(entries) => pool.insert(PROVIDER.into(), entries),
            None => pool.remove(PROVIDER),
        };
        let still_logged_in = current
            .get("providers")
            .and_then(|p| p.get(PROVIDER))
            .is_some();
        if !still_logged_in && current.get("active_provider") == Some(&json!(PROVIDER)) {
            current.insert("active_provider".into(), Value::Null);
        }
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Credentials;
    use base64::Engine;
    use oauth_broker_proto::ExposeSecret;

    fn jwt(payload: Value) -> String {
        let enc = |v: Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        format!("{}.{}.c2ln", enc(json!({"alg": "none"})), enc(payload))
    }

    fn creds(jti: &str) -> ServedToken {
        ServedToken::new(&login(jti)).unwrap()
    }

    fn login(jti: &str) -> Credentials {
        let auth = json!({"chatgpt_account_id": "acct-1"});
        Credentials {
            access_token: Some(
                jwt(json!({"sub": "user-1", "exp": 1_700_003_600u64, "jti": jti, "https://api.openai.com/auth": auth}))
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

    /// Whether the Codex login in a Hermes file is the broker's projection.
    fn holds_placeholder(file: &Map<String, Value>) -> bool {
        Hermes
            .inspect(file)
            .1
            .is_some_and(|t| t.expose_secret() == PLACEHOLDER_REFRESH_TOKEN)
    }

    fn access(c: &ServedToken) -> String {
        c.access_token().expose_secret().to_string()
    }

    /// A Hermes file as Hermes 0.19.0 writes it after its own device login,
    /// with a Nous login beside it.
    fn hermes_file(access_token: &str, refresh: &str) -> Map<String, Value> {
        let file = json!({
            "version": 1,
            "providers": {
                "openai-codex": {"tokens": {"access_token": access_token, "refresh_token": refresh},
                    "last_refresh": "2023-01-01T00:00:00Z", "auth_mode": "chatgpt", "label": "mine",
                    "last_auth_error": {"code": "invalid_grant"}},
                "nous": {"refresh_token": "nous-rotating-rt"}
            },
            "active_provider": "nous",
            "credential_pool": {
                "openai-codex": [
                    {"id": "a1", "source": "device_code", "access_token": access_token, "refresh_token": refresh,
                     "last_status": "exhausted", "last_error_code": 401, "request_count": 3},
                    {"id": "b2", "source": "manual:device_code", "access_token": "other-account-at", "refresh_token": "other-rt"}
                ],
                "nous": [{"id": "n1", "source": "device_code"}]
            },
            "updated_at": "2023-01-01T00:00:00+00:00"
        });
        match file {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn renders_the_codex_login_and_its_pool_mirror_and_keeps_everything_else() {
        let c = creds("a");
        let file = Hermes
            .render(&c, hermes_file("old-at", "hermes-own-rt"))
            .unwrap();
        let login = &file["providers"]["openai-codex"];
        assert_eq!(login["tokens"]["access_token"], access(&c));
        assert_eq!(login["tokens"]["refresh_token"], PLACEHOLDER_REFRESH_TOKEN);
        assert_eq!(login["tokens"]["account_id"], "acct-1");
        assert!(login["tokens"]["id_token"].is_string());
        assert_eq!(login["last_refresh"], "2023-11-14T22:13:20Z");
        assert_eq!(login["auth_mode"], "chatgpt");
        assert_eq!(login["label"], "mine");
        assert!(login.get("last_auth_error").is_none());
        // Other providers, the active provider and the other account's entry: untouched.
        assert_eq!(
            file["providers"]["nous"]["refresh_token"],
            "nous-rotating-rt"
        );
        assert_eq!(file["active_provider"], "nous");
        assert_eq!(file["credential_pool"]["nous"][0]["id"], "n1");
        let pool = &file["credential_pool"]["openai-codex"];
        assert_eq!(pool[0]["access_token"], access(&c));
        assert_eq!(pool[0]["refresh_token"], PLACEHOLDER_REFRESH_TOKEN);
        assert_eq!(pool[0]["last_status"], Value::Null);
        assert_eq!(pool[0]["last_error_code"], Value::Null);
        assert_eq!(pool[0]["request_count"], 3);
        assert_eq!(pool[1]["access_token"], "other-account-at");
        assert_eq!(pool[1]["refresh_token"], "other-rt");
        assert_eq!(file["updated_at"], "2023-01-01T00:00:00+00:00");
        assert!(!Value::Object(file).to_string().contains("rt-secret-42"));
    }

    #[test]
    fn an_entry_already_on_the_current_token_keeps_its_error_state() {
        let c = creds("a");
        let mut file = Hermes.render(&c, hermes_file("old-at", "x")).unwrap();
        // Hermes puts the entry in a 429 cooldown for this very token.
        file["credential_pool"]["openai-codex"][0]["last_status"] = "exhausted".into();
        let again = Hermes.render(&c, file).unwrap();
        assert_eq!(
            again["credential_pool"]["openai-codex"][0]["last_status"],
            "exhausted"
        );
        // The next token clears it, as Hermes's own sync would.
        let next = Hermes.render(&creds("b"), again).unwrap();
        assert_eq!(
            next["credential_pool"]["openai-codex"][0]["last_status"],
            Value::Null
        );
    }

    #[test]
    fn a_new_file_gets_the_login_and_becomes_active() {
        let c = creds("a");
        let file = Hermes.render(&c, Map::new()).unwrap();
        assert_eq!(file["version"], 1);
        assert_eq!(file["active_provider"], PROVIDER);
        assert!(file.get("credential_pool").is_none());
        assert!(holds_placeholder(&file));
        let (identity, _) = Hermes.inspect(&file);
        assert_eq!(identity, Hermes.identity_of_login(&c));
    }

    #[test]
    fn the_lock_is_auth_lock_beside_the_file() {
        assert_eq!(
            Hermes.lock_path(Path::new("/h/.hermes/auth.json")),
            Some(PathBuf::from("/h/.hermes/auth.lock"))
        );
    }

    #[test]
    fn gives_back_only_the_codex_login() {
        let c = creds("a");
        let backup = hermes_file("own-at", "hermes-own-rt");
        let mut current = Hermes.render(&c, backup.clone()).unwrap();
        // Since the backup, Hermes rotated its Nous login.
        current["providers"]["nous"]["refresh_token"] = "nous-newer-rt".into();
        let restored = Hermes.give_back(current.clone(), Some(&backup)).unwrap();
        assert_eq!(
            restored["providers"]["openai-codex"],
            backup["providers"]["openai-codex"]
        );
        assert_eq!(
            restored["credential_pool"]["openai-codex"],
            backup["credential_pool"]["openai-codex"]
        );
        assert_eq!(
            restored["providers"]["nous"]["refresh_token"],
            "nous-newer-rt"
        );
        // Without a backup the Codex login is removed, nothing else.
        let mut ours = Hermes.render(&c, Map::new()).unwrap();
        ours.insert("custom".into(), "kept".into());
        let removed = Hermes.give_back(ours, None).unwrap();
        assert!(removed["providers"].get(PROVIDER).is_none());
        assert_eq!(removed["active_provider"], Value::Null);
        assert_eq!(removed["custom"], "kept");
    }

    /// The broker's write waits for Hermes's `flock` on `auth.lock` (taken
    /// here as Hermes takes it, on its own open file) and happens once it is
    /// released; a restore gives back only the Codex login.
    #[test]
    fn writes_under_hermes_lock_and_restores_only_the_codex_login() {
        use super::super::target::{Synced, Target};
        use nix::fcntl::{Flock, FlockArg};
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("auth.json");
        let own = hermes_file("own-at", "hermes-own-rt");
        std::fs::write(&path, Value::Object(own.clone()).to_string()).unwrap();
        let target = std::sync::Arc::new(Target::new(Box::new(Hermes), path.clone(), None));
        let hermes_lock = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(tmp.path().join("auth.lock"))
            .unwrap();
        let held = Flock::lock(hermes_lock, FlockArg::LockExclusive).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = target.clone();
        std::thread::spawn(move || {
            let now = SystemTime::now();
            let _ = tx.send(writer.sync(&creds("a"), now));
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "the broker wrote while Hermes held its lock"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            Value::Object(own.clone()).to_string()
        );
        drop(held);
        let synced = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(synced, Ok(Synced::Written));
        let written: Map<String, Value> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(holds_placeholder(&written));

        // Hermes rotates its Nous login meanwhile; the restore keeps that.
        let mut later = written.clone();
        later["providers"]["nous"]["refresh_token"] = "nous-newer-rt".into();
        std::fs::write(&path, Value::Object(later).to_string()).unwrap();
        let done = target
            .restore(Some(creds("a").refresh_token_id.as_str()))
            .unwrap();
        assert_eq!(
            done.outcome,
            oauth_broker_proto::RestoreOutcome::BackupRestored
        );
        let restored: Map<String, Value> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            restored["providers"]["openai-codex"],
            own["providers"]["openai-codex"]
        );
        assert_eq!(
            restored["providers"]["nous"]["refresh_token"],
            "nous-newer-rt"
        );
        assert!(!super::super::file::backup_path(&path).exists());
    }

    /// The partial give-back refuses a backup holding the broker's refresh
    /// token as the whole-file restore does (compared by fingerprint), and
    /// leaves the file and the target as they were.
    #[test]
    fn a_backup_holding_the_brokers_refresh_token_is_not_given_back() {
        use super::super::target::Target;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("auth.json");
        let target = Target::new(Box::new(Hermes), path.clone(), None);
        let c = creds("a");
        target.sync(&c, SystemTime::now()).unwrap();
        let written = std::fs::read(&path).unwrap();
        std::fs::write(
            super::super::file::backup_path(&path),
            Value::Object(hermes_file("own-at", "rt-secret-42")).to_string(),
        )
        .unwrap();
        let err = target
            .restore(Some(c.refresh_token_id.as_str()))
            .unwrap_err();
        assert!(err.contains("refresh_token_reused"), "{err}");
        assert!(!err.contains("rt-secret-42"), "{err}");
        assert!(!target.is_stopped());
        assert_eq!(std::fs::read(&path).unwrap(), written);
    }

    #[test]
    fn refuses_to_render_without_what_hermes_needs() {
        let mut c = login("a");
        c.account_id = None;
        assert!(Hermes
            .render(&ServedToken::new(&c).unwrap(), Map::new())
            .unwrap_err()
            .contains("account id"));
    }
}
