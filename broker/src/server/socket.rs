//! Binding the Unix socket: private directory, 0600 socket, stale-file probe.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

/// A bound socket that removes its file on drop — but only if the file is still
/// the one we created (a newer broker may have replaced it).
#[derive(Debug)]
pub struct BoundSocket {
    path: PathBuf,
    ino: u64,
    dev: u64,
}

impl BoundSocket {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records an inherited (socket-activated) socket: never removed by us.
    pub fn inherited(path: PathBuf) -> Self {
        BoundSocket {
            path,
            ino: 0,
            dev: 0,
        }
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if self.ino == 0 {
            return;
        }
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.ino() == self.ino && meta.dev() == self.dev {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds `path`. The parent directory is created 0700 when missing. An existing
/// file is removed only if it is a socket nobody answers on (stale, left by a
/// crash); a live broker's socket is never unlinked.
pub fn bind(path: &Path) -> anyhow::Result<(UnixListener, BoundSocket)> {
    if let Some(message) = oauth_broker_client::socket_path_too_long(path) {
        anyhow::bail!("{message}");
    }
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    anyhow::anyhow!("cannot create socket directory {}: {e}", dir.display())
                })?;
        }
        check_socket_dir(dir)?;
    }
    crate::stale_socket::clear(path, "another broker", "pass a different --socket")?;
    // umask 0177 while binding: the socket is never reachable by others, not even
    // for the instant between bind() and chmod().
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener =
        listener.map_err(|e| anyhow::anyhow!("cannot bind socket {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| anyhow::anyhow!("cannot set permissions on {}: {e}", path.display()))?;
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot inspect socket {}: {e}", path.display()))?;
    Ok((
        listener,
        BoundSocket {
            path: path.to_path_buf(),
            ino: meta.ino(),
            dev: meta.dev(),
        },
    ))
}

/// Refuses a socket directory in which another user could replace the socket
/// (and so impersonate the broker to its clients, who send it `Import`ed
/// refresh tokens): it must belong to this user (or root) and must not be
/// writable by group or others, unless it is sticky like `/tmp`, where others
/// cannot remove or rename our files.
fn check_socket_dir(dir: &Path) -> anyhow::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    // Every directory on the way matters: whoever may rename an ancestor can swap
    // the socket's directory for one of their own (think of a fallback runtime dir
    // under /tmp that another user created first).
    let real = std::fs::canonicalize(dir)
        .map_err(|e| anyhow::anyhow!("cannot inspect socket directory {}: {e}", dir.display()))?;
    for ancestor in real.ancestors() {
        check_one_dir(ancestor, dir)?;
    }
    Ok(())
}

fn check_one_dir(dir: &Path, socket_dir: &Path) -> anyhow::Result<()> {
    use crate::trusted_path::{check_dir, Untrusted};
    match check_dir(dir) {
        Ok(()) => Ok(()),
        Err(Untrusted::Owner { owner, me, .. }) => anyhow::bail!(
            "{} (on the way to the socket directory {}) belongs to uid {owner}, not to this user (uid {me}); pass --socket in a directory of your own",
            dir.display(),
            socket_dir.display(),
        ),
        Err(Untrusted::Writable { mode, .. }) => anyhow::bail!(
            "{} is writable by group or others (mode {mode:o}), so another user could replace the socket; run `chmod go-w {}` or pass --socket in a private directory",
            dir.display(),
            dir.display()
        ),
        Err(Untrusted::Inspect { source, .. }) => anyhow::bail!(
            "cannot inspect socket directory {}: {source}",
            dir.display()
        ),
    }
}
