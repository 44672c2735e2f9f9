//! Durable state of one account: `state.json` and a `lock` file in a 0700 dir.
//!
//! Writes are atomic and durable: a temp file in the same directory created with
//! mode 0600 (never briefly readable by others), written, fsynced, renamed over the
//! old file, and the directory fsynced so the rename itself survives a power cut.
//! A crash at any point leaves either the old or the new file, never a torn one.
//!
//! `flock(LOCK_EX|LOCK_NB)` on `lock` makes the broker the only one for the
//! account; the holder's pid is written into the lock file so a second broker
//! can say who holds it. Only the token manager calls this module.

use crate::clock::{from_unix_secs, unix_secs};
use crate::credentials::Credentials;
use nix::fcntl::{Flock, FlockArg};
use oauth_broker_proto::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Current state file format.
pub const STATE_VERSION: u32 = 1;

const STATE_FILE: &str = "state.json";
const TEMP_FILE: &str = ".state.json.tmp";
const LOCK_FILE: &str = "lock";

/// Why the store cannot be used. Messages name the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another broker holds the account.
    #[error("another brokerd (pid {pid}) already serves this account (lock {path}); stop it first, e.g. `kill {pid}` or `systemctl --user stop oauth-broker`")]
    Locked {
        /// The holder's pid, or `unknown`.
        pid: String,
        /// The lock file.
        path: PathBuf,
    },
    /// Permissions are too open.
    #[error("{path} is accessible by group or others (mode {mode:o}); run `chmod {want:o} {path}` and start again")]
    Permissions {
        /// Offending path.
        path: PathBuf,
        /// Its mode.
        mode: u32,
        /// The mode to set.
        want: u32,
    },
    /// Owned by another user.
    #[error("{path} belongs to uid {owner}, not to this user (uid {me}); use a state directory of your own (--state-dir)")]
    Owner {
        /// Offending path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our uid.
        me: u32,
    },
    /// The state file does not parse.
    #[error("state file {path} is unreadable ({why}); it was left untouched: move it aside and run `brokerctl relogin` (or restore a backup)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Parser message (no secrets: serde_json does not echo string values).
        why: String,
    },
    /// Any other I/O failure.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The persisted form of [`Credentials`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistedCredentials {
    #[serde(default, serialize_with = "ser_opt_secret")]
    access_token: Option<SecretString>,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    obtained_at: u64,
    #[serde(serialize_with = "ser_secret")]
    refresh_token: SecretString,
    #[serde(default, serialize_with = "ser_opt_secret")]
    id_token: Option<SecretString>,
    #[serde(default = "bearer")]
    token_type: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    refresh_hint_at: Option<u64>,
    /// The boot in which `obtained_boot_ms` was read
    /// (`/proc/sys/kernel/random/boot_id`): a restart within the same boot
    /// keeps counting the lifetime on boottime; after a reboot only the wall
    /// clock is known. Absent in files written before this existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot_id: Option<String>,
    /// `CLOCK_BOOTTIME` in milliseconds when the access token was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    obtained_boot_ms: Option<u64>,
}

fn bearer() -> String {
    "Bearer".to_string()
}

fn ser_secret<S: serde::Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose_secret())
}

fn ser_opt_secret<S: serde::Serializer>(
    s: &Option<SecretString>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(s.expose_secret()),
        None => ser.serialize_none(),
    }
}

impl From<&Credentials> for PersistedCredentials {
    fn from(c: &Credentials) -> Self {
        PersistedCredentials {
            access_token: c.access_token.clone(),
            expires_at: c.expires_at.map(unix_secs),
            obtained_at: unix_secs(c.obtained_at),
            refresh_token: c.refresh_token.clone(),
            id_token: c.id_token.clone(),
            token_type: c.token_type.clone(),
            scopes: c.scopes.clone(),
            account_id: c.account_id.clone(),
            metadata: c.metadata.clone(),
            refresh_hint_at: c.refresh_hint_at.map(unix_secs),
            boot_id: c
                .obtained_boot
                .and(crate::clock::boot_id())
                .map(str::to_string),
            obtained_boot_ms: c
                .obtained_boot
                .filter(|_| crate::clock::boot_id().is_some())
                .map(|b| b.as_millis().min(u64::MAX as u128) as u64),
        }
    }
}

impl From<PersistedCredentials> for Credentials {
    fn from(p: PersistedCredentials) -> Self {
        Credentials {
            access_token: p.access_token,
            expires_at: p.expires_at.map(from_unix_secs),
            obtained_at: from_unix_secs(p.obtained_at),
            // Only a reading from this very boot means anything now.
            obtained_boot: p
                .obtained_boot_ms
                .filter(|_| p.boot_id.is_some() && p.boot_id.as_deref() == crate::clock::boot_id())
                .map(Duration::from_millis),
            refresh_token: p.refresh_token,
            id_token: p.id_token,
            token_type: p.token_type,
            scopes: p.scopes,
            account_id: p.account_id,
            metadata: p.metadata,
            refresh_hint_at: p.refresh_hint_at.map(from_unix_secs),
        }
    }
}

/// Written before a refresh request is sent and cleared with its result: after a
/// crash it tells "the server may have rotated the token".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlightMarker {
    /// When the refresh started, unix seconds.
    pub started_at: u64,
    /// Fingerprint of the refresh token being spent.
    pub refresh_token_id: String,
}

/// Why a relogin is required, persisted so that a restart does not retry a dead
/// refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloginRecord {
    /// Provider or broker reason code.
    pub reason: String,
    /// One line for humans.
    pub message: String,
}

/// The whole state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistedState {
    /// Format version.
    pub version: u32,
    /// Account name.
    pub account: String,
    /// The login, if any.
    #[serde(default)]
    pub credentials: Option<PersistedCredentials>,
    /// Set while a refresh is in flight.
    #[serde(default)]
    pub refresh_in_flight: Option<InFlightMarker>,
    /// Set when only a new login helps.
    #[serde(default)]
    pub relogin: Option<ReloginRecord>,
    /// Successful refreshes so far.
    #[serde(default)]
    pub refresh_count: u64,
    /// Last successful refresh, unix seconds.
    #[serde(default)]
    pub last_refresh_at: Option<u64>,
    /// Fingerprints of the most recent refresh tokens the broker has spent, so
    /// that importing one of them again (an old copy of the tokens) is refused
    /// instead of adopted and replayed — which would revoke the whole family.
    #[serde(default)]
    pub spent_refresh_tokens: Vec<String>,
}

impl PersistedState {
    /// Empty state for `account`.
    pub fn empty(account: &str) -> Self {
        PersistedState {
            version: STATE_VERSION,
            account: account.to_string(),
            credentials: None,
            refresh_in_flight: None,
            relogin: None,
            refresh_count: 0,
            last_refresh_at: None,
            spent_refresh_tokens: Vec::new(),
        }
    }

    /// The credentials in memory form.
    pub fn credentials(&self) -> Option<Credentials> {
        self.credentials.clone().map(Credentials::from)
    }

    /// `last_refresh_at` as a time.
    pub fn last_refresh_time(&self) -> Option<SystemTime> {
        self.last_refresh_at.map(from_unix_secs)
    }
}

/// Test-only fault injection for the disk-trouble tests: when the environment
/// variable `OAUTH_BROKER_FAULT_STORE` names an existing file, every save fails
/// as if the disk were full, until the file is removed. Without the variable
/// (the normal case) this is a single `env::var_os` per save.
fn injected_fault() -> Option<std::io::Error> {
    let path = std::env::var_os("OAUTH_BROKER_FAULT_STORE")?;
    Path::new(&path)
        .exists()
        .then(|| std::io::Error::from_raw_os_error(nix::libc::ENOSPC))
}

/// The account's state directory, locked for this process.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl Store {
    /// Creates (0700) or checks the directory, takes the lock and records our pid.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        if !dir.exists() {
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent).map_err(io("cannot create directory", parent))?;
            }
            fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(io("cannot create state directory", dir))?;
        }
        check_private(dir, 0o700)?;

        let lock_path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io("cannot open lock file", &lock_path))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(StoreError::Locked {
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.to_string()
                    },
                    path: lock_path,
                });
            }
            Err((_, errno)) => {
                return Err(StoreError::Io {
                    what: "cannot lock",
                    path: lock_path,
                    source: errno.into(),
                })
            }
        };
        lock.set_len(0)
            .map_err(io("cannot write lock file", &lock_path))?;
        lock.rewind()
            .map_err(io("cannot write lock file", &lock_path))?;
        writeln!(&mut *lock, "{}", std::process::id())
            .map_err(io("cannot write lock file", &lock_path))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the state file.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Reads the state file; `None` when there is none yet.
    pub fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        let path = self.state_path();
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot read state file", &path)(e)),
        };
        check_private_file(&file, &path)?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(io("cannot read state file", &path))?;
        let state: PersistedState =
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                why: format!(
                    "line {} column {}: {}",
                    e.line(),
                    e.column(),
                    classify_json_error(&e)
                ),
            })?;
        if state.version > STATE_VERSION {
            return Err(StoreError::Corrupt {
                path,
                why: format!(
                    "format version {} is newer than this brokerd understands ({STATE_VERSION}); upgrade oauth-broker",
                    state.version
                ),
            });
        }
        Ok(Some(state))
    }

    /// Atomically and durably replaces the state file.
    pub fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
        let path = self.state_path();
        let tmp = self.dir.join(TEMP_FILE);
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Io {
            what: "cannot serialize state for",
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if let Some(e) = injected_fault() {
            return Err(io("cannot write state file", &tmp)(e));
        }
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            // An old temp file may have been created with other permissions.
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io("cannot write state file", &path)(e)
        })
    }

    /// Deletes the state file (logout).
    pub fn delete(&self) -> Result<(), StoreError> {
        let path = self.state_path();
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot delete state file", &path)(e)),
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("cannot sync directory", &self.dir))
    }
}

/// serde_json's messages never quote string values, but keep only the category.
fn classify_json_error(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "unexpected content",
        serde_json::error::Category::Eof => "truncated",
    }
}

fn check_private(path: &Path, want: u32) -> Result<(), StoreError> {
    let meta = fs::metadata(path).map_err(io("cannot inspect", path))?;
    check_meta(&meta, path, want)
}

fn check_private_file(file: &File, path: &Path) -> Result<(), StoreError> {
    let meta = file.metadata().map_err(io("cannot inspect", path))?;
    check_meta(&meta, path, 0o600)
}

fn check_meta(meta: &fs::Metadata, path: &Path, want: u32) -> Result<(), StoreError> {
    let me = nix::unistd::getuid().as_raw();
    if meta.uid() != me {
        return Err(StoreError::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::Permissions {
            path: path.to_path_buf(),
            mode,
            want,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn creds() -> Credentials {
        Credentials {
            access_token: Some("at-secret".to_string().into()),
            expires_at: Some(SystemTime::now() + Duration::from_secs(60)),
            obtained_at: SystemTime::now(),
            obtained_boot: None,
            refresh_token: "rt-secret".to_string().into(),
            id_token: None,
            token_type: "Bearer".into(),
            scopes: vec!["openid".into()],
            account_id: None,
            metadata: Default::default(),
            refresh_hint_at: None,
        }
    }

    #[test]
    fn round_trip_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("acct");
        let store = Store::open(&dir).unwrap();
        assert!(store.load().unwrap().is_none());
        let mut state = PersistedState::empty("acct");
        state.credentials = Some((&creds()).into());
        store.save(&state).unwrap();
        let mode = fs::metadata(store.state_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let loaded = store.load().unwrap().unwrap().credentials().unwrap();
        assert_eq!(loaded.refresh_token.expose_secret(), "rt-secret");
    }

    #[test]
    fn the_boottime_anchor_survives_a_restart_in_the_same_boot_only() {
        let mut c = creds();
        c.obtained_boot = Some(Duration::from_millis(123_456));
        let mut persisted: PersistedCredentials = (&c).into();
        if crate::clock::boot_id().is_some() {
            let back: Credentials = persisted.clone().into();
            assert_eq!(back.obtained_boot, Some(Duration::from_millis(123_456)));
        }
        // After a reboot (another boot id) only the wall clock is known.
        persisted.boot_id = Some("another-boot".into());
        persisted.obtained_boot_ms = Some(123_456);
        assert_eq!(Credentials::from(persisted).obtained_boot, None);
        // Files written before the anchor existed still load.
        let old: PersistedCredentials = serde_json::from_str(
            r#"{"access_token":"a","expires_at":1700000600,"obtained_at":1700000000,"refresh_token":"r"}"#,
        )
        .unwrap();
        let old = Credentials::from(old);
        assert_eq!(old.obtained_boot, None);
        assert_eq!(old.lifetime(), Duration::from_secs(600));
    }

    #[test]
    fn second_open_names_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = Store::open(tmp.path().join("a").as_path()).unwrap();
        let err = Store::open(tmp.path().join("a").as_path()).unwrap_err();
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
    }

    #[test]
    fn group_readable_state_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        let store = Store::open(&dir).unwrap();
        store.save(&PersistedState::empty("a")).unwrap();
        fs::set_permissions(store.state_path(), fs::Permissions::from_mode(0o640)).unwrap();
        let err = store.load().unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn corrupt_state_is_reported_without_content() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("a")).unwrap();
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(store.state_path())
            .unwrap();
        file.write_all(br#"{"version":1,"account":"a","credentials":{"refresh_token":"rt-sec"#)
            .unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("unreadable"), "{err}");
        assert!(!err.contains("rt-sec"), "{err}");
    }
}
