//! Whether another local user could change a file the broker trusts.
//!
//! The config file decides where the refresh token is sent (`token_endpoint`),
//! the client secret authenticates the broker, and the socket directory decides
//! who clients talk to. If another user can write such a file, or replace it by
//! writing a directory above it, that user receives the refresh token. The rule
//! is the one ssh applies to its config: every directory on the way, and the
//! file itself, must belong to this user or root and must not be writable by
//! group or others, except directories with the sticky bit (like `/tmp`), where
//! others cannot remove or rename our entries.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a path is not trusted. Callers phrase the fix in their own terms; each
/// variant names the offending path.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    /// A file or directory of another user (not root).
    #[error("{} belongs to uid {owner}, not to this user (uid {me}) or root", path.display())]
    Owner {
        /// The offending file or directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our uid.
        me: u32,
    },
    /// Group or others may write it (a directory without the sticky bit).
    #[error("{} is writable by group or others (mode {mode:o})", path.display())]
    Writable {
        /// The offending file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It cannot be inspected.
    #[error("cannot inspect {}: {source}", path.display())]
    Inspect {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl Untrusted {
    /// The offending path.
    pub fn path(&self) -> &Path {
        match self {
            Untrusted::Owner { path, .. }
            | Untrusted::Writable { path, .. }
            | Untrusted::Inspect { path, .. } => path,
        }
    }

    /// The one-line refusal of `file` (`what`: "config file", …) because of
    /// this, with the consequence (`risk`) and the command that fixes it.
    pub fn refusal(&self, what: &str, file: &Path, risk: &str) -> String {
        let fix = match self {
            Untrusted::Writable { path, .. } => format!("run `chmod go-w {}`", path.display()),
            Untrusted::Owner { path, me, .. } => format!(
                "run `chown {me} {}` as root, or keep the file in a directory of your own",
                path.display()
            ),
            Untrusted::Inspect { .. } => return format!("{what} {}: {self}", file.display()),
        };
        let place = if self.path() == file {
            ""
        } else {
            " (a directory above it)"
        };
        format!(
            "{what} {} is refused: {self}{place}, so {risk}; {fix} and start again",
            file.display()
        )
    }
}

/// One directory: owned by this user or root, and not writable by group or
/// others unless sticky.
pub fn check_dir(dir: &Path) -> Result<(), Untrusted> {
    let meta = fs::metadata(dir).map_err(|source| Untrusted::Inspect {
        path: dir.to_path_buf(),
        source,
    })?;
    check_owner(&meta, dir)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(Untrusted::Writable {
            path: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// The metadata of an opened file (so the check is about the very inode that
/// was read): owned by this user or root, not writable by group or others.
pub fn check_file_meta(meta: &fs::Metadata, path: &Path) -> Result<(), Untrusted> {
    check_owner(meta, path)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Untrusted::Writable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Every directory above `path`, up to and including `$HOME` when `path` is
/// under it, else up to `/` — both as written (a symlink's own directory
/// decides who can swap the link) and with symlinks resolved (the directories
/// that really hold the file).
pub fn check_parents(path: &Path, home: Option<&Path>) -> Result<(), Untrusted> {
    let inspect = |source| Untrusted::Inspect {
        path: path.to_path_buf(),
        source,
    };
    let written = std::path::absolute(path).map_err(inspect)?;
    let real = fs::canonicalize(path).map_err(inspect)?;
    let home_real = home.and_then(|h| fs::canonicalize(h).ok());
    let homes: Vec<&Path> = home.into_iter().chain(home_real.as_deref()).collect();
    for file in [&written, &real] {
        for dir in file.ancestors().skip(1) {
            check_dir(dir)?;
            if homes.contains(&dir) {
                break;
            }
        }
    }
    Ok(())
}

/// `$HOME` when set and not empty: where [`check_parents`] stops.
pub fn home_from_env() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn check_owner(meta: &fs::Metadata, path: &Path) -> Result<(), Untrusted> {
    let me = nix::unistd::getuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(Untrusted::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_tree_passes_and_a_writable_directory_on_the_way_is_named() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("shared/config");
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.toml");
        fs::write(&file, "x").unwrap();
        check_parents(&file, None).unwrap();

        chmod(&root.path().join("shared"), 0o777);
        match check_parents(&file, None) {
            Err(Untrusted::Writable { path, mode }) => {
                assert_eq!(path, root.path().join("shared"));
                assert_eq!(mode, 0o777);
            }
            other => panic!("{other:?}"),
        }
        // Sticky like /tmp: others cannot rename our entries.
        chmod(&root.path().join("shared"), 0o1777);
        check_parents(&file, None).unwrap();
    }

    #[test]
    fn the_walk_stops_at_home() {
        let root = tempfile::tempdir().unwrap();
        chmod(root.path(), 0o777);
        let home = root.path().join("home");
        fs::create_dir(&home).unwrap();
        let file = home.join("a.toml");
        fs::write(&file, "x").unwrap();
        check_parents(&file, Some(&home)).unwrap();
        assert!(check_parents(&file, None).is_err());
    }

    #[test]
    fn a_symlink_in_a_writable_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let private = root.path().join("private");
        let open = root.path().join("open");
        fs::create_dir(&private).unwrap();
        fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        let file = private.join("a.toml");
        fs::write(&file, "x").unwrap();
        let link = open.join("a.toml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        check_parents(&file, None).unwrap();
        let err = check_parents(&link, None).unwrap_err();
        assert_eq!(err.path(), open);
    }

    #[test]
    fn a_writable_file_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("a.toml");
        fs::write(&file, "x").unwrap();
        chmod(&file, 0o644);
        check_file_meta(&fs::metadata(&file).unwrap(), &file).unwrap();
        chmod(&file, 0o664);
        let err = check_file_meta(&fs::metadata(&file).unwrap(), &file).unwrap_err();
        assert!(err.to_string().contains("mode 664"), "{err}");
    }
}
