//! The file operations of a projection target: atomic private writes, the
//! one-time backup, and telling our own last write from someone else's.
//!
//! Why atomic: the tools re-read their credential file at any moment (Codex
//! after a 401, Claude Code before every request); a reader must see either the
//! old or the new file, never half of one. Why 0600 from the first byte: the
//! file holds a live access token.

use super::in_place;
use crate::capped_read::{open_nonblocking, read_capped};
use crate::durable::{self, DurableError};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Appended to the tool's file name for the copy of what was there before the
/// broker first wrote it (`auth.json.oauth-broker-backup`).
pub const BACKUP_SUFFIX: &str = ".oauth-broker-backup";

/// Credential files are a few KiB; anything far larger is not one.
const MAX_FILE: u64 = 1024 * 1024;

/// One version of a file as `stat` sees it (or, for a document kept inside a
/// database, a hash of its contents). Recorded after each of our writes: a
/// different stamp later means the tool (or the user) replaced, edited or
/// removed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// A file of its own.
    File {
        dev: u64,
        ino: u64,
        len: u64,
        mtime_ns: i128,
    },
    /// A document inside a file others write too (a database row): its
    /// SHA-256, since the file's `stat` changes with every unrelated write.
    Contents([u8; 32]),
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp::File {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }

    /// The stamp of a document stored as `bytes`.
    pub fn of_contents(bytes: &[u8]) -> Stamp {
        use sha2::Digest as _;
        Stamp::Contents(sha2::Sha256::digest(bytes).into())
    }
}

/// The stamp of `path`, `None` when there is no file.
pub fn stamp(path: &Path) -> io::Result<Option<Stamp>> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(Stamp::of(&meta))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The contents of `path`, `None` when there is no file. A named pipe at the
/// path is an error, not a wait for a writer (which would hold the target's
/// lock and a blocking thread forever).
pub fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match open_nonblocking(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match read_capped(file, MAX_FILE)? {
        Some(bytes) => Ok(Some(bytes)),
        None => Err(io::Error::other(format!(
            "{} is larger than {MAX_FILE} bytes, so it is not a credential file",
            path.display()
        ))),
    }
}

/// Replaces `path` with `bytes` atomically and durably, mode 0600 from the
/// start: a temp file in the same directory, fsync, rename, fsync of the
/// directory. A missing parent directory is created with mode 0700. Returns
/// the stamp of the new file, taken from the written file itself before the
/// rename (which keeps inode, size and mtime): a `stat` of `path` afterwards
/// could see a tool's rewrite made meanwhile (the directory fsync takes a
/// while) and take it for ours, so the broker would never replace it.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<Stamp> {
    create_parent(path)?;
    // The callers name the path in their messages; keep the OS error alone.
    let written = durable::write(path, bytes).map_err(DurableError::into_io)?;
    Ok(Stamp::of(&written))
}

/// A failed [`replace`]: whether the rename onto the path was refused in a
/// way only an in-place write gets past (`EBUSY`, `EXDEV`), and the OS error.
#[derive(Debug)]
pub struct ReplaceError {
    /// The rename was refused with `EBUSY` or `EXDEV`; nothing was changed.
    pub rename_refused: bool,
    /// The OS error.
    pub source: io::Error,
}

/// [`write_private`], telling a refused rename apart from other failures.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<Stamp, ReplaceError> {
    let other = |source| ReplaceError {
        rename_refused: false,
        source,
    };
    create_parent(path).map_err(other)?;
    match durable::write(path, bytes) {
        Ok(written) => Ok(Stamp::of(&written)),
        Err(e) => Err(ReplaceError {
            rename_refused: e.step == durable::Step::Rename && in_place::rename_refused(&e.source),
            source: e.into_io(),
        }),
    }
}

/// Rewrites `path` in place (same inode, see [`in_place`]), creating it and
/// its directory when missing.
pub fn write_in_place(path: &Path, bytes: &[u8]) -> io::Result<Stamp> {
    create_parent(path)?;
    Ok(Stamp::of(&in_place::write(path, bytes)?))
}

/// Opens (creating it, mode 0600, and its directory, mode 0700) a tool's lock
/// file, to `flock` it. Its contents are never touched.
pub fn open_lock(path: &Path) -> io::Result<File> {
    create_parent(path)?;
    fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// Creates `path`'s directory, mode 0700, when it is missing.
fn create_parent(path: &Path) -> io::Result<()> {
    let dir = durable::parent(path)?;
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    Ok(())
}

/// Where the copy of the tool's own file is kept.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(BACKUP_SUFFIX);
    PathBuf::from(name)
}

/// Saves `bytes` (the file as the broker found it) as the backup, unless a
/// backup exists already: the first one is the tool's own login, later ones
/// would only be copies of the broker's writes. Returns whether it wrote one.
pub fn backup_once(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let backup = backup_path(path);
    if fs::symlink_metadata(&backup).is_ok() {
        return Ok(false);
    }
    write_private(&backup, bytes)?;
    Ok(true)
}

/// Puts the backup back in place of `path` (atomic rename) and syncs the
/// directory.
pub fn restore_backup(path: &Path) -> io::Result<()> {
    fs::rename(backup_path(path), path)?;
    durable::sync_dir(durable::parent(path)?)
}

/// Removes `path` (the broker's own projection) and syncs the directory.
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    durable::sync_dir(durable::parent(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_private_files_atomically_and_creates_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("home/.codex/auth.json");
        let first = write_private(&path, b"one").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let second = write_private(&path, b"two!").unwrap();
        assert_ne!(first, second);
        assert_eq!(stamp(&path).unwrap(), Some(second));
        // A tool rewriting the file in place (Claude Code's wipe) is not us.
        fs::write(&path, b"{}").unwrap();
        assert_ne!(stamp(&path).unwrap(), Some(second));
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("auth.json")]);
    }

    #[test]
    fn backup_is_taken_once_and_restored() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("auth.json");
        fs::write(&path, b"tool's own").unwrap();
        assert!(backup_once(&path, b"tool's own").unwrap());
        assert!(!backup_once(&path, b"broker's write").unwrap());
        assert_eq!(fs::read(backup_path(&path)).unwrap(), b"tool's own");
        assert_eq!(mode(&backup_path(&path)), 0o600);
        write_private(&path, b"broker's write").unwrap();
        restore_backup(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"tool's own");
        assert!(!backup_path(&path).exists());
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert_eq!(read(&path).unwrap(), None);
    }
}
