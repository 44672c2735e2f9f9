//! The one way the broker replaces a file: atomically and durably.
//!
//! Why one helper: the state file, the tools' credential files (projection) and
//! the systemd units must all survive a crash or power cut as either the old or
//! the new file, never a torn or empty one, and a secret must never be readable
//! by others, not even for an instant. The steps, each needed:
//!
//! 1. a temp file in the *same* directory (a rename across file systems is not
//!    atomic), created fresh (`O_CREAT|O_EXCL|O_NOFOLLOW`, so a leftover or a
//!    planted symlink is never written through) with its final mode at open;
//! 2. write, `fsync` the file (its data is on disk before its name is);
//! 3. `rename` over the final name (atomic for readers);
//! 4. `fsync` the directory (the rename itself survives a power cut).
//!
//! On failure the temp file is removed and the old file is left untouched.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of a replaced file unless the caller chooses another: private.
pub const PRIVATE_MODE: u32 = 0o600;

/// Which step of a durable write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The path has no parent directory or no file name.
    Name,
    /// Creating, writing or syncing the temp file.
    WriteTemp,
    /// Renaming the temp file over the final name.
    Rename,
    /// Syncing the directory after the rename.
    SyncDir,
}

/// A failed durable write: which file, which step, and the OS error. The old
/// file (if any) is unchanged unless the step is [`Step::SyncDir`], where the
/// new file is in place but may not survive a power cut.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct DurableError {
    /// The file that was being replaced.
    pub path: PathBuf,
    /// The failed step.
    pub step: Step,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl DurableError {
    /// The OS error alone, for callers whose messages already name the path.
    pub fn into_io(self) -> io::Error {
        self.source
    }
}

/// Replaces `path` with `bytes`, mode 0600. See the module docs for the steps.
/// Returns the written file's metadata, taken from the file itself before the
/// rename (which keeps inode, size and mtime): a `stat` of `path` afterwards
/// could already see another program's rewrite.
pub fn write(path: &Path, bytes: &[u8]) -> Result<fs::Metadata, DurableError> {
    write_with_mode(path, bytes, PRIVATE_MODE)
}

/// Replaces `path` with `bytes`; the new file has exactly `mode` (the umask
/// does not apply) from the moment it exists.
pub fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<fs::Metadata, DurableError> {
    let fail = |step: Step| {
        move |source: io::Error| DurableError {
            path: path.to_path_buf(),
            step,
            source,
        }
    };
    let dir = parent(path).map_err(fail(Step::Name))?;
    let tmp = temp_path(path).map_err(fail(Step::Name))?;
    let written = write_temp(&tmp, bytes, mode).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        fail(Step::WriteTemp)(e)
    })?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        fail(Step::Rename)(e)
    })?;
    sync_dir(dir).map_err(fail(Step::SyncDir))?;
    Ok(written)
}

/// `fsync` of a directory, so that a rename or unlink in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The temp file of `path`: `.<name>.tmp` in the same directory (hidden, and
/// recognisable as an interrupted write of `<name>`).
pub fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} names no file", path.display())))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(".tmp");
    Ok(parent(path)?.join(tmp))
}

/// The directory holding `path` (`.` is not guessed: a bare name is refused).
pub fn parent(path: &Path) -> io::Result<&Path> {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| io::Error::other(format!("{} has no parent directory", path.display())))
}

fn write_temp(tmp: &Path, bytes: &[u8], mode: u32) -> io::Result<fs::Metadata> {
    // A temp file left by a crash is stale by definition: remove it, so the
    // exclusive create below never writes into an old inode (or a symlink).
    match fs::remove_file(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(tmp)?;
    // The umask may have taken bits away from `mode` (0644 → 0600 under 077);
    // fchmod sets exactly what the caller asked for.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    file.metadata()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_file_with_mode_0600_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, b"one").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(mode(&path), 0o600);
        write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[test]
    fn the_caller_chooses_the_mode_regardless_of_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.service");
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        let result = write_with_mode(&path, b"[Unit]\n", 0o644);
        nix::sys::stat::umask(old);
        result.unwrap();
        assert_eq!(mode(&path), 0o644);
    }

    #[test]
    fn a_leftover_temp_file_is_replaced_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let tmp = temp_path(&path).unwrap();
        assert_eq!(tmp, dir.path().join(".auth.json.tmp"));
        fs::write(&tmp, b"stale and much longer than the new content").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o666)).unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        assert!(!tmp.exists());
    }

    #[test]
    fn a_symlink_planted_at_the_temp_name_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep me").unwrap();
        let path = dir.path().join("state.json");
        symlink(&victim, temp_path(&path).unwrap()).unwrap();
        write(&path, b"secret").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        assert!(!fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn a_failed_write_names_the_file_and_the_step_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        // The final name is a non-empty directory: rename fails after the
        // temp file was written.
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"x").unwrap();
        let err = write(&path, b"new").unwrap_err();
        assert_eq!(err.step, Step::Rename);
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(names(dir.path()), ["taken"]);

        let err = write(Path::new("bare-name"), b"x").unwrap_err();
        assert_eq!(err.step, Step::Name);
        assert!(err.to_string().contains("no parent directory"), "{err}");
    }

    #[test]
    fn a_missing_directory_is_an_error_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(&dir.path().join("no/such/file"), b"x").unwrap_err();
        assert_eq!(err.step, Step::WriteTemp);
        assert_eq!(err.into_io().kind(), io::ErrorKind::NotFound);
    }
}
