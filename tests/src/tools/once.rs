//! Installing something once per machine, however many test processes and
//! threads ask for it at the same time.
//!
//! Why a lock file and a marker: several test binaries (or several
//! `cargo test` runs) can start the same install together, and a run can be
//! killed half-way through a download. An exclusive `flock` on a lock file
//! beside the install lets one installer work while the others wait; the
//! marker, written last and only after the installed tool was checked, is
//! what "installed" means. No marker (or one with other contents, e.g. after
//! a version bump) means the install is redone from scratch.

use super::note;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One install: what it is called in messages, and its lock and marker.
pub(super) struct Install {
    /// "Codex CLI 0.169.0 (npm @openai/codex)".
    pub what: String,
    /// Where it goes, for messages.
    pub dir: PathBuf,
    /// The lock file; must lie outside anything the install deletes.
    pub lock: PathBuf,
    /// Written last; holds `stamp`.
    pub marker: PathBuf,
    /// What the marker must contain for the install to count: the version,
    /// or a hash of the lockfile it was installed from.
    pub stamp: String,
}

impl Install {
    fn is_done(&self) -> bool {
        fs::read_to_string(&self.marker).is_ok_and(|text| text == self.stamp)
    }

    /// Runs `install` unless the marker says it already ran; waits for
    /// another process that is installing the same thing. `install` must
    /// start from a clean slate (it may find a half install) and check its
    /// result before returning `Ok`.
    pub fn run_once(&self, install: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        if self.is_done() {
            return Ok(());
        }
        let _lock = exclusive_lock(&self.lock, &self.what)?;
        if self.is_done() {
            // Another process installed it while this one waited.
            return Ok(());
        }
        let _ = fs::remove_file(&self.marker);
        note(&format!(
            "installing {} into {} (once; later runs reuse it)",
            self.what,
            self.dir.display()
        ));
        let started = Instant::now();
        install()?;
        write_marker(&self.marker, &self.stamp).map_err(|e| {
            format!(
                "cannot write {} after installing {}: {e}",
                self.marker.display(),
                self.what
            )
        })?;
        note(&format!(
            "installed {} in {:.0} s",
            self.what,
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }
}

/// An exclusive lock on `path` for installing `what`, released when the
/// returned value drops (or the process dies: the kernel releases a `flock`
/// with its last descriptor). Says so when it has to wait.
pub(super) fn exclusive_lock(path: &Path, what: &str) -> Result<Flock<File>, String> {
    let fail = |e: &dyn std::fmt::Display| {
        format!("cannot lock {} to install {what}: {e}", path.display())
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| fail(&e))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| fail(&e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((file, Errno::EWOULDBLOCK)) => {
            note(&format!(
                "waiting for another process that is installing {what}"
            ));
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| fail(&e))
        }
        Err((_, e)) => Err(fail(&e)),
    }
}

/// Temp file, then rename: a marker is either complete or absent.
fn write_marker(marker: &Path, stamp: &str) -> std::io::Result<()> {
    let tmp = marker.with_extension("tmp");
    fs::write(&tmp, stamp)?;
    fs::rename(&tmp, marker)
}
