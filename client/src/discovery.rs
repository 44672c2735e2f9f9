//! Where the broker's socket is.
//!
//! The rules match `brokerd`'s, so a client and a broker started with the same
//! environment meet without configuration:
//!
//! 1. an explicit path ([`crate::ClientBuilder::socket`]);
//! 2. the `OAUTH_BROKER_SOCKET` environment variable;
//! 3. `$XDG_RUNTIME_DIR/oauth-broker/<account>.sock`, where the account is the
//!    explicit one, else `OAUTH_BROKER_ACCOUNT`, else `default`; without
//!    `XDG_RUNTIME_DIR` (cron jobs, `su`, some containers) `/run/user/<uid>` is used,
//!    which is what systemd-logind would have set it to, and where that does not
//!    exist (no logind at all), `$TMPDIR/oauth-broker-<uid>` (default
//!    `/tmp/oauth-broker-<uid>`), like ssh-agent. `brokerd` uses this very function.

use crate::Error;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Environment variable naming the socket explicitly.
pub const SOCKET_ENV: &str = "OAUTH_BROKER_SOCKET";
/// Environment variable naming the account.
pub const ACCOUNT_ENV: &str = "OAUTH_BROKER_ACCOUNT";
/// The account used when none is named.
pub const DEFAULT_ACCOUNT: &str = "default";

/// The longest path a Unix socket address holds: `sun_path` has 108 bytes on
/// Linux (104 on macOS and the BSDs), one of them the terminating NUL.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const MAX_SOCKET_PATH_LEN: usize = 107;
/// The longest path a Unix socket address holds: `sun_path` has 108 bytes on
/// Linux (104 on macOS and the BSDs), one of them the terminating NUL.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub const MAX_SOCKET_PATH_LEN: usize = 103;

/// `None` when `path` fits in a Unix socket address; otherwise the one-line
/// error, naming the limit and the fix. Deep home directories and container
/// mounts make such paths easy to reach, and the kernel's own answer
/// ("File name too long", or std's "path must be shorter than SUN_LEN")
/// names neither; brokerd and the clients say this instead.
pub fn socket_path_too_long(path: &Path) -> Option<String> {
    let len = path.as_os_str().len();
    (len > MAX_SOCKET_PATH_LEN).then(|| {
        format!(
            "the socket path {} is {len} bytes, longer than the {MAX_SOCKET_PATH_LEN} bytes a Unix socket path may have; \
             use a shorter one (--socket or OAUTH_BROKER_SOCKET, e.g. under $XDG_RUNTIME_DIR; in a container, mount the socket directory at a short path such as /run/oauth-broker)",
            path.display()
        )
    })
}

/// The socket a client connects to when no path is given: `OAUTH_BROKER_SOCKET`,
/// else the account's socket in the runtime directory (see the module docs).
///
/// `account` overrides `OAUTH_BROKER_ACCOUNT`. Fails only for an account name
/// the broker would refuse (see [`crate::validate_account_name`]).
pub fn default_socket_path(account: Option<&str>) -> Result<PathBuf, Error> {
    resolve(
        None,
        account,
        |name| std::env::var_os(name),
        fallback_runtime_dir,
    )
}

/// The whole discovery with its inputs passed in, so that it can be tested
/// without touching the process environment.
pub(crate) fn resolve(
    explicit_socket: Option<&Path>,
    explicit_account: Option<&str>,
    env: impl Fn(&str) -> Option<OsString>,
    fallback_runtime_dir: impl FnOnce() -> PathBuf,
) -> Result<PathBuf, Error> {
    if let Some(path) = explicit_socket {
        return Ok(path.to_path_buf());
    }
    // Empty variables count as unset: `OAUTH_BROKER_SOCKET= cmd` is a common way
    // to clear a setting.
    let env = |name: &str| env(name).filter(|value| !value.is_empty());
    if let Some(path) = env(SOCKET_ENV) {
        return Ok(PathBuf::from(path));
    }
    let account = match explicit_account {
        Some(account) => account.to_string(),
        None => match env(ACCOUNT_ENV) {
            Some(value) => value.into_string().map_err(|_| Error::Config {
                message: format!("{ACCOUNT_ENV} is not valid UTF-8"),
            })?,
            None => DEFAULT_ACCOUNT.to_string(),
        },
    };
    crate::account::validate_account_name(&account)?;
    // The XDG spec says to ignore a relative XDG_RUNTIME_DIR.
    let runtime_dir = env("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .unwrap_or_else(fallback_runtime_dir);
    Ok(runtime_dir
        .join("oauth-broker")
        .join(format!("{account}.sock")))
}

pub(crate) fn current_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// The runtime directory when `XDG_RUNTIME_DIR` is not set: logind's
/// `/run/user/<uid>` if it exists, else a per-user directory under the temp dir.
pub(crate) fn fallback_runtime_dir() -> PathBuf {
    let uid = current_uid();
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
    if run_user.is_dir() {
        run_user
    } else {
        std::env::temp_dir().join(format!("oauth-broker-{uid}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn no_uid() -> PathBuf {
        panic!("uid must not be needed")
    }

    #[test]
    fn explicit_path_wins_over_everything() {
        let env = env_of(&[(SOCKET_ENV, "/env.sock"), ("XDG_RUNTIME_DIR", "/xdg")]);
        let path = resolve(Some(Path::new("/explicit.sock")), Some("a"), env, no_uid).unwrap();
        assert_eq!(path, Path::new("/explicit.sock"));
    }

    #[test]
    fn socket_env_wins_over_account_discovery() {
        let env = env_of(&[
            (SOCKET_ENV, "/env.sock"),
            (ACCOUNT_ENV, "work"),
            ("XDG_RUNTIME_DIR", "/xdg"),
        ]);
        assert_eq!(
            resolve(None, Some("other"), env, no_uid).unwrap(),
            Path::new("/env.sock")
        );
    }

    #[test]
    fn account_precedence_explicit_then_env_then_default() {
        let env = env_of(&[(ACCOUNT_ENV, "work"), ("XDG_RUNTIME_DIR", "/xdg")]);
        assert_eq!(
            resolve(None, Some("personal"), &env, no_uid).unwrap(),
            Path::new("/xdg/oauth-broker/personal.sock")
        );
        assert_eq!(
            resolve(None, None, &env, no_uid).unwrap(),
            Path::new("/xdg/oauth-broker/work.sock")
        );
        let env = env_of(&[("XDG_RUNTIME_DIR", "/xdg")]);
        assert_eq!(
            resolve(None, None, env, no_uid).unwrap(),
            Path::new("/xdg/oauth-broker/default.sock")
        );
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let env = env_of(&[
            (SOCKET_ENV, ""),
            (ACCOUNT_ENV, ""),
            ("XDG_RUNTIME_DIR", "/xdg"),
        ]);
        assert_eq!(
            resolve(None, None, env, no_uid).unwrap(),
            Path::new("/xdg/oauth-broker/default.sock")
        );
    }

    #[test]
    fn missing_or_relative_runtime_dir_falls_back_to_run_user_uid() {
        assert_eq!(
            resolve(None, None, env_of(&[]), || PathBuf::from("/run/user/1234")).unwrap(),
            Path::new("/run/user/1234/oauth-broker/default.sock")
        );
        assert_eq!(
            resolve(
                None,
                Some("w"),
                env_of(&[("XDG_RUNTIME_DIR", "rel")]),
                || PathBuf::from("/run/user/7")
            )
            .unwrap(),
            Path::new("/run/user/7/oauth-broker/w.sock")
        );
    }

    #[test]
    fn bad_account_names_are_refused() {
        for bad in ["", "../x", "a/b", ".hidden", "a\0b", "a\nb", "a b", "ä"] {
            let err = resolve(
                None,
                Some(bad),
                env_of(&[("XDG_RUNTIME_DIR", "/x")]),
                no_uid,
            )
            .unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{bad:?}");
        }
        let err = resolve(None, None, env_of(&[(ACCOUNT_ENV, "../../etc")]), || {
            PathBuf::from("/run/user/1")
        })
        .unwrap_err();
        assert!(matches!(err, Error::Config { .. }));
    }

    #[test]
    fn real_uid_is_used() {
        assert_eq!(current_uid(), nix::unistd::getuid().as_raw());
    }
}
