//! Writing a credential file in place (same inode), for targets that a
//! container bind-mounts as a single file.
//!
//! Why: a bind mount of one file pins the inode it was made from. The atomic
//! rename of [`durable`](crate::durable) puts a *new* inode at the path, so
//! the container keeps reading the old one, a token that expires and is never
//! replaced; and a rename onto the mount point itself fails with `EBUSY`.
//! Rewriting the same inode is the only write such a reader sees.
//!
//! The price is atomicity: a reader may `read()` while the file is being
//! rewritten. What a concurrent `read()` can observe on Linux, and what this
//! writer does about each case (measured by the projection tests, see the
//! README section "In-place writes"):
//!
//! * **A shorter file.** Truncating and writing lets a reader see an empty or
//!   half-written file. So the file never shrinks: the new content is padded
//!   with trailing spaces (JSON allows whitespace after the value) to the old
//!   length.
//! * **A longer file.** A write that extends the file updates its size after
//!   copying the data, so a reader could see the new bytes cut at the old
//!   length. So growth comes first and alone: spaces are appended after the
//!   old content (old JSON + spaces is still the old JSON), rounded up to
//!   whole pages so that growth is rare; the new content then overwrites
//!   offset 0 in one `pwrite` that does not change the size.
//! * **Old and new bytes mixed.** Buffered `read()` and `write()` of the same
//!   page are not serialised on ext4 or tmpfs (no lock is taken by the
//!   reader): a reader copying while the writer copies can get a prefix of one
//!   version and the rest of the other, valid JSON with a token that was never
//!   issued. Measured: a few in 10,000 overlapping rewrites. So the content
//!   write uses `O_DIRECT` where the file system supports it: the kernel then
//!   writes the blocks and drops the cached pages instead of copying over
//!   them, and a reader copies either the old cached page or, after the drop,
//!   the new one — never a mix within a page. Measured: none in 500,000 reads
//!   of a one-page file. A file longer than a page can still mix whole pages,
//!   which is why the tool's own lock is taken where it has one (Hermes) and
//!   why the README recommends bind-mounting the directory instead.
//!   File systems without `O_DIRECT` (some FUSE mounts) get a plain `pwrite`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Growth and `O_DIRECT` work in whole pages.
const PAGE: usize = 4096;

/// Rewrites `path` with `bytes` in place (see the module docs), creating it
/// with mode 0600 when it does not exist. Returns the file's metadata after
/// the write, for the target's "is this still our write" stamp.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<fs::Metadata> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let old_len = usize::try_from(meta.len()).map_err(io::Error::other)?;
    let len = round_up(old_len.max(bytes.len() + 1));
    if len > old_len {
        // Growth alone: old JSON followed by whitespace is still the old JSON.
        file.write_all_at(&vec![b' '; len - old_len], old_len as u64)?;
        file.sync_data()?;
    }
    let content = padded(bytes, len);
    let direct = match open_direct(path) {
        Some(direct) => write_direct(&direct, &content),
        None => Err(io::Error::from_raw_os_error(nix::libc::EINVAL)),
    };
    match direct {
        Ok(()) => {}
        // No O_DIRECT here (or not with this alignment): a plain pwrite.
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => file.write_all_at(&content, 0)?,
        Err(e) => return Err(e),
    }
    file.sync_data()?;
    file.metadata()
}

/// `bytes` followed by spaces and a final newline, `len` bytes in all
/// (`len > bytes.len()`).
fn padded(bytes: &[u8], len: usize) -> Vec<u8> {
    let mut content = Vec::with_capacity(len);
    content.extend_from_slice(bytes);
    content.resize(len - 1, b' ');
    content.push(b'\n');
    content
}

/// The smallest multiple of [`PAGE`] that is at least `n`.
fn round_up(n: usize) -> usize {
    n.div_ceil(PAGE) * PAGE
}

/// A second descriptor with `O_DIRECT`, when the file system supports it.
fn open_direct(path: &Path) -> Option<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_DIRECT | nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .ok()
}

/// One `pwrite` at offset 0 through `O_DIRECT`: the buffer must be aligned
/// to the block size, so the content is copied into an aligned window of a
/// larger buffer. `EINVAL` (a file system that accepted the flag but not this
/// alignment) makes the caller fall back to a plain `pwrite`.
fn write_direct(file: &File, content: &[u8]) -> io::Result<()> {
    let mut buffer = vec![0u8; content.len() + PAGE];
    let start = buffer.as_ptr().align_offset(PAGE);
    let window = &mut buffer[start..start + content.len()];
    window.copy_from_slice(content);
    match file.write_at(window, 0) {
        Ok(n) if n == content.len() => Ok(()),
        Ok(n) => Err(io::Error::other(format!(
            "short direct write: {n} of {} bytes",
            content.len()
        ))),
        Err(e) => Err(e),
    }
}

/// Whether `path` is a mount point of its own (a file bind-mounted over it,
/// as a container runtime does for a single-file volume): its mount differs
/// from its directory's. Compared by the kernel's mount ids
/// (`/proc/self/fdinfo`), since a bind mount from the same file system has
/// the same `st_dev`. `None` when it cannot be told (no such file, no /proc).
pub fn is_mount_point(path: &Path) -> Option<bool> {
    let file = File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let dir = File::open(path.parent()?).ok()?;
    let file_meta = file.metadata().ok()?;
    let dir_meta = dir.metadata().ok()?;
    if file_meta.dev() != dir_meta.dev() {
        return Some(true);
    }
    Some(mount_id(&file)? != mount_id(&dir)?)
}

/// The `mnt_id` the kernel reports for an open file.
fn mount_id(file: &File) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("mnt_id:"))
        .and_then(|id| id.trim().parse().ok())
}

/// Whether a failed rename says that only an in-place write can reach this
/// path: `EBUSY` (the path is a mount point) or `EXDEV` (the temp file and the
/// path are on different mounts).
pub fn rename_refused(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(nix::libc::EBUSY) | Some(nix::libc::EXDEV)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn never_shrinks_keeps_the_inode_and_parses() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("auth.json");
        let first = write(&path, br#"{"token":"a-long-first-token"}"#).unwrap();
        assert_eq!(first.len(), PAGE as u64);
        assert_eq!(first.permissions().mode() & 0o777, 0o600);
        let second = write(&path, br#"{"token":"b"}"#).unwrap();
        assert_eq!(second.ino(), first.ino());
        assert_eq!(second.len(), PAGE as u64);
        let value: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(value["token"], "b");
        // Growth beyond a page keeps the inode too.
        let big = format!(r#"{{"token":"{}"}}"#, "c".repeat(5000));
        let third = write(&path, big.as_bytes()).unwrap();
        assert_eq!((third.ino(), third.len()), (first.ino(), 2 * PAGE as u64));
        let value: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(value["token"].as_str().unwrap().len(), 5000);
    }

    #[test]
    fn a_plain_file_is_no_mount_point_and_ebusy_exdev_are_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("auth.json");
        assert_eq!(is_mount_point(&path), None);
        fs::write(&path, b"{}").unwrap();
        assert_eq!(is_mount_point(&path), Some(false));
        assert!(rename_refused(&io::Error::from_raw_os_error(
            nix::libc::EBUSY
        )));
        assert!(rename_refused(&io::Error::from_raw_os_error(
            nix::libc::EXDEV
        )));
        assert!(!rename_refused(&io::Error::from_raw_os_error(
            nix::libc::EACCES
        )));
    }
}
