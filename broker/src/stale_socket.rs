//! Clearing the way for a Unix socket bind: shared by the broker's own socket
//! and the proxy's `listen` sockets.
//!
//! Why so careful: whatever sits at the path was put there by someone. Only a
//! socket that refuses connections (`ECONNREFUSED`) is provably dead, left by
//! a crash; a regular file (a typo in the path) is the user's data, and a
//! socket whose connect fails otherwise (`EACCES`, `EAGAIN` on a full
//! backlog) may hide a live server. Both are refused with a one-line error.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// Removes `path` when it is a stale socket; nothing there is fine too.
/// `what` names who might listen there ("a broker", "a proxy"), `fix` the
/// way out ("pass a different --socket").
pub fn clear(path: &Path, what: &str, fix: &str) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => anyhow::bail!(
                    "{what} is already listening on {}; stop it first or {fix}",
                    path.display()
                ),
                // Only "connection refused" proves that nobody listens; any other
                // failure (permissions, a full backlog) may hide a live server.
                Err(e) if e.kind() != std::io::ErrorKind::ConnectionRefused => anyhow::bail!(
                    "cannot tell whether {what} is listening on {} ({e}); remove the file if none runs, or {fix}",
                    path.display()
                ),
                Err(_) => {
                    tracing::info!(socket = %path.display(), "removing stale socket");
                    std::fs::remove_file(path).map_err(|e| {
                        anyhow::anyhow!("cannot remove stale socket {}: {e}", path.display())
                    })
                }
            }
        }
        Ok(_) => anyhow::bail!(
            "{} exists and is not a socket; remove it or {fix}",
            path.display()
        ),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dead_socket_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, "mine").unwrap();
        let err = clear(&file, "a proxy", "pick another path").unwrap_err();
        assert!(err.to_string().contains("is not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");

        let live = dir.path().join("live.sock");
        let listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
        let err = clear(&live, "a proxy", "pick another path").unwrap_err();
        assert!(err.to_string().contains("already listening"), "{err}");
        drop(listener);
        // The listener is gone, its file stays: connect is refused, so it goes.
        clear(&live, "a proxy", "pick another path").unwrap();
        assert!(!live.exists());
        clear(&live, "a proxy", "pick another path").unwrap();
    }
}
