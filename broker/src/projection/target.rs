//! What every projection target has in common: keeping one tool's credential
//! file in step with the broker's current access token, with a placeholder
//! refresh token, early enough for the tool's own refresh rule, without ever
//! overwriting another account's login, and with a way back.
//!
//! A [`ToolFormat`] knows one tool's file (one file per kind: `codex.rs`,
//! `claude_code.rs`); a [`Target`] is one configured file of that format and
//! does the I/O. Everything here is blocking file I/O: the runner in `mod.rs`
//! calls it on the blocking pool. [`Target::status`] and
//! [`Target::is_stopped`] are the exception: they are called on the async
//! workers (`status` serves every client's `Status` request), so they read
//! state that is never locked across file I/O — a slow disk (an NFS home)
//! must not stall token serving.

use super::file::{self, Stamp};
use crate::config::{ProjectionKind, WriteMode};
use crate::manager::ServedToken;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use oauth_broker_proto::{
    token_fingerprint, ExposeSecret, ProjectionRestored, ProjectionStatus, RestoreOutcome,
    SecretString, ToolWrote,
};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// The refresh token written into every projected file. No server accepts it,
/// so a tool that refreshes (or logs out, which revokes) on its own spends and
/// revokes nothing; the real refresh token never leaves the broker. It also
/// marks a file as the broker's own.
pub const PLACEHOLDER_REFRESH_TOKEN: &str =
    "oauth-broker-placeholder.the-broker-holds-the-real-refresh-token";

/// How long the broker waits for a tool's own file lock: as long as Hermes
/// waits for it (`AUTH_LOCK_TIMEOUT_SECONDS`).
const TOOL_LOCK_WAIT: Duration = Duration::from_secs(15);
/// How often a busy tool lock is tried again (Hermes polls every 50 ms too).
const TOOL_LOCK_POLL: Duration = Duration::from_millis(50);
/// How many of its own access tokens (fingerprints) a target remembers, to
/// tell a token the tool obtained by itself from one the broker wrote.
const REMEMBERED_TOKENS: usize = 16;

/// Whose login a credential file holds, as far as it says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Provider account id (ChatGPT account id).
    pub account_id: Option<String>,
    /// The user (`sub` claim).
    pub subject: Option<String>,
}

impl Identity {
    /// Describes a definite mismatch: both sides name an account id (or a
    /// subject) and the names differ. Unknown on either side is no mismatch.
    pub fn conflict_with(&self, broker: &Identity) -> Option<String> {
        let differ = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) if a != b => Some((a.clone(), b.clone())),
            _ => None,
        };
        if let Some((file, broker)) = differ(&self.account_id, &broker.account_id) {
            return Some(format!(
                "account {file}, but this broker serves account {broker}"
            ));
        }
        differ(&self.subject, &broker.subject)
            .map(|(file, broker)| format!("user {file}, but this broker serves user {broker}"))
    }
}

/// One tool's credential-file format and refresh rule.
pub trait ToolFormat: Send + Sync {
    /// Which kind this is.
    fn kind(&self) -> ProjectionKind;
    /// How long before expiry (in the tool's eyes) the tool starts refreshing
    /// on its own, plus a safety margin.
    fn default_refresh_margin(&self) -> Duration;
    /// When the tool considers the broker's current access token expired.
    fn tool_expiry(&self, token: &ServedToken) -> Option<SystemTime>;
    /// Whose login the broker holds, in the terms this file format uses.
    fn identity_of_login(&self, token: &ServedToken) -> Identity;
    /// Whose login an existing file holds, and its refresh token.
    fn inspect(&self, file: &Map<String, Value>) -> (Identity, Option<SecretString>);
    /// The access token an existing file holds (to tell one the broker wrote
    /// from one the tool obtained by itself).
    fn access_token_in(&self, _file: &Map<String, Value>) -> Option<SecretString> {
        None
    }
    /// `file` (the existing contents, or empty) updated with the broker's
    /// current access token and the placeholder refresh token. `Err` says why
    /// this login cannot be written in this format.
    fn render(
        &self,
        token: &ServedToken,
        file: Map<String, Value>,
    ) -> Result<Map<String, Value>, String>;
    /// The file the tool takes an exclusive `flock` on around its own
    /// read-modify-write of `path`, if it has such a protocol; the broker
    /// holds it around its own.
    fn lock_path(&self, _path: &Path) -> Option<PathBuf> {
        None
    }
    /// The file's contents as a JSON object, `None` when they are not one.
    /// Plain JSON by default; a tool that writes comments into its file
    /// says how to read past them.
    fn parse(&self, bytes: &[u8]) -> Option<Map<String, Value>> {
        serde_json::from_slice(bytes).ok()
    }
    /// For a file that also holds what is not the broker's to give back
    /// (other logins): `current` with the tool's own login from `backup` put
    /// back, or the broker's taken out. `None` (the default): the file is
    /// the login, so a restore puts the backup back whole or removes the file.
    fn give_back(
        &self,
        _current: Map<String, Value>,
        _backup: Option<&Map<String, Value>>,
    ) -> Option<Map<String, Value>> {
        None
    }
    /// Whether the document is a file of its own (the default), written by
    /// rename or in place as the target's `write` says. `false` for a tool
    /// that keeps it elsewhere (a database row): then [`ToolFormat::write`]
    /// is the only writer.
    fn is_own_file(&self) -> bool {
        true
    }
    /// The version of the JSON document at `path`, `None` when there is none.
    /// The default: `path` is a file of its own. A tool that keeps the
    /// document elsewhere (a database row) overrides the four storage
    /// methods together.
    fn stamp(&self, path: &Path) -> io::Result<Option<Stamp>> {
        file::stamp(path)
    }
    /// The JSON document at `path`, `None` when there is none.
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        file::read(path)
    }
    /// Replaces the document at `path` atomically; returns its new stamp.
    /// Called only for formats that are not [`ToolFormat::is_own_file`]: a
    /// file of its own is written by the target (rename or in place).
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<Stamp> {
        file::write_private(path, bytes)
    }
    /// Removes the document at `path` (only called for formats without
    /// [`ToolFormat::give_back`]).
    fn remove(&self, path: &Path) -> io::Result<()> {
        file::remove(path)
    }
}

/// One configured `[[project]]` file.
pub struct Target {
    format: Box<dyn ToolFormat>,
    path: PathBuf,
    margin: Duration,
    /// Held across the file I/O, so that a sync and a restore never interleave.
    io: Mutex<IoState>,
    /// Set by a restore (under `io`): the file is the tool's again until the
    /// broker restarts.
    stopped: AtomicBool,
    /// What `status` shows. Locked only to read or update it, never across
    /// I/O (when both are held, `io` is taken first).
    report: Mutex<Report>,
}

#[derive(Default)]
struct IoState {
    /// Our last write: the token it carried and the file version it produced.
    written: Option<(String, Stamp)>,
    /// Why the file is written in place, if it is (configured, or found to be
    /// a mount point); `None`: replaced by rename.
    in_place: Option<String>,
    /// Fingerprints of the access tokens this target wrote, newest last.
    issued: VecDeque<String>,
}

#[derive(Default)]
struct Report {
    last_write_at: Option<SystemTime>,
    last_error: Option<String>,
    /// A condition that is not a failure of the last write (tokens too short
    /// for the margin); shown while there is no error.
    warning: Option<String>,
    /// Mirrors `IoState::in_place` for status (which never takes `io`).
    in_place: Option<String>,
    /// The access token of the last write (fingerprint).
    token_id: Option<String>,
    /// The last login of the tool's own found in the file.
    tool_wrote: Option<ToolWrote>,
}

/// What a write attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum Synced {
    /// The file already holds the current token.
    UpToDate,
    /// The file was (re)written.
    Written,
    /// Nothing to write (no access token yet, or the target was restored).
    Idle,
}

impl Target {
    /// A target writing `path` in `format`, `margin` ahead of the tool.
    pub fn new(format: Box<dyn ToolFormat>, path: PathBuf, margin: Option<Duration>) -> Target {
        let margin = margin.unwrap_or_else(|| format.default_refresh_margin());
        Target {
            format,
            path,
            margin,
            io: Mutex::new(IoState::default()),
            stopped: AtomicBool::new(false),
            report: Mutex::new(Report::default()),
        }
    }

    /// Sets how the file is replaced (`write = …` of the `[[project]]` entry).
    pub fn with_write_mode(self, mode: WriteMode) -> Target {
        if mode == WriteMode::InPlace {
            let why = "configured".to_string();
            self.lock_io().in_place = Some(why.clone());
            self.lock_report().in_place = Some(why);
        }
        self
    }

    /// The kind's config name.
    pub fn kind(&self) -> &'static str {
        self.format.kind().as_str()
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How far ahead of the tool's own refresh the file must stay.
    pub fn margin(&self) -> Duration {
        self.margin
    }

    /// The file must hold a newer token by then, or the tool starts refreshing
    /// on its own: the token's expiry in the tool's eyes minus the margin.
    pub fn rewrite_deadline(&self, token: &ServedToken) -> Option<SystemTime> {
        let expiry = self.format.tool_expiry(token)?;
        Some(
            expiry
                .checked_sub(self.margin)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        )
    }

    /// Brings the file in step with `token`: nothing when it already holds
    /// that token and nobody touched it since our write; otherwise checks whose
    /// file it is, backs up the tool's own login the first time, and writes.
    pub fn sync(&self, token: &ServedToken, now: SystemTime) -> Result<Synced, String> {
        let mut io = self.lock_io();
        if self.is_stopped() {
            return Ok(Synced::Idle);
        }
        let result = self
            .tool_lock()
            .and_then(|_held| self.write_if_needed(&mut io, token, now));
        // The I/O is done: publish what status shows.
        let mut report = self.lock_report();
        match &result {
            Ok(Synced::Written) => {
                report.last_write_at = Some(now);
                report.last_error = None;
                report.token_id = Some(token.token_id().to_string());
                let enough = self
                    .format
                    .tool_expiry(token)
                    .is_some_and(|e| e.duration_since(now).is_ok_and(|left| left > self.margin));
                if enough {
                    report.warning = None;
                }
            }
            Ok(_) => {}
            Err(e) => report.last_error = Some(e.clone()),
        }
        result
    }

    fn write_if_needed(
        &self,
        state: &mut IoState,
        token: &ServedToken,
        now: SystemTime,
    ) -> Result<Synced, String> {
        let token_id = token.token_id();
        let path = self.path.display();
        let on_disk = self
            .format
            .stamp(&self.path)
            .map_err(|e| format!("cannot inspect {path}: {e}"))?;
        let ours_unchanged = matches!(
            (&state.written, on_disk),
            (Some((_, stamp)), Some(disk)) if *stamp == disk
        );
        if ours_unchanged && state.written.as_ref().is_some_and(|(id, _)| id == token_id) {
            return Ok(Synced::UpToDate);
        }
        let existing = match on_disk {
            Some(_) => self
                .format
                .read(&self.path)
                .map_err(|e| format!("cannot read {path}: {e}"))?,
            None => None,
        };
        let base = match &existing {
            Some(bytes) => {
                let parsed = self.format.parse(bytes);
                if !ours_unchanged {
                    if state.written.is_some() {
                        self.note_tool_write(state, parsed.as_ref(), now);
                    }
                    self.check_and_back_up(parsed.as_ref(), bytes, token)?;
                }
                parsed.unwrap_or_default()
            }
            None => Map::new(),
        };
        let rendered = self
            .format
            .render(token, base)
            .map_err(|why| format!("cannot write {path}: {why}"))?;
        let mut bytes = serde_json::to_vec_pretty(&Value::Object(rendered))
            .map_err(|e| format!("cannot encode {path}: {e}"))?;
        bytes.push(b'\n');
        let stamp = self
            .put(state, &bytes)
            .map_err(|e| format!("cannot write {path}: {e}"))?;
        if state.written.is_none() {
            tracing::info!(kind = self.kind(), path = %path, "projecting the broker's access token into the tool's credential file");
        } else {
            tracing::debug!(kind = self.kind(), path = %path, "credential file rewritten");
        }
        state.written = Some((token_id.to_string(), stamp));
        if state.issued.back().map(String::as_str) != Some(token_id) {
            state.issued.push_back(token_id.to_string());
            if state.issued.len() > REMEMBERED_TOKENS {
                state.issued.pop_front();
            }
        }
        Ok(Synced::Written)
    }

    /// Writes the whole file: by rename, or in place when the file must keep
    /// its inode. Switches to in place (once, logged, shown in status) when
    /// the file turns out to be a mount point or a rename onto it is refused.
    fn put(&self, state: &mut IoState, bytes: &[u8]) -> std::io::Result<Stamp> {
        if !self.format.is_own_file() {
            // A database row (OpenClaw): the tool's store has its own
            // transactions; rename and in-place do not apply.
            return self.format.write(&self.path, bytes);
        }
        if state.in_place.is_none() && super::in_place::is_mount_point(&self.path) == Some(true) {
            self.switch_to_in_place(
                state,
                "the file is a mount point: a single-file bind mount".to_string(),
            );
        }
        if state.in_place.is_some() {
            return file::write_in_place(&self.path, bytes);
        }
        match file::replace(&self.path, bytes) {
            Ok(stamp) => Ok(stamp),
            Err(e) if e.rename_refused => {
                self.switch_to_in_place(state, format!("a rename onto it failed: {}", e.source));
                file::write_in_place(&self.path, bytes)
            }
            Err(e) => Err(e.source),
        }
    }

    fn switch_to_in_place(&self, state: &mut IoState, why: String) {
        tracing::warn!(kind = self.kind(), path = %self.path.display(), reason = %why, "writing this projection target in place from now on (same inode), so that a bind mount of the file sees every token; set write = \"in-place\" in its [[project]] entry to make this explicit");
        state.in_place = Some(why.clone());
        self.lock_report().in_place = Some(why);
    }

    /// The broker had written the file and finds it changed: records whether
    /// the tool put a login of its own there (a real refresh token, or an
    /// access token none of the broker's writes carried). Fingerprints only.
    fn note_tool_write(
        &self,
        state: &IoState,
        parsed: Option<&Map<String, Value>>,
        now: SystemTime,
    ) {
        let Some(map) = parsed else { return };
        let refresh_token = self.format.inspect(map).1.is_some_and(|t| {
            !t.expose_secret().is_empty() && t.expose_secret() != PLACEHOLDER_REFRESH_TOKEN
        });
        let unknown_access_token = self
            .format
            .access_token_in(map)
            .filter(|t| !t.expose_secret().is_empty())
            .is_some_and(|t| !state.issued.contains(&token_fingerprint(&t)));
        if !(refresh_token || unknown_access_token) {
            return;
        }
        tracing::warn!(kind = self.kind(), path = %self.path.display(), refresh_token, unknown_access_token, "the tool put a login of its own into the projected file (it refreshed or logged in by itself); the broker writes its own again");
        self.lock_report().tool_wrote = Some(ToolWrote {
            at: crate::clock::unix_secs(now),
            refresh_token,
            unknown_access_token,
        });
    }

    /// A file the broker did not write last: refuse another account's, keep a
    /// copy of the tool's own login the first time.
    fn check_and_back_up(
        &self,
        parsed: Option<&Map<String, Value>>,
        bytes: &[u8],
        token: &ServedToken,
    ) -> Result<(), String> {
        let path = self.path.display();
        let (identity, refresh_token) = match parsed {
            Some(map) => self.format.inspect(map),
            None => (Identity::default(), None),
        };
        let refresh_token = refresh_token.filter(|t| !t.expose_secret().is_empty());
        if refresh_token
            .as_ref()
            .is_some_and(|t| t.expose_secret() == PLACEHOLDER_REFRESH_TOKEN)
        {
            // Written by a broker before (an earlier run): ours to update.
            return Ok(());
        }
        if let Some(conflict) = identity.conflict_with(&self.format.identity_of_login(token)) {
            return Err(format!(
                "{path} holds the login of {conflict}; it was left untouched. If {tool} should use this broker's account, move the file aside (or log {tool} out) and the broker writes it; otherwise remove this [[project]] entry or point its `path` elsewhere",
                tool = self.kind()
            ));
        }
        // Compared by fingerprint: the broker's refresh token never reaches a
        // projection target.
        let owned_by_broker = refresh_token
            .as_ref()
            .is_some_and(|t| token_fingerprint(t) == token.refresh_token_id);
        if owned_by_broker {
            // Imported from this very file: a backup would be a second copy of
            // the refresh token the broker now spends.
            tracing::info!(path = %path, "not backing up the credential file: it holds the refresh token the broker imported and now owns");
            return Ok(());
        }
        if refresh_token.is_none() && parsed.is_some() {
            // Nothing worth keeping (e.g. a file the tool wiped).
            return Ok(());
        }
        if file::backup_once(&self.path, bytes)
            .map_err(|e| format!("cannot back up {path} before overwriting it: {e}"))?
        {
            tracing::info!(path = %path, backup = %file::backup_path(&self.path).display(), "backed up the tool's own credential file; `brokerctl project --restore` puts it back");
        }
        Ok(())
    }

    /// Stops writing the file and gives it back to the tool: the backup if
    /// there is one, else the broker's projection is removed (the tool is then
    /// logged out). `broker_refresh_token_id` is the fingerprint of the
    /// broker's current refresh token: a backup holding that token is refused,
    /// the tool would spend the broker's token.
    pub fn restore(
        &self,
        broker_refresh_token_id: Option<&str>,
    ) -> Result<ProjectionRestored, String> {
        let mut io = self.lock_io();
        let _held = self.tool_lock()?;
        let path = self.path.display();
        let backup = file::backup_path(&self.path);
        let backup_bytes = file::read(&backup)
            .map_err(|e| format!("cannot read the backup {}: {e}", backup.display()))?;
        let outcome = match backup_bytes {
            Some(bytes) if self.gives_back_in_part() => {
                self.refuse_brokers_backup(&bytes, broker_refresh_token_id)?;
                self.give_back_in_part(&mut io, Some(&bytes))?;
                file::remove(&backup)
                    .map_err(|e| format!("cannot remove {}: {e}", backup.display()))?;
                RestoreOutcome::BackupRestored
            }
            None if self.gives_back_in_part() => self.give_back_in_part(&mut io, None)?,
            Some(bytes) if io.in_place.is_some() => {
                self.refuse_brokers_backup(&bytes, broker_refresh_token_id)?;
                file::write_in_place(&self.path, &bytes)
                    .map_err(|e| format!("cannot restore {path} from {}: {e}", backup.display()))?;
                file::remove(&backup)
                    .map_err(|e| format!("cannot remove {}: {e}", backup.display()))?;
                RestoreOutcome::BackupRestored
            }
            Some(bytes) => {
                self.refuse_brokers_backup(&bytes, broker_refresh_token_id)?;
                file::restore_backup(&self.path)
                    .map_err(|e| format!("cannot restore {path} from {}: {e}", backup.display()))?;
                RestoreOutcome::BackupRestored
            }
            None => {
                let current = self
                    .format
                    .read(&self.path)
                    .map_err(|e| format!("cannot read {path}: {e}"))?;
                let ours = current
                    .and_then(|bytes| self.refresh_token_in(&bytes))
                    .is_some_and(|t| t.expose_secret() == PLACEHOLDER_REFRESH_TOKEN);
                if ours && io.in_place.is_some() {
                    // A mount point cannot be removed: an empty login instead.
                    file::write_in_place(&self.path, b"{}")
                        .map_err(|e| format!("cannot empty {path}: {e}"))?;
                    RestoreOutcome::Removed
                } else if ours {
                    self.format
                        .remove(&self.path)
                        .map_err(|e| format!("cannot remove {path}: {e}"))?;
                    RestoreOutcome::Removed
                } else {
                    RestoreOutcome::LeftAlone
                }
            }
        };
        self.stopped.store(true, Ordering::SeqCst);
        io.written = None;
        let mut report = self.lock_report();
        report.warning = None;
        report.last_error = Some(
            "stopped by `brokerctl project --restore`: brokerd writes this file again after a restart unless the [[project]] entry is removed".to_string(),
        );
        tracing::info!(kind = self.kind(), path = %path, outcome = ?outcome, "projection target restored and stopped");
        Ok(ProjectionRestored {
            kind: self.kind().to_string(),
            path: path.to_string(),
            outcome,
        })
    }

    /// Whether this format gives back only its part of a shared file.
    fn gives_back_in_part(&self) -> bool {
        self.format.give_back(Map::new(), None).is_some()
    }

    /// A backup holding the broker's refresh token is never given back.
    fn refuse_brokers_backup(
        &self,
        bytes: &[u8],
        broker_refresh_token_id: Option<&str>,
    ) -> Result<(), String> {
        let backup_token = self.refresh_token_in(bytes);
        let is_brokers = matches!(
            (&backup_token, broker_refresh_token_id),
            (Some(a), Some(b)) if token_fingerprint(a) == b
        );
        if is_brokers {
            return Err(format!(
                "the backup {} holds the refresh token the broker now spends; restoring it would make {tool} spend it too and the provider would end both logins (refresh_token_reused). Log {tool} in on its own instead",
                file::backup_path(&self.path).display(),
                tool = self.kind()
            ));
        }
        Ok(())
    }

    /// Restore for a shared file: the current file with the tool's own login
    /// from `backup` (or without the broker's), everything else as it is now.
    fn give_back_in_part(
        &self,
        io: &mut IoState,
        backup: Option<&[u8]>,
    ) -> Result<RestoreOutcome, String> {
        let path = self.path.display();
        let current = self
            .format
            .read(&self.path)
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        let Some(current) = current else {
            return Ok(RestoreOutcome::LeftAlone);
        };
        let current = self.format.parse(&current).ok_or_else(|| {
            format!("cannot parse {path} to take the broker's login out: not a JSON object")
        })?;
        let ours = self
            .format
            .inspect(&current)
            .1
            .is_some_and(|t| t.expose_secret() == PLACEHOLDER_REFRESH_TOKEN);
        let backup = match backup {
            Some(bytes) => Some(self.format.parse(bytes).ok_or_else(|| {
                format!(
                    "cannot parse the backup {}: not a JSON object",
                    file::backup_path(&self.path).display()
                )
            })?),
            None if !ours => return Ok(RestoreOutcome::LeftAlone),
            None => None,
        };
        let outcome = if backup.is_some() {
            RestoreOutcome::BackupRestored
        } else {
            RestoreOutcome::Removed
        };
        let given_back = self
            .format
            .give_back(current, backup.as_ref())
            .unwrap_or_default();
        let mut bytes = serde_json::to_vec_pretty(&Value::Object(given_back))
            .map_err(|e| format!("cannot encode {path}: {e}"))?;
        bytes.push(b'\n');
        self.put(io, &bytes)
            .map_err(|e| format!("cannot write {path}: {e}"))?;
        Ok(outcome)
    }

    /// Takes the tool's own lock on its file (see [`ToolFormat::lock_path`]),
    /// waiting for the tool as long as the tool itself waits for it. Released
    /// when the returned file is dropped.
    fn tool_lock(&self) -> Result<Option<Flock<std::fs::File>>, String> {
        let Some(lock_path) = self.format.lock_path(&self.path) else {
            return Ok(None);
        };
        let mut lock = file::open_lock(&lock_path).map_err(|e| {
            format!(
                "cannot open {}'s lock file {}: {e}",
                self.kind(),
                lock_path.display()
            )
        })?;
        let deadline = std::time::Instant::now() + TOOL_LOCK_WAIT;
        loop {
            match Flock::lock(lock, FlockArg::LockExclusiveNonblock) {
                Ok(held) => return Ok(Some(held)),
                Err((busy, Errno::EWOULDBLOCK)) if std::time::Instant::now() < deadline => {
                    lock = busy;
                    std::thread::sleep(TOOL_LOCK_POLL);
                }
                Err((_, Errno::EWOULDBLOCK)) => {
                    return Err(format!(
                        "{} has held its lock {} for over {}s; the file was left as it is and is written once the lock is free",
                        self.kind(),
                        lock_path.display(),
                        TOOL_LOCK_WAIT.as_secs()
                    ))
                }
                Err((_, e)) => return Err(format!("cannot lock {}: {e}", lock_path.display())),
            }
        }
    }

    /// Notes that the manager could not give a token that stays `margin`
    /// ahead (tokens live too short for this margin).
    pub fn warn_short_lifetime(&self, token: &ServedToken) {
        let lifetime = token.lifetime().as_secs();
        let message = format!(
            "access tokens live {lifetime}s, too short to keep {}s ahead of {}'s own refresh; it may try to refresh with the placeholder (harmless, but it reports errors). Lower refresh_margin_secs if the tool refreshes later than that",
            self.margin.as_secs(),
            self.kind()
        );
        let mut report = self.lock_report();
        if report.warning.as_deref() != Some(message.as_str()) {
            tracing::warn!(kind = self.kind(), path = %self.path.display(), lifetime_secs = lifetime, margin_secs = self.margin.as_secs(), "tokens live too short for the projection margin");
            report.warning = Some(message);
        }
    }

    /// Whether a restore stopped this target. Never waits for file I/O.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The status line of this target, as of the last finished sync or
    /// restore. Never waits for file I/O.
    pub fn status(&self) -> ProjectionStatus {
        let report = self.lock_report();
        ProjectionStatus {
            kind: self.kind().to_string(),
            path: self.path.display().to_string(),
            last_write_at: report.last_write_at.map(crate::clock::unix_secs),
            last_error: report.last_error.clone().or_else(|| report.warning.clone()),
            write: Some(
                if report.in_place.is_some() {
                    WriteMode::InPlace
                } else {
                    WriteMode::Rename
                }
                .as_str()
                .to_string(),
            ),
            write_reason: report.in_place.clone(),
            token_id: report.token_id.clone(),
            tool_wrote: report.tool_wrote.clone(),
        }
    }

    /// The refresh token a file's contents hold, if they parse as this format.
    fn refresh_token_in(&self, bytes: &[u8]) -> Option<SecretString> {
        let map = self.format.parse(bytes)?;
        self.format.inspect(&map).1
    }

    fn lock_io(&self) -> MutexGuard<'_, IoState> {
        self.io.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_report(&self) -> MutexGuard<'_, Report> {
        self.report.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::codex::Codex;
    use base64::Engine;
    use serde_json::json;

    fn jwt(payload: Value) -> String {
        let enc = |v: Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        format!("{}.{}.c2ln", enc(json!({"alg": "none"})), enc(payload))
    }

    fn creds(account: &str, access: &str, now: SystemTime) -> ServedToken {
        let exp = crate::clock::unix_secs(now) + 3600;
        let auth = json!({"chatgpt_account_id": account});
        ServedToken::new(&crate::credentials::Credentials {
            access_token: Some(
                jwt(json!({"sub": "user-1", "exp": exp, "jti": access, "https://api.openai.com/auth": auth}))
                    .into(),
            ),
            expires_at: Some(now + Duration::from_secs(3600)),
            obtained_at: now,
            obtained_boot: None,
            refresh_token: "broker-refresh-token".to_string().into(),
            id_token: Some(jwt(json!({"sub": "user-1", "https://api.openai.com/auth": auth})).into()),
            token_type: "Bearer".into(),
            scopes: vec![],
            account_id: Some(account.into()),
            metadata: Default::default(),
            refresh_hint_at: None,
        })
        .unwrap()
    }

    fn codex_file(account: &str, refresh: &str) -> Vec<u8> {
        json!({"auth_mode": "chatgpt", "tokens": {"id_token": jwt(json!({"sub": "user-1"})),
            "access_token": "x", "refresh_token": refresh, "account_id": account}})
        .to_string()
        .into_bytes()
    }

    fn target(dir: &Path) -> Target {
        Target::new(Box::new(Codex), dir.join("auth.json"), None)
    }

    fn on_disk(t: &Target) -> Value {
        serde_json::from_slice(&std::fs::read(t.path()).unwrap()).unwrap()
    }

    #[test]
    fn writes_once_per_token_and_backs_up_the_tools_login_once() {
        let tmp = tempfile::tempdir().unwrap();
        let t = target(tmp.path());
        std::fs::write(t.path(), codex_file("acct-1", "codex-own-refresh")).unwrap();
        let now = SystemTime::now();
        let first = creds("acct-1", "a", now);
        assert_eq!(t.sync(&first, now).unwrap(), Synced::Written);
        assert_eq!(t.sync(&first, now).unwrap(), Synced::UpToDate);
        let file = on_disk(&t);
        assert_eq!(file["tokens"]["refresh_token"], PLACEHOLDER_REFRESH_TOKEN);
        assert!(!file.to_string().contains("broker-refresh-token"));
        let backup = std::fs::read_to_string(file::backup_path(t.path())).unwrap();
        assert!(backup.contains("codex-own-refresh"));

        let second = creds("acct-1", "b", now);
        assert_eq!(t.sync(&second, now).unwrap(), Synced::Written);
        // The backup still holds the tool's own login, not a broker write.
        let backup = std::fs::read_to_string(file::backup_path(t.path())).unwrap();
        assert!(backup.contains("codex-own-refresh"));
        assert_eq!(t.status().last_error, None);
        assert!(t.status().last_write_at.is_some());
    }

    #[test]
    fn rewrites_a_file_the_tool_changed_or_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let t = target(tmp.path());
        let now = SystemTime::now();
        let c = creds("acct-1", "a", now);
        assert_eq!(t.sync(&c, now).unwrap(), Synced::Written);
        std::fs::remove_file(t.path()).unwrap();
        assert_eq!(t.sync(&c, now).unwrap(), Synced::Written);
        // A tool wiping its tokens (Claude Code does on invalid_grant).
        std::fs::write(t.path(), codex_file("acct-1", "")).unwrap();
        assert_eq!(t.sync(&c, now).unwrap(), Synced::Written);
        assert_eq!(
            on_disk(&t)["tokens"]["refresh_token"],
            PLACEHOLDER_REFRESH_TOKEN
        );
        assert!(!file::backup_path(t.path()).exists());
    }

    #[test]
    fn status_never_waits_for_a_sync_in_progress() {
        let tmp = tempfile::tempdir().unwrap();
        let t = std::sync::Arc::new(target(tmp.path()));
        let now = SystemTime::now();
        t.sync(&creds("acct-1", "a", now), now).unwrap();
        // A sync stuck in a slow write holds the I/O lock.
        let io = t.lock_io();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = t.clone();
        std::thread::spawn(move || {
            let _ = tx.send((reader.status(), reader.is_stopped()));
        });
        let (status, stopped) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("status waited for the file I/O");
        assert!(status.last_write_at.is_some());
        assert_eq!(status.last_error, None);
        assert!(!stopped);
        t.warn_short_lifetime(&creds("acct-1", "a", now));
        assert!(t.status().last_error.unwrap().contains("too short"));
        drop(io);
    }

    #[test]
    fn refuses_another_accounts_file() {
        let tmp = tempfile::tempdir().unwrap();
        let t = target(tmp.path());
        let foreign = codex_file("acct-other", "other-refresh");
        std::fs::write(t.path(), &foreign).unwrap();
        let now = SystemTime::now();
        let err = t.sync(&creds("acct-1", "a", now), now).unwrap_err();
        assert!(
            err.contains("acct-other") && err.contains("acct-1"),
            "{err}"
        );
        assert!(err.contains("move the file aside"), "{err}");
        assert_eq!(std::fs::read(t.path()).unwrap(), foreign);
        assert_eq!(t.status().last_error.as_deref(), Some(err.as_str()));
    }

    #[test]
    fn restore_puts_the_backup_back_and_stops() {
        let tmp = tempfile::tempdir().unwrap();
        let t = target(tmp.path());
        let own = codex_file("acct-1", "codex-own-refresh");
        std::fs::write(t.path(), &own).unwrap();
        let now = SystemTime::now();
        let c = creds("acct-1", "a", now);
        t.sync(&c, now).unwrap();
        let done = t.restore(Some(c.refresh_token_id.as_str())).unwrap();
        assert_eq!(done.outcome, RestoreOutcome::BackupRestored);
        assert_eq!(std::fs::read(t.path()).unwrap(), own);
        assert_eq!(
            t.sync(&creds("acct-1", "b", now), now).unwrap(),
            Synced::Idle
        );
        assert_eq!(std::fs::read(t.path()).unwrap(), own);
        assert!(t.status().last_error.unwrap().contains("--restore"));
    }

    #[test]
    fn restore_without_backup_removes_only_our_file() {
        let tmp = tempfile::tempdir().unwrap();
        let t = target(tmp.path());
        let now = SystemTime::now();
        let c = creds("acct-1", "a", now);
        t.sync(&c, now).unwrap();
        assert!(!file::backup_path(t.path()).exists());
        assert_eq!(
            t.restore(Some(c.refresh_token_id.as_str()))
                .unwrap()
                .outcome,
            RestoreOutcome::Removed
        );
        assert!(!t.path().exists());
    }

    #[test]
    fn the_brokers_own_refresh_token_is_neither_backed_up_nor_restored() {
        let tmp = tempfile::tempdir().unwrap();
        let t = target(tmp.path());
        let now = SystemTime::now();
        let c = creds("acct-1", "a", now);
        // The file the user imported from: it holds the broker's refresh token.
        std::fs::write(t.path(), codex_file("acct-1", "broker-refresh-token")).unwrap();
        t.sync(&c, now).unwrap();
        assert!(!file::backup_path(t.path()).exists());
        // A backup holding it (e.g. made by hand) is refused.
        std::fs::write(
            file::backup_path(t.path()),
            codex_file("acct-1", "broker-refresh-token"),
        )
        .unwrap();
        let err = t.restore(Some(c.refresh_token_id.as_str())).unwrap_err();
        assert!(err.contains("refresh_token_reused"), "{err}");
        assert!(!t.is_stopped());
    }
}
