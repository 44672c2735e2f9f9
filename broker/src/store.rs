//! Durable state of one account: `state.journal` and a `lock` file in a 0700
//! dir.
//!
//! The state is written as a record appended to the journal and made durable
//! with `fdatasync` ([`crate::journal`]), and compacted now and then by the
//! [`crate::durable`] temp-file-and-rename steps: a crash at any point leaves
//! the newest complete record, never a torn state, and the files are 0600 from
//! their first byte. With `[state] writes = "replace"` every save replaces
//! `state.json` by those steps instead (the format of earlier versions).
//!
//! Either format is read, and converted at start to the configured one: a
//! `state.json` of an earlier version becomes the journal's first record
//! (then `state.json` is removed), and the other way round. When both exist
//! the journal wins: it is only ever written from the newer state.
//!
//! `flock(LOCK_EX|LOCK_NB)` on `lock` makes the broker the only one for the
//! account; the holder's pid is written into the lock file so a second broker
//! can say who holds it. Only the token manager calls this module.
//!
//! One refresh token, one writer: a state file reached through a symlink, one
//! that names another account, or one whose refresh token another account's
//! state on this machine holds (or already spent) is refused — two brokers
//! spending one token family make the provider revoke it.

use crate::capped_read::{describe_cap, read_capped};
use crate::clock::{from_unix_secs, unix_secs};
use crate::credentials::Credentials;
use crate::durable;
use crate::journal;
use nix::fcntl::{Flock, FlockArg};
use oauth_broker_proto::{token_fingerprint, ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Current state file format.
pub const STATE_VERSION: u32 = 1;

const STATE_FILE: &str = "state.json";
const JOURNAL_FILE: &str = "state.journal";
const LOCK_FILE: &str = "lock";

/// A journal holds at most a few hundred records of at most
/// [`MAX_STATE_BYTES`]; anything larger is not one of ours.
pub const MAX_JOURNAL_BYTES: u64 = 32 << 20;

/// A state file is a few KiB (tokens plus a bounded list of fingerprints).
pub const MAX_STATE_BYTES: u64 = 1 << 20;

/// At most this many entries of the state root are looked at when searching
/// other accounts for a refresh token (the scan must stay cheap).
const MAX_SIBLINGS: usize = 256;

/// How long a second broker waits for the lock holder to write its pid (the
/// holder writes it right after taking the lock).
const PID_WAIT: Duration = Duration::from_millis(500);

/// Why the store cannot be used. Messages name the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another broker holds the account.
    #[error("{}", locked_message(*pid, path))]
    Locked {
        /// The holder's pid, if it could be read.
        pid: Option<u32>,
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
    /// The state directory path is taken by something else.
    #[error("state directory {path} exists but is not a directory; move it aside (`mv {path} {path}.old`) or pass --state-dir DIR")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A state or lock file that is a symlink (or not a regular file).
    #[error("{path} is {what}, not a file of this broker's own; {fix}")]
    NotOwnFile {
        /// The path.
        path: PathBuf,
        /// "a symbolic link", "not a regular file".
        what: &'static str,
        /// How to fix it.
        fix: String,
    },
    /// The state file belongs to another account.
    #[error("state file {path} belongs to account {found:?}, not to {expected:?}; it was left untouched: move it back to account {found:?}'s state directory (or aside) and run `{}`", relogin_command(expected))]
    WrongAccount {
        /// The file.
        path: PathBuf,
        /// The account named in it.
        found: String,
        /// This broker's account.
        expected: String,
    },
    /// Another account's state holds (or spent) the same refresh token.
    #[error("the refresh token in {path} is {holder}; two brokers must never spend one refresh token (the provider would revoke the login): move {path} aside and run `{}` to give account {account:?} a login of its own", relogin_command(account))]
    HeldElsewhere {
        /// Our state file.
        path: PathBuf,
        /// This broker's account.
        account: String,
        /// Who else holds it.
        holder: OtherHolder,
    },
    /// The state file does not parse.
    #[error("state file {path} is unreadable ({why}); it was left untouched: move it aside and run `brokerctl relogin`")]
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

fn locked_message(pid: Option<u32>, path: &Path) -> String {
    let path = path.display();
    match pid {
        Some(pid) => format!("another brokerd (pid {pid}) already serves this account (lock {path}); stop it first, e.g. `kill {pid}` or `systemctl --user stop oauth-broker`"),
        None => format!("another brokerd already serves this account (lock {path}; it has not written its pid yet); stop it first, e.g. `fuser -k {path}` or `systemctl --user stop oauth-broker`"),
    }
}

/// `brokerctl relogin` for `account` (with `--account` unless it is the default).
fn relogin_command(account: &str) -> String {
    if account == crate::paths::DEFAULT_ACCOUNT {
        "brokerctl relogin".to_string()
    } else {
        format!("brokerctl --account {account} relogin")
    }
}

/// Another account's state on this machine that holds (or already spent) a
/// refresh token. Shows the account and the file, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherHolder {
    /// The other account (its state directory's name).
    pub account: String,
    /// Its state file.
    pub path: PathBuf,
    /// True when the other account already spent the token (it holds a newer
    /// one); false when it holds it now.
    pub spent: bool,
}

impl std::fmt::Display for OtherHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.spent {
            "already spent by"
        } else {
            "also held by"
        };
        write!(
            f,
            "{verb} account {:?} ({})",
            self.account,
            self.path.display()
        )
    }
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
    /// Unix milliseconds by which the request has certainly ended (sent plus
    /// the HTTP timeout): until then a restarted broker must not spend the
    /// token again, or the old request, still held by the server, would be
    /// processed as a reuse. Absent in markers of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_deadline_ms: Option<u64>,
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

/// Test-only fault injection for the disk-trouble tests (compiled only with the
/// `test-hooks` feature, which the test suite turns on and release builds do
/// not): when the environment variable `OAUTH_BROKER_FAULT_STORE` names an
/// existing file, every save fails as if the disk were full, until the file is
/// removed.
#[cfg(feature = "test-hooks")]
fn injected_fault() -> Option<std::io::Error> {
    let path = std::env::var_os("OAUTH_BROKER_FAULT_STORE")?;
    Path::new(&path)
        .exists()
        .then(|| std::io::Error::from_raw_os_error(nix::libc::ENOSPC))
}

#[cfg(not(feature = "test-hooks"))]
fn injected_fault() -> Option<std::io::Error> {
    None
}

/// Opens an existing file of the store without following a symlink and
/// without blocking on a FIFO; `None` when it does not exist.
fn open_own_file(
    path: &Path,
    options: &mut OpenOptions,
    what: &'static str,
) -> Result<Option<File>, StoreError> {
    let file = match options
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(StoreError::NotOwnFile {
                path: path.to_path_buf(),
                what: "a symbolic link",
                fix: format!(
                    "the broker never follows links here (another broker may be spending the same refresh token): remove it (`rm {}`) and start again",
                    path.display()
                ),
            })
        }
        Err(e) => return Err(io(what, path)(e)),
    };
    let meta = file.metadata().map_err(io("cannot inspect", path))?;
    if !meta.is_file() {
        return Err(StoreError::NotOwnFile {
            path: path.to_path_buf(),
            what: "not a regular file",
            fix: format!(
                "move it aside (`mv {} {}.old`) and start again",
                path.display(),
                path.display()
            ),
        });
    }
    Ok(Some(file))
}

/// How saves are written (`[state] writes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateWrites {
    /// A record appended to `state.journal`, made durable with `fdatasync`
    /// (see [`crate::journal`]).
    #[default]
    Journal,
    /// `state.json` replaced through a temp file, `fsync`, rename and
    /// directory `fsync`: the format of earlier versions.
    Replace,
}

/// Where the next save goes.
#[derive(Debug)]
struct Cursor {
    /// The format written in this run: the configured one, unless converting
    /// to it failed at start (then the one found stays).
    writes: StateWrites,
    /// The journal as this process last wrote or read it; `None` when there
    /// is none, or when a failed compaction left it unknown (the next save
    /// then writes a new one).
    journal: Option<journal::Scan>,
    /// A `state.json` is left to remove once the journal holds the state.
    legacy: bool,
}

/// The account's state directory, locked for this process.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    account: String,
    cursor: std::sync::Mutex<Cursor>,
    _lock: Flock<File>,
}

impl Store {
    /// [`Store::open_with`] writing the journal.
    pub fn open(dir: &Path, account: &str) -> Result<Store, StoreError> {
        Store::open_with(dir, account, StateWrites::Journal)
    }

    /// Creates (0700) or checks the directory of `account`, takes the lock and
    /// records our pid. Saves are written as `writes` says once [`load`]
    /// (which converts the files found) has run.
    ///
    /// [`load`]: Store::load
    pub fn open_with(dir: &Path, account: &str, writes: StateWrites) -> Result<Store, StoreError> {
        match fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => {
                return Err(StoreError::NotADirectory {
                    path: dir.to_path_buf(),
                })
            }
            Ok(_) => {}
            Err(_) => create_private_dir(dir)?,
        }
        check_private(dir, 0o700)?;

        let lock_path = dir.join(LOCK_FILE);
        let file = open_own_file(
            &lock_path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600),
            "cannot open lock file",
        )?
        .ok_or_else(|| {
            io("cannot open lock file", &lock_path)(std::io::ErrorKind::NotFound.into())
        })?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                return Err(StoreError::Locked {
                    pid: holder_pid(&lock_path, PID_WAIT),
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
        // One write of the whole line after truncating: a reader sees either
        // nothing or the complete pid (and waits for it, see `holder_pid`).
        let line = format!("{}\n", std::process::id());
        lock.set_len(0)
            .and_then(|()| lock.rewind())
            .and_then(|_| lock.write_all(line.as_bytes()))
            .map_err(io("cannot write lock file", &lock_path))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            account: account.to_string(),
            cursor: std::sync::Mutex::new(Cursor {
                writes,
                journal: None,
                legacy: false,
            }),
            _lock: lock,
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the state file of earlier versions (and of `writes =
    /// "replace"`).
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Path of the state journal.
    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    fn cursor(&self) -> std::sync::MutexGuard<'_, Cursor> {
        self.cursor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the state (the journal's newest intact record, else
    /// `state.json`); `None` when there is none yet. Refuses a file that is a
    /// symlink, belongs to another account, or whose refresh token another
    /// account's state on this machine holds or spent. Then converts the
    /// files to the configured format, where the disk allows it (otherwise
    /// this run keeps writing the format found).
    pub fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        let journal_path = self.journal_path();
        let legacy_path = self.state_path();
        let from_journal = read_journal(&journal_path)?;
        let legacy = fs::symlink_metadata(&legacy_path).is_ok();
        let (state, path, scan) = match from_journal {
            Some((scan, state)) => {
                if scan.torn {
                    tracing::warn!(path = %journal_path.display(), "the state journal ends in an incomplete record (a write interrupted by a crash); it is ignored and the newest complete one used");
                }
                (state, journal_path, Some(scan))
            }
            None => match read_state_json(&legacy_path)? {
                Some(state) => (state, legacy_path, None),
                None => {
                    let mut cursor = self.cursor();
                    cursor.journal = None;
                    cursor.legacy = false;
                    return Ok(None);
                }
            },
        };
        if state.account != self.account {
            return Err(StoreError::WrongAccount {
                path,
                found: state.account,
                expected: self.account.clone(),
            });
        }
        if let Some(creds) = &state.credentials {
            if let Some(holder) = self.other_holder(&token_fingerprint(&creds.refresh_token)) {
                return Err(StoreError::HeldElsewhere {
                    path,
                    account: self.account.clone(),
                    holder,
                });
            }
        }
        let mut cursor = self.cursor();
        cursor.legacy = legacy;
        cursor.journal = scan;
        self.convert(&mut cursor, &state);
        Ok(Some(state))
    }

    /// Brings the files found at start into the configured format.
    fn convert(&self, cursor: &mut Cursor, state: &PersistedState) {
        match cursor.writes {
            StateWrites::Journal if cursor.journal.is_none() => {
                // An earlier version's state.json: it becomes the journal's
                // first record, then it is removed.
                match self.compact(cursor, state) {
                    Ok(()) => {
                        tracing::info!(path = %self.journal_path().display(), "state.json of an earlier version converted to the state journal")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot convert state.json to the state journal yet; it is kept, and the next state write tries again")
                    }
                }
            }
            StateWrites::Journal => {
                if cursor.legacy {
                    // Left by a conversion interrupted before its end.
                    self.remove_legacy(cursor);
                }
            }
            StateWrites::Replace if cursor.journal.is_some() => {
                // The journal would win over state.json at the next start:
                // it must be gone before state.json is written anew.
                let converted = self
                    .replace_state_json(state)
                    .and_then(|()| remove_and_sync(&self.journal_path(), &self.dir));
                match converted {
                    Ok(()) => {
                        tracing::info!(path = %self.state_path().display(), "state journal converted to state.json (writes = \"replace\")");
                        cursor.journal = None;
                        cursor.legacy = true;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot convert the state journal to state.json; this run keeps writing the journal");
                        cursor.writes = StateWrites::Journal;
                    }
                }
            }
            StateWrites::Replace => {}
        }
    }

    /// Another account whose state, next to ours, holds or already spent the
    /// refresh token with fingerprint `refresh_token_id` (see
    /// [`Credentials::refresh_token_id`]). Looks only at the first
    /// [`MAX_SIBLINGS`] entries of the state root, only at directories and
    /// files of this user, reads at most [`MAX_STATE_BYTES`] per file, and
    /// ignores what it cannot read: a best-effort guard, never a reason to stop.
    pub fn other_holder(&self, refresh_token_id: &str) -> Option<OtherHolder> {
        let root = self.dir.parent()?;
        let own = fs::metadata(&self.dir).ok()?;
        let me = nix::unistd::getuid().as_raw();
        fs::read_dir(root)
            .ok()?
            .take(MAX_SIBLINGS)
            .filter_map(Result::ok)
            .find_map(|entry| {
                let meta = fs::symlink_metadata(entry.path()).ok()?;
                let sibling = meta.is_dir()
                    && meta.uid() == me
                    && (meta.dev(), meta.ino()) != (own.dev(), own.ino());
                if !sibling {
                    return None;
                }
                let (path, view) = read_sibling(&entry.path(), me)?;
                let held = view
                    .credentials
                    .is_some_and(|c| token_fingerprint(&c.refresh_token) == refresh_token_id);
                let spent = view
                    .spent_refresh_tokens
                    .iter()
                    .any(|id| id == refresh_token_id);
                (held || spent).then(|| OtherHolder {
                    account: entry.file_name().to_string_lossy().into_owned(),
                    path,
                    spent: !held,
                })
            })
    }

    /// Writes the whole state durably: a record appended to the journal
    /// (compacting it first when it is full), or `state.json` replaced.
    pub fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
        let mut cursor = self.cursor();
        if cursor.writes == StateWrites::Replace {
            if let Some(e) = injected_fault() {
                let path = self.state_path();
                let tmp = durable::temp_path(&path).unwrap_or(path);
                return Err(io("cannot write state file", &tmp)(e));
            }
            return self.replace_state_json(state);
        }
        let path = self.journal_path();
        if let Some(e) = injected_fault() {
            return Err(io("cannot write state journal", &path)(e));
        }
        let payload = serialize(state, &path)?;
        if let Some(scan) = cursor.journal.as_mut() {
            let record = journal::encode(scan.seq + 1, &payload)
                .map_err(io("cannot write state journal", &path))?;
            if scan.end + record.len() as u64 <= scan.capacity {
                journal::append(&path, scan.end, &record)
                    .map_err(io("cannot write state journal", &path))?;
                scan.end += record.len() as u64;
                scan.seq += 1;
                scan.last = Some(payload);
                return Ok(());
            }
        }
        self.compact_payload(&mut cursor, &payload)
    }

    /// Compacts the journal when more than half of it is used, so that the
    /// saves of the next refreshes are appends. Called after a refresh's
    /// answer went out, never before. Returns whether it compacted.
    pub fn compact_if_due(&self) -> Result<bool, StoreError> {
        let mut cursor = self.cursor();
        let payload = match &cursor.journal {
            Some(scan) if cursor.writes == StateWrites::Journal && scan.end > scan.capacity / 2 => {
                scan.last.clone()
            }
            _ => return Ok(false),
        };
        let Some(payload) = payload else {
            return Ok(false);
        };
        if let Some(e) = injected_fault() {
            return Err(io("cannot write state journal", &self.journal_path())(e));
        }
        self.compact_payload(&mut cursor, &payload).map(|()| true)
    }

    fn compact(&self, cursor: &mut Cursor, state: &PersistedState) -> Result<(), StoreError> {
        let payload = serialize(state, &self.journal_path())?;
        self.compact_payload(cursor, &payload)
    }

    /// A new journal holding `payload` only, by rename. A failure before the
    /// rename leaves the old journal as it was (appends go on there); one
    /// after it (the directory `fsync`) leaves it unknown which file a power
    /// cut would keep, so the next save compacts again rather than append at
    /// an offset of the old file.
    fn compact_payload(&self, cursor: &mut Cursor, payload: &[u8]) -> Result<(), StoreError> {
        let path = self.journal_path();
        let old = cursor.journal.take();
        let scan = journal::rewrite(&path, payload).map_err(|e| {
            if e.step != durable::Step::SyncDir {
                cursor.journal = old;
            }
            io("cannot write state journal", &path)(e.into_io())
        })?;
        cursor.journal = Some(scan);
        if cursor.legacy {
            self.remove_legacy(cursor);
        }
        Ok(())
    }

    /// Removes an earlier version's `state.json` once the journal holds the
    /// state (best effort: while it stays, the journal still wins).
    fn remove_legacy(&self, cursor: &mut Cursor) {
        match remove_and_sync(&self.state_path(), &self.dir) {
            Ok(()) => cursor.legacy = false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot remove state.json after converting it to the state journal; the journal is used")
            }
        }
    }

    fn replace_state_json(&self, state: &PersistedState) -> Result<(), StoreError> {
        let path = self.state_path();
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Io {
            what: "cannot serialize state for",
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        durable::write(&path, &bytes)
            .map(drop)
            .map_err(|e| io("cannot write state file", &path)(e.into_io()))
    }

    /// Deletes the state (logout): the journal and any `state.json`.
    pub fn delete(&self) -> Result<(), StoreError> {
        let mut cursor = self.cursor();
        for path in [self.journal_path(), self.state_path()] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("cannot delete state file", &path)(e)),
            }
        }
        cursor.journal = None;
        cursor.legacy = false;
        durable::sync_dir(&self.dir).map_err(io("cannot sync directory", &self.dir))
    }
}

/// The state as the journal's compact JSON payload.
fn serialize(state: &PersistedState, path: &Path) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(state).map_err(|e| StoreError::Io {
        what: "cannot serialize state for",
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Removes `path` (if there) and makes that durable.
fn remove_and_sync(path: &Path, dir: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => durable::sync_dir(dir).map_err(io("cannot sync directory", dir)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("cannot remove", path)(e)),
    }
}

/// The state in the journal at `path`: its newest intact record, with the
/// scan that found it; `None` when there is no journal.
fn read_journal(path: &Path) -> Result<Option<(journal::Scan, PersistedState)>, StoreError> {
    let Some(file) = open_own_file(
        path,
        OpenOptions::new().read(true),
        "cannot read state journal",
    )?
    else {
        return Ok(None);
    };
    check_private_file(&file, path)?;
    let bytes = read_capped(&file, MAX_JOURNAL_BYTES)
        .map_err(io("cannot read state journal", path))?
        .ok_or_else(|| StoreError::Corrupt {
            path: path.to_path_buf(),
            why: format!("larger than {}", describe_cap(MAX_JOURNAL_BYTES)),
        })?;
    let scan = journal::scan(&bytes).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let Some(payload) = &scan.last else {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            why: "it holds no complete record".to_string(),
        });
    };
    let state = parse_state(payload, path)?;
    Ok(Some((scan, state)))
}

/// The state in an earlier version's `state.json` at `path`.
fn read_state_json(path: &Path) -> Result<Option<PersistedState>, StoreError> {
    let Some(file) = open_own_file(
        path,
        OpenOptions::new().read(true),
        "cannot read state file",
    )?
    else {
        return Ok(None);
    };
    check_private_file(&file, path)?;
    let bytes = read_capped(&file, MAX_STATE_BYTES)
        .map_err(io("cannot read state file", path))?
        .ok_or_else(|| StoreError::Corrupt {
            path: path.to_path_buf(),
            why: format!("larger than {}", describe_cap(MAX_STATE_BYTES)),
        })?;
    parse_state(&bytes, path).map(Some)
}

fn parse_state(bytes: &[u8], path: &Path) -> Result<PersistedState, StoreError> {
    let state: PersistedState = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        why: format!(
            "line {} column {}: {}",
            e.line(),
            e.column(),
            classify_json_error(&e)
        ),
    })?;
    if state.version > STATE_VERSION {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            why: format!(
                "format version {} is newer than this brokerd understands ({STATE_VERSION}); upgrade oauth-broker",
                state.version
            ),
        });
    }
    Ok(state)
}

/// The state kept in the account directory `dir`, read without the lock and
/// without the account checks: for tests and diagnostics that look at what a
/// broker (running or dead) left on disk. The journal wins over `state.json`.
pub fn read_state_dir(dir: &Path) -> Result<Option<PersistedState>, StoreError> {
    match read_journal(&dir.join(JOURNAL_FILE))? {
        Some((_, state)) => Ok(Some(state)),
        None => read_state_json(&dir.join(STATE_FILE)),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
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
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(StoreError::NotADirectory {
            path: dir.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// The pid in a lock file held by another broker. The holder writes it right
/// after taking the lock, so an empty file (or the pid of a dead earlier
/// holder, not yet overwritten) means "wait a moment"; after `wait` the answer
/// is `None` rather than a guess.
fn holder_pid(lock_path: &Path, wait: Duration) -> Option<u32> {
    let deadline = Instant::now() + wait;
    loop {
        let pid = fs::read(lock_path)
            .ok()
            .and_then(|bytes| read_pid(&bytes))
            .filter(|pid| process_exists(*pid));
        if pid.is_some() || Instant::now() >= deadline {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A complete `pid\n` line.
fn read_pid(bytes: &[u8]) -> Option<u32> {
    let line = std::str::from_utf8(bytes).ok()?.strip_suffix('\n')?;
    line.trim().parse().ok().filter(|pid| *pid > 0)
}

fn process_exists(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 only checks; EPERM means it exists but belongs to someone else.
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

/// What [`Store::other_holder`] needs from another account's state file.
#[derive(Deserialize)]
struct SiblingView {
    #[serde(default)]
    credentials: Option<SiblingCredentials>,
    #[serde(default)]
    spent_refresh_tokens: Vec<String>,
}

#[derive(Deserialize)]
struct SiblingCredentials {
    refresh_token: SecretString,
}

/// Another account's state in directory `dir` (its journal, else its
/// `state.json`): only a regular file of this user, never through a symlink,
/// within the size caps; `None` on any doubt.
fn read_sibling(dir: &Path, me: u32) -> Option<(PathBuf, SiblingView)> {
    let open = |path: &Path, cap: u64| -> Option<Vec<u8>> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open(path)
            .ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.uid() != me {
            return None;
        }
        read_capped(&file, cap).ok()?
    };
    let journal_path = dir.join(JOURNAL_FILE);
    if let Some(bytes) = open(&journal_path, MAX_JOURNAL_BYTES) {
        let payload = journal::scan(&bytes).ok()?.last?;
        return Some((journal_path, serde_json::from_slice(&payload).ok()?));
    }
    let path = dir.join(STATE_FILE);
    let bytes = open(&path, MAX_STATE_BYTES)?;
    Some((path, serde_json::from_slice(&bytes).ok()?))
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

/// The checks brokerd makes on a state directory (mode 0700, this user's) and
/// its state file (0600), as things are now: what `brokerctl doctor` reports.
/// A missing state file is no finding (not logged in yet).
pub fn check_permissions(dir: &Path) -> Vec<StoreError> {
    let mut found = Vec::new();
    if let Err(e) = check_private(dir, 0o700) {
        found.push(e);
        return found;
    }
    // Both forms the state can take: the journal, and `state.json` (writes =
    // "replace", or left by an earlier version until the next start).
    for name in [JOURNAL_FILE, STATE_FILE] {
        let state = dir.join(name);
        match fs::symlink_metadata(&state) {
            Ok(meta) => {
                if let Err(e) = check_meta(&meta, &state, 0o600) {
                    found.push(e);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => found.push(io("cannot inspect", &state)(e)),
        }
    }
    found
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
        let store = Store::open(&dir, "acct").unwrap();
        assert!(store.load().unwrap().is_none());
        let mut state = PersistedState::empty("acct");
        state.credentials = Some((&creds()).into());
        store.save(&state).unwrap();
        assert!(!store.state_path().exists());
        let mode = fs::metadata(store.journal_path())
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
        let _first = Store::open(tmp.path().join("a").as_path(), "a").unwrap();
        let err = Store::open(tmp.path().join("a").as_path(), "a").unwrap_err();
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
    }

    #[test]
    fn group_readable_state_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        let store = Store::open(&dir, "acct").unwrap();
        store.save(&PersistedState::empty("a")).unwrap();
        fs::set_permissions(store.journal_path(), fs::Permissions::from_mode(0o640)).unwrap();
        let err = store.load().unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn corrupt_state_is_reported_without_content() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("a"), "a").unwrap();
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
        // Restoring a backup could replay a refresh token already spent.
        assert!(!err.contains("backup"), "{err}");
    }

    fn logged_in(account: &str, refresh_token: &str) -> PersistedState {
        let mut c = creds();
        c.refresh_token = refresh_token.to_string().into();
        let mut state = PersistedState::empty(account);
        state.credentials = Some((&c).into());
        state
    }

    #[test]
    fn a_state_file_of_another_account_is_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("work"), "work").unwrap();
        store.save(&logged_in("home", "rt-secret")).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(
            err.contains(r#"belongs to account "home", not to "work""#),
            "{err}"
        );
        assert!(err.contains("brokerctl --account work relogin"), "{err}");
        assert!(!err.contains("rt-secret"), "{err}");
    }

    #[test]
    fn a_symlinked_state_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere.json");
        let store = Store::open(&tmp.path().join("a"), "a").unwrap();
        store.save(&logged_in("a", "rt-secret")).unwrap();
        fs::rename(store.journal_path(), &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, store.journal_path()).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        assert!(err.contains("rm "), "{err}");
    }

    #[test]
    fn a_symlinked_lock_file_is_refused_and_its_target_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let victim = tmp.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(LOCK_FILE)).unwrap();
        let err = Store::open(&dir, "a").unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn a_state_directory_that_is_a_file_says_so_once_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a");
        fs::write(&path, b"").unwrap();
        let err = Store::open(&path, "a").unwrap_err();
        assert!(matches!(err, StoreError::NotADirectory { .. }), "{err}");
        assert!(std::error::Error::source(&err).is_none());
        assert!(err.to_string().contains("--state-dir"), "{err}");
    }

    #[test]
    fn a_refresh_token_held_or_spent_by_another_account_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Store::open(&tmp.path().join("home"), "home").unwrap();
        let mut state = logged_in("home", "rt-shared");
        state.spent_refresh_tokens = vec![token_fingerprint(&"rt-old".to_string().into())];
        home.save(&state).unwrap();
        drop(home);
        let work = Store::open(&tmp.path().join("work"), "work").unwrap();
        let id = |t: &str| token_fingerprint(&t.to_string().into());

        let held = work.other_holder(&id("rt-shared")).unwrap();
        assert_eq!(held.account, "home");
        assert!(!held.spent);
        assert!(work.other_holder(&id("rt-old")).unwrap().spent);
        assert_eq!(work.other_holder(&id("rt-own")), None);
        // Our own state never counts as "another account".
        work.save(&logged_in("work", "rt-own")).unwrap();
        assert_eq!(work.other_holder(&id("rt-own")), None);
        assert!(work.load().unwrap().is_some());

        work.save(&logged_in("work", "rt-shared")).unwrap();
        let err = work.load().unwrap_err().to_string();
        assert!(err.contains(r#"also held by account "home""#), "{err}");
        assert!(err.contains("brokerctl --account work relogin"), "{err}");
        assert!(!err.contains("rt-shared"), "{err}");
    }

    #[test]
    fn the_second_broker_waits_for_the_holder_to_write_its_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let lock_path = tmp.path().join(LOCK_FILE);
        fs::write(&lock_path, b"").unwrap();
        assert_eq!(holder_pid(&lock_path, Duration::from_millis(20)), None);
        let writer = {
            let lock_path = lock_path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                fs::write(&lock_path, format!("{}\n", std::process::id())).unwrap();
            })
        };
        assert_eq!(
            holder_pid(&lock_path, Duration::from_secs(10)),
            Some(std::process::id())
        );
        writer.join().unwrap();
        // A half-written line or a dead holder's pid is not an answer.
        assert_eq!(read_pid(b"12"), None);
        assert_eq!(read_pid(b"12\n"), Some(12));
    }

    fn refresh_token(state: &PersistedState) -> String {
        state
            .credentials()
            .unwrap()
            .refresh_token
            .expose_secret()
            .to_string()
    }

    /// What an earlier version wrote: `state.json`, pretty JSON, 0600.
    fn write_state_json(dir: &Path, state: &PersistedState) {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join(STATE_FILE))
            .unwrap();
        file.write_all(&serde_json::to_vec_pretty(state).unwrap())
            .unwrap();
    }

    #[test]
    fn a_state_json_of_an_earlier_version_becomes_the_journal_and_keeps_the_login() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let mut old = logged_in("a", "rt-kept");
        old.spent_refresh_tokens = vec!["0123456789ab".into()];
        write_state_json(&dir, &old);

        let store = Store::open(&dir, "a").unwrap();
        let loaded = store.load().unwrap().unwrap();
        assert_eq!(refresh_token(&loaded), "rt-kept");
        assert_eq!(loaded.spent_refresh_tokens, old.spent_refresh_tokens);
        assert!(store.journal_path().exists());
        assert!(!store.state_path().exists(), "state.json left behind");
        drop(store);

        // The next start reads the journal, and saves append to it.
        let store = Store::open(&dir, "a").unwrap();
        assert_eq!(refresh_token(&store.load().unwrap().unwrap()), "rt-kept");
        store.save(&logged_in("a", "rt-next")).unwrap();
        drop(store);
        let store = Store::open(&dir, "a").unwrap();
        assert_eq!(refresh_token(&store.load().unwrap().unwrap()), "rt-next");
    }

    #[test]
    fn when_both_files_exist_the_journal_wins_and_state_json_goes() {
        // A conversion interrupted after the journal was written.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        let store = Store::open(&dir, "a").unwrap();
        store.save(&logged_in("a", "rt-journal")).unwrap();
        write_state_json(&dir, &logged_in("a", "rt-stale"));
        assert_eq!(
            refresh_token(&read_state_dir(&dir).unwrap().unwrap()),
            "rt-journal"
        );
        drop(store);
        let store = Store::open(&dir, "a").unwrap();
        assert_eq!(refresh_token(&store.load().unwrap().unwrap()), "rt-journal");
        assert!(!store.state_path().exists());
    }

    #[test]
    fn a_record_cut_short_at_any_byte_is_ignored_and_the_next_save_overwrites_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        let store = Store::open(&dir, "a").unwrap();
        store.save(&logged_in("a", "rt-committed")).unwrap();
        let committed = fs::read(store.journal_path()).unwrap();
        let end = journal::scan(&committed).unwrap().end as usize;
        store.save(&logged_in("a", "rt-cut")).unwrap();
        let full = fs::read(store.journal_path()).unwrap();
        let record_end = journal::scan(&full).unwrap().end as usize;
        drop(store);
        for cut in (end..record_end).step_by(7) {
            // What a kill or a power cut in the middle of the append leaves.
            let mut bytes = full.clone();
            bytes[cut..record_end].fill(0);
            fs::write(dir.join(JOURNAL_FILE), &bytes).unwrap();
            let store = Store::open(&dir, "a").unwrap();
            let state = store.load().unwrap().unwrap();
            assert_eq!(refresh_token(&state), "rt-committed", "cut at {cut}");
            // The next record goes where the torn one began.
            store.save(&logged_in("a", "rt-after")).unwrap();
            drop(store);
            let state = read_state_dir(&dir).unwrap().unwrap();
            assert_eq!(refresh_token(&state), "rt-after", "cut at {cut}");
        }
    }

    #[test]
    fn the_journal_is_compacted_by_rename_and_never_grows() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        let store = Store::open(&dir, "a").unwrap();
        store.save(&logged_in("a", "rt-0")).unwrap();
        let capacity = fs::metadata(store.journal_path()).unwrap().len();
        let mut compactions = 0;
        for i in 1..200 {
            store.save(&logged_in("a", &format!("rt-{i}"))).unwrap();
            assert_eq!(fs::metadata(store.journal_path()).unwrap().len(), capacity);
            if i % 3 == 0 && store.compact_if_due().unwrap() {
                compactions += 1;
                let scan = journal::scan(&fs::read(store.journal_path()).unwrap()).unwrap();
                assert_eq!(scan.seq, 1, "a compacted journal holds one record");
            }
            let state = read_state_dir(&dir).unwrap().unwrap();
            assert_eq!(refresh_token(&state), format!("rt-{i}"));
        }
        assert!(compactions >= 2, "{compactions}");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| n == "lock" || n == JOURNAL_FILE),
            "{names:?}"
        );
    }

    #[test]
    fn writes_replace_converts_the_journal_back_to_state_json() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        let store = Store::open(&dir, "a").unwrap();
        store.save(&logged_in("a", "rt-1")).unwrap();
        drop(store);
        let store = Store::open_with(&dir, "a", StateWrites::Replace).unwrap();
        assert_eq!(refresh_token(&store.load().unwrap().unwrap()), "rt-1");
        assert!(!store.journal_path().exists());
        store.save(&logged_in("a", "rt-2")).unwrap();
        assert!(!store.journal_path().exists());
        let text = fs::read_to_string(store.state_path()).unwrap();
        let state: PersistedState = serde_json::from_str(&text).unwrap();
        assert_eq!(refresh_token(&state), "rt-2");
    }

    #[test]
    fn a_journal_that_is_not_one_is_reported_without_content() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("a"), "a").unwrap();
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(store.journal_path())
            .unwrap();
        file.write_all(br#"{"refresh_token":"rt-sec"}"#).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("unreadable"), "{err}");
        assert!(!err.contains("rt-sec"), "{err}");
    }

    #[test]
    fn locked_message_never_suggests_kill_unknown() {
        let path = Path::new("/s/lock");
        assert!(locked_message(Some(42), path).contains("`kill 42`"));
        let unknown = locked_message(None, path);
        assert!(!unknown.contains("kill unknown"), "{unknown}");
        assert!(unknown.contains("has not written its pid yet"), "{unknown}");
    }
}
