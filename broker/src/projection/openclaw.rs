//! OpenClaw's auth profile store (its ChatGPT / Codex OAuth login). Facts read
//! in the released OpenClaw 2026.9.6 (npm `openclaw`, its bundled `dist/` and
//! `docs/concepts/oauth.md`, `docs/auth-credential-semantics.md`):
//!
//! * Credentials are no longer in `auth-profiles.json` (the per-agent JSON
//!   files of openclaw/openclaw#84463 and #74055 are "retired": runtime never
//!   reads credentials from them, `openclaw doctor --fix` imports and
//!   archives them). They live in SQLite: the shared store is the row
//!   `state_key = 'authProfiles.store'` of table `config_machine_state` in
//!   `$OPENCLAW_STATE_DIR/state/openclaw.sqlite` (default
//!   `~/.openclaw/state/openclaw.sqlite`, WAL mode), a JSON document
//!   `{"version": 1, "profiles": {"<id>": {...}}}`. Each agent may hold local
//!   overrides in `agents/<id>/agent/openclaw-agent.sqlite`, but agents
//!   *read through* to the shared store and OAuth profiles are not copied
//!   into agents any more ("not portable by default"). So one target, the
//!   shared store, feeds every agent that has no OAuth profile of its own.
//! * An OAuth profile is `{type: "oauth", provider, access, refresh, expires,
//!   accountId, …}`, `expires` in Unix milliseconds. ChatGPT/Codex OAuth uses
//!   the canonical provider `openai` (the `openai-codex:*` ids are legacy);
//!   the broker writes the profile `openai:default`.
//! * OpenClaw uses the stored access token while `expires` is more than
//!   5 minutes away (`hasUsableOAuthCredential`, `refreshMarginMs` 300 000)
//!   and otherwise refreshes it itself at the fixed
//!   `https://auth.openai.com/oauth/token` (client id
//!   `app_EMoamEEZ73f0CkXaXp7hrann`), under a file lock of its own and an
//!   inert "refresh fence" marker written in place of the credential. Before
//!   refreshing it re-reads the store, so a newer token written by the broker
//!   is adopted without any network call. The default margin is therefore
//!   8 minutes.
//! * Every write is one SQLite transaction, so no reader ever sees a torn
//!   document; OpenClaw notices another process's commit through the
//!   database's WAL identity (checked at most every 100 ms). The broker writes
//!   in an `IMMEDIATE` transaction and waits for OpenClaw's writers as long as
//!   Hermes's lock wait (15 s).
//! * OpenClaw reads that row only once the row `auth.sharedStore` of the same
//!   table is `{"location":"state-db"}` (written by OpenClaw on its first
//!   auth-profile write of a fresh install). Without it the shared store is
//!   still the "legacy-main" one, `agents/main/agent/openclaw-agent.sqlite`,
//!   and a row written here would be ignored (observed: "No route-compatible
//!   authentication source is configured for openai"). The broker refuses to
//!   write then, saying so.
//! * The broker never creates the database: OpenClaw owns its schema (about
//!   a hundred tables), so a missing database is an error telling the user to
//!   run OpenClaw once first.

use super::codex::Codex;
use super::file::Stamp;
use super::json_object::object_at;
use super::target::{Identity, ToolFormat, PLACEHOLDER_REFRESH_TOKEN};
use crate::config::ProjectionKind;
use crate::manager::ServedToken;
use oauth_broker_proto::SecretString;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde_json::{json, Map, Value};
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// OpenClaw refreshes on its own 5 minutes before `expires`; stay 3 more ahead.
const DEFAULT_MARGIN: Duration = Duration::from_secs(8 * 60);

/// The profile the broker owns in the store.
pub const PROFILE_ID: &str = "openai:default";

/// OpenClaw's canonical provider id for ChatGPT/Codex OAuth.
const PROVIDER: &str = "openai";

/// The table and row holding the shared auth profile store.
const TABLE: &str = "config_machine_state";
const STATE_KEY: &str = "authProfiles.store";
/// The row saying where the shared store lives: OpenClaw reads the
/// `authProfiles.store` row only when it is `{"location":"state-db"}`.
const OWNERSHIP_KEY: &str = "auth.sharedStore";
const STATE_DB: &str = "state-db";

/// How long a write waits for OpenClaw's own writers.
const BUSY_WAIT: Duration = Duration::from_secs(15);

/// The `openclaw` projection kind.
pub struct OpenClaw;

impl ToolFormat for OpenClaw {
    fn kind(&self) -> ProjectionKind {
        ProjectionKind::OpenClaw
    }

    fn default_refresh_margin(&self) -> Duration {
        DEFAULT_MARGIN
    }

    /// The broker writes `expires` from the JWT `exp`, which is what OpenClaw
    /// then judges the token by.
    fn tool_expiry(&self, token: &ServedToken) -> Option<SystemTime> {
        Codex.tool_expiry(token)
    }

    fn identity_of_login(&self, token: &ServedToken) -> Identity {
        Identity {
            account_id: Codex.identity_of_login(token).account_id,
            subject: None,
        }
    }

    fn inspect(&self, file: &Map<String, Value>) -> (Identity, Option<SecretString>) {
        let Some(profile) = file
            .get("profiles")
            .and_then(|p| p.get(PROFILE_ID))
            .and_then(Value::as_object)
        else {
            return (Identity::default(), None);
        };
        let account_id = profile
            .get("accountId")
            .and_then(Value::as_str)
            .map(str::to_string);
        let refresh = profile
            .get("refresh")
            .and_then(Value::as_str)
            .map(|r| SecretString::from(r.to_string()));
        (
            Identity {
                account_id,
                subject: None,
            },
            refresh,
        )
    }

    fn render(
        &self,
        token: &ServedToken,
        mut file: Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        // Codex's rendering checks what a ChatGPT login needs (account id).
        let codex = Codex.render(token, Map::new())?;
        let tokens = codex.get("tokens").cloned().unwrap_or_default();
        let access = tokens
            .get("access_token")
            .cloned()
            .ok_or("the broker holds no access token yet")?;
        let account_id = tokens.get("account_id").cloned().unwrap_or(Value::Null);
        let expires = self
            .tool_expiry(token)
            .and_then(|e| e.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64)
            .ok_or("the access token has no expiry OpenClaw could use")?;

        file.entry("version").or_insert(json!(1));
        let profiles = object_at(&mut file, "profiles");
        let profile = object_at(profiles, PROFILE_ID);
        // Keeps what OpenClaw added (email, plan); replaces the credential,
        // and with it any refresh fence OpenClaw left in its place.
        profile.insert("type".into(), "oauth".into());
        profile.insert("provider".into(), PROVIDER.into());
        profile.insert("access".into(), access);
        profile.insert("refresh".into(), PLACEHOLDER_REFRESH_TOKEN.into());
        profile.insert("expires".into(), expires.into());
        profile.insert("accountId".into(), account_id);
        Ok(file)
    }

    /// Other profiles (API keys, other providers' OAuth logins with rotating
    /// refresh tokens OpenClaw may have spent since) stay as they are now;
    /// only `openai:default` is given back from the backup, or taken out.
    fn give_back(
        &self,
        mut current: Map<String, Value>,
        backup: Option<&Map<String, Value>>,
    ) -> Option<Map<String, Value>> {
        let own = backup
            .and_then(|b| b.get("profiles"))
            .and_then(|p| p.get(PROFILE_ID))
            .cloned();
        let profiles = object_at(&mut current, "profiles");
        match own {
            Some(profile) => profiles.insert(PROFILE_ID.into(), profile),
            None => profiles.remove(PROFILE_ID),
        };
        Some(current)
    }

    fn is_own_file(&self) -> bool {
        false
    }

    fn stamp(&self, path: &Path) -> io::Result<Option<Stamp>> {
        Ok(self.read(path)?.map(|bytes| Stamp::of_contents(&bytes)))
    }

    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        if !path.exists() {
            return Ok(None);
        }
        let db = open(path)?;
        let row: Option<String> = db
            .query_row(
                &format!("SELECT value_json FROM {TABLE} WHERE state_key = ?1"),
                [STATE_KEY],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql_error)?;
        Ok(row.map(String::into_bytes))
    }

    /// Stores the document compactly, as OpenClaw does, in one `IMMEDIATE`
    /// transaction.
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<Stamp> {
        if !path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "OpenClaw's state database does not exist yet: run OpenClaw once (e.g. `openclaw onboard`) so that it creates it, or point `path` at $OPENCLAW_STATE_DIR/state/openclaw.sqlite",
            ));
        }
        let document: Value = serde_json::from_slice(bytes).map_err(io::Error::other)?;
        let compact = document.to_string();
        let mut db = open(path)?;
        let tx = db
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_error)?;
        let ownership: Option<String> = tx
            .query_row(
                &format!("SELECT value_json FROM {TABLE} WHERE state_key = ?1"),
                [OWNERSHIP_KEY],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql_error)?;
        let location = ownership
            .and_then(|json| serde_json::from_str::<Value>(&json).ok())
            .and_then(|v| {
                v.get("location")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        if location.as_deref() != Some(STATE_DB) {
            return Err(io::Error::other(format!(
                "OpenClaw does not read its auth profiles from this database yet ({TABLE} row {OWNERSHIP_KEY} is not {{\"location\":\"{STATE_DB}\"}}; they are still in agents/main/agent/openclaw-agent.sqlite): let OpenClaw move them first (a fresh install does on its first `openclaw models auth …` that saves a profile, e.g. `openclaw models auth login --provider openai`; an existing one with `openclaw doctor --fix`), then the broker writes here"
            )));
        }
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        tx.execute(
            &format!(
                "INSERT INTO {TABLE} (state_key, value_json, updated_at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(state_key) DO UPDATE SET value_json = excluded.value_json, updated_at_ms = excluded.updated_at_ms"
            ),
            rusqlite::params![STATE_KEY, compact, now_ms],
        )
        .map_err(sql_error)?;
        tx.commit().map_err(sql_error)?;
        Ok(Stamp::of_contents(compact.as_bytes()))
    }

    /// Never called (this format gives back in part); deletes the row.
    fn remove(&self, path: &Path) -> io::Result<()> {
        if !path.exists() {
            return Ok(());
        }
        open(path)?
            .execute(
                &format!("DELETE FROM {TABLE} WHERE state_key = ?1"),
                [STATE_KEY],
            )
            .map_err(sql_error)?;
        Ok(())
    }
}

/// Opens OpenClaw's existing database for reading and writing (never
/// creating it), waiting up to [`BUSY_WAIT`] for its writers.
fn open(path: &Path) -> io::Result<Connection> {
    let db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_error)?;
    db.busy_timeout(BUSY_WAIT).map_err(sql_error)?;
    Ok(db)
}

/// SQLite errors name the table or the cause, never a value.
fn sql_error(e: rusqlite::Error) -> io::Error {
    io::Error::other(format!("SQLite: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Credentials;
    use crate::projection::file;
    use crate::projection::target::{Synced, Target};
    use base64::Engine;
    use oauth_broker_proto::{ExposeSecret, RestoreOutcome};

    fn jwt(payload: Value) -> String {
        let enc = |v: Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        format!("{}.{}.c2ln", enc(json!({"alg": "none"})), enc(payload))
    }

    fn creds(jti: &str, account: &str) -> ServedToken {
        let auth = json!({"chatgpt_account_id": account});
        ServedToken::new(&Credentials {
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
            account_id: Some(account.into()),
            metadata: Default::default(),
            refresh_hint_at: None,
        })
        .unwrap()
    }

    fn access(c: &ServedToken) -> String {
        c.access_token().expose_secret().to_string()
    }

    /// A store as OpenClaw writes it: an Anthropic token profile and its own
    /// ChatGPT login.
    fn store(own_refresh: &str) -> Value {
        json!({"version": 1, "profiles": {
            "anthropic:manual": {"type": "token", "provider": "anthropic", "token": "sk-ant-oat01-x", "expires": 1_796_226_977_359u64},
            "openai:default": {"type": "oauth", "provider": "openai", "access": "old-at", "refresh": own_refresh,
                "expires": 1_700_000_000_000u64, "accountId": "acct-1", "email": "u@example.com"}
        }})
    }

    /// An OpenClaw-like database: its table, and the store row if given.
    fn database(dir: &Path, document: Option<&Value>) -> std::path::PathBuf {
        let path = dir.join("openclaw.sqlite");
        let db = Connection::open(&path).unwrap();
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE config_machine_state (state_key TEXT NOT NULL PRIMARY KEY, value_json TEXT NOT NULL, updated_at_ms INTEGER NOT NULL) STRICT;
             INSERT INTO config_machine_state VALUES ('config.lastTouchedAt', '\"x\"', 1);
             INSERT INTO config_machine_state VALUES ('auth.sharedStore', '{\"location\":\"state-db\"}', 1);",
        )
        .unwrap();
        if let Some(document) = document {
            db.execute(
                "INSERT INTO config_machine_state VALUES ('authProfiles.store', ?1, 1)",
                [document.to_string()],
            )
            .unwrap();
        }
        path
    }

    fn row(path: &Path) -> Value {
        serde_json::from_slice(&OpenClaw.read(path).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn renders_the_openai_profile_and_keeps_every_other_profile_and_key() {
        let c = creds("a", "acct-1");
        let Value::Object(file) = store("openclaw-own-rt") else {
            unreachable!()
        };
        let file = OpenClaw.render(&c, file).unwrap();
        let p = &file["profiles"]["openai:default"];
        assert_eq!(p["type"], "oauth");
        assert_eq!(p["provider"], "openai");
        assert_eq!(p["access"], access(&c));
        assert_eq!(p["refresh"], PLACEHOLDER_REFRESH_TOKEN);
        assert_eq!(p["expires"], 1_700_003_600_000u64);
        assert_eq!(p["accountId"], "acct-1");
        assert_eq!(p["email"], "u@example.com");
        assert_eq!(
            file["profiles"]["anthropic:manual"]["token"],
            "sk-ant-oat01-x"
        );
        assert_eq!(file["version"], 1);
        assert!(!Value::Object(file).to_string().contains("rt-secret-42"));
        // A new store gets the profile alone.
        let fresh = OpenClaw.render(&c, Map::new()).unwrap();
        assert_eq!(fresh["version"], 1);
        assert_eq!(
            fresh["profiles"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            [PROFILE_ID]
        );
    }

    #[test]
    fn inspect_reads_the_account_and_refresh_token_of_the_profile() {
        let Value::Object(file) = store("openclaw-own-rt") else {
            unreachable!()
        };
        let (identity, refresh) = OpenClaw.inspect(&file);
        assert_eq!(identity.account_id.as_deref(), Some("acct-1"));
        assert_eq!(refresh.unwrap().expose_secret(), "openclaw-own-rt");
        assert_eq!(OpenClaw.inspect(&Map::new()).1.map(|_| ()), None);
    }

    #[test]
    fn writes_the_row_in_place_backs_up_once_and_gives_back_only_its_profile() {
        let tmp = tempfile::tempdir().unwrap();
        let path = database(tmp.path(), Some(&store("openclaw-own-rt")));
        let t = Target::new(Box::new(OpenClaw), path.clone(), None);
        let now = SystemTime::now();
        let first = creds("a", "acct-1");
        assert_eq!(t.sync(&first, now).unwrap(), Synced::Written);
        assert_eq!(t.sync(&first, now).unwrap(), Synced::UpToDate);
        let doc = row(&path);
        assert_eq!(doc["profiles"]["openai:default"]["access"], access(&first));
        assert_eq!(
            doc["profiles"]["anthropic:manual"]["token"],
            "sk-ant-oat01-x"
        );
        // The other rows are untouched.
        let db = Connection::open(&path).unwrap();
        let other: String = db
            .query_row(
                "SELECT value_json FROM config_machine_state WHERE state_key = 'config.lastTouchedAt'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(other, "\"x\"");
        let backup = std::fs::read_to_string(file::backup_path(&path)).unwrap();
        assert!(backup.contains("openclaw-own-rt"));

        // OpenClaw rewrites the row (a refresh fence, another profile added):
        // the broker notices and writes again, keeping the new profile.
        let mut changed = row(&path);
        changed["profiles"]["openai:default"]["access"] =
            "openclaw-oauth-refresh-fence:v1:x".into();
        changed["profiles"]["xai:default"] =
            json!({"type": "api_key", "provider": "xai", "key": "k"});
        OpenClaw
            .write(&path, changed.to_string().as_bytes())
            .unwrap();
        assert_eq!(t.sync(&first, now).unwrap(), Synced::Written);
        let doc = row(&path);
        assert_eq!(doc["profiles"]["openai:default"]["access"], access(&first));
        assert_eq!(doc["profiles"]["xai:default"]["key"], "k");
        let second = creds("b", "acct-1");
        assert_eq!(t.sync(&second, now).unwrap(), Synced::Written);
        // The backup still holds OpenClaw's own login.
        assert!(std::fs::read_to_string(file::backup_path(&path))
            .unwrap()
            .contains("openclaw-own-rt"));

        let done = t.restore(Some(second.refresh_token_id.as_str())).unwrap();
        assert_eq!(done.outcome, RestoreOutcome::BackupRestored);
        let doc = row(&path);
        assert_eq!(
            doc["profiles"]["openai:default"]["refresh"],
            "openclaw-own-rt"
        );
        assert_eq!(doc["profiles"]["xai:default"]["key"], "k");
        assert!(!file::backup_path(&path).exists());
    }

    #[test]
    fn refuses_another_accounts_profile_a_legacy_store_and_a_missing_database() {
        let tmp = tempfile::tempdir().unwrap();
        let path = database(tmp.path(), Some(&store("openclaw-own-rt")));
        let t = Target::new(Box::new(OpenClaw), path.clone(), None);
        let now = SystemTime::now();
        let err = t.sync(&creds("a", "acct-other"), now).unwrap_err();
        assert!(
            err.contains("acct-1") && err.contains("acct-other"),
            "{err}"
        );
        assert_eq!(row(&path)["profiles"]["openai:default"]["access"], "old-at");

        // A database whose shared store is still the legacy one.
        Connection::open(&path)
            .unwrap()
            .execute(
                "DELETE FROM config_machine_state WHERE state_key = 'auth.sharedStore'",
                [],
            )
            .unwrap();
        let t = Target::new(Box::new(OpenClaw), path.clone(), None);
        let err = t.sync(&creds("a", "acct-1"), now).unwrap_err();
        assert!(
            err.contains("auth.sharedStore") && err.contains("openclaw-agent.sqlite"),
            "{err}"
        );
        assert_eq!(row(&path)["profiles"]["openai:default"]["access"], "old-at");

        let missing = tmp.path().join("nowhere/openclaw.sqlite");
        let t = Target::new(Box::new(OpenClaw), missing.clone(), None);
        let err = t.sync(&creds("a", "acct-1"), now).unwrap_err();
        assert!(err.contains("run OpenClaw once"), "{err}");
        assert!(!missing.exists());
    }

    #[test]
    fn restore_without_backup_takes_only_the_brokers_profile_out() {
        let tmp = tempfile::tempdir().unwrap();
        let path = database(tmp.path(), None);
        let t = Target::new(Box::new(OpenClaw), path.clone(), None);
        let c = creds("a", "acct-1");
        t.sync(&c, SystemTime::now()).unwrap();
        assert!(!file::backup_path(&path).exists());
        let done = t.restore(Some(c.refresh_token_id.as_str())).unwrap();
        assert_eq!(done.outcome, RestoreOutcome::Removed);
        let doc = row(&path);
        assert!(doc["profiles"].as_object().unwrap().is_empty());
        assert!(path.exists());
    }
}
