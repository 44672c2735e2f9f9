//! Socket discovery through the real process environment. These tests mutate
//! environment variables, so they run one at a time under a lock (and live in
//! their own test binary, away from tests that connect by explicit path).

mod support;

use oauth_broker_client::{default_socket_path, Client, ACCOUNT_ENV, SOCKET_ENV};
use std::path::Path;
use std::sync::Mutex;
use support::{simple, FakeBroker};

static ENV_LOCK: Mutex<()> = Mutex::new(());

/// Sets variables for the duration of `f`, restoring the previous values.
fn with_env(vars: &[(&str, Option<&str>)], f: impl FnOnce()) {
    let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let saved: Vec<_> = vars
        .iter()
        .map(|(name, _)| (*name, std::env::var_os(name)))
        .collect();
    for (name, value) in vars {
        match value {
            Some(value) => std::env::set_var(name, value),
            None => std::env::remove_var(name),
        }
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    for (name, value) in saved {
        match value {
            Some(value) => std::env::set_var(name, value),
            None => std::env::remove_var(name),
        }
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn runtime_dir_and_account_from_the_environment() {
    with_env(
        &[
            (SOCKET_ENV, None),
            (ACCOUNT_ENV, Some("work")),
            ("XDG_RUNTIME_DIR", Some("/tmp/xdg-test")),
        ],
        || {
            assert_eq!(
                default_socket_path(None).unwrap(),
                Path::new("/tmp/xdg-test/oauth-broker/work.sock")
            );
            assert_eq!(
                default_socket_path(Some("personal")).unwrap(),
                Path::new("/tmp/xdg-test/oauth-broker/personal.sock")
            );
        },
    );
}

#[test]
fn socket_variable_wins() {
    with_env(
        &[
            (SOCKET_ENV, Some("/tmp/explicit.sock")),
            (ACCOUNT_ENV, Some("work")),
        ],
        || {
            assert_eq!(
                default_socket_path(Some("personal")).unwrap(),
                Path::new("/tmp/explicit.sock")
            );
        },
    );
}

#[test]
fn without_runtime_dir_uses_run_user_uid_or_a_private_temp_dir() {
    with_env(
        &[
            (SOCKET_ENV, None),
            (ACCOUNT_ENV, None),
            ("XDG_RUNTIME_DIR", None),
        ],
        || {
            let uid = nix::unistd::getuid().as_raw();
            let run_user = format!("/run/user/{uid}");
            let expected = if Path::new(&run_user).is_dir() {
                Path::new(&run_user).to_path_buf()
            } else {
                std::env::temp_dir().join(format!("oauth-broker-{uid}"))
            };
            assert_eq!(
                default_socket_path(None).unwrap(),
                expected.join("oauth-broker/default.sock")
            );
        },
    );
}

#[test]
fn client_connects_through_discovery() {
    let fake = FakeBroker::start(simple("x"));
    let runtime_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(runtime_dir.path().join("oauth-broker")).unwrap();
    let account_socket = runtime_dir.path().join("oauth-broker/acct.sock");
    std::os::unix::fs::symlink(&fake.path, &account_socket).unwrap();

    with_env(
        &[
            (SOCKET_ENV, None),
            (ACCOUNT_ENV, Some("acct")),
            (
                "XDG_RUNTIME_DIR",
                Some(runtime_dir.path().to_str().unwrap()),
            ),
        ],
        || {
            let client = Client::connect().unwrap();
            assert_eq!(client.socket_path(), account_socket);
        },
    );
    with_env(&[(SOCKET_ENV, Some(fake.path.to_str().unwrap()))], || {
        let client = Client::builder().account("ignored").connect().unwrap();
        assert_eq!(client.socket_path(), fake.path);
    });
    assert_eq!(fake.connections(), 2);
}
