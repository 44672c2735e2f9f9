//! The Python client (`client/python/`) against the real brokerd: this test
//! starts three brokers on a fake authorization server (logged in, logged out,
//! refresh family revoked at the server) and runs the Python suite with
//! `python3 -m unittest`, passing their sockets in environment variables.
//!
//! python3 is required: without it the test fails (it never passes silently),
//! and every Python test must run, none may be skipped.

use crate::common::{fake_with_ttl, stderr, stdout, Broker};
use oauth_broker_tests::harness::run_with_timeout;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Tokens that live an hour: no proactive refresh interferes with counting
/// refreshes or comparing tokens.
fn long_lived() -> oauth_broker_tests::fake_server::FakeConfig {
    fake_with_ttl(Duration::from_secs(3600))
}

fn python3() -> PathBuf {
    oauth_broker_tests::tools::ensure_system_tools();
    let found = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join("python3"))
        .find(|path| path.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "python3 not found on PATH: the Python client's tests need it \
             (install the distribution's `python3` package)"
        )
    })
}

#[test]
fn python_client_suite_passes_against_brokerd() {
    let python = python3();
    let logged_in = Broker::logged_in(long_lived());
    let logged_out = Broker::logged_out(long_lived());
    let revoked = Broker::logged_in(long_lived());
    let grant = revoked.grant.as_ref().unwrap();
    assert!(revoked.fake.revoke_family_of(grant.refresh()));

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/python");
    let mut cmd = Command::new(python);
    cmd.args(["-m", "unittest", "discover", "-v", "-s", "tests", "-t", "."])
        .current_dir(&dir)
        .env_clear()
        .envs(logged_in.env.base_env())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("OAUTH_BROKER_TEST_SOCKET", logged_in.broker.socket_path())
        .env(
            "OAUTH_BROKER_TEST_LOGGED_OUT_SOCKET",
            logged_out.broker.socket_path(),
        )
        .env(
            "OAUTH_BROKER_TEST_REVOKED_SOCKET",
            revoked.broker.socket_path(),
        );
    let out = run_with_timeout(cmd, None, Duration::from_secs(120)).expect("run python3");
    // unittest reports on stderr.
    let report = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        out.status.success(),
        "Python client tests failed:\n{report}"
    );
    assert!(report.contains("\nOK"), "{report}");
    assert!(
        !report.contains("skipped"),
        "Python tests were skipped:\n{report}"
    );
    let ran: u32 = report
        .lines()
        .find_map(|l| l.strip_prefix("Ran ")?.split(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(ran >= 20, "only {ran} Python tests ran:\n{report}");

    // No token reached any broker log or the test output.
    for setup in [&logged_in, &logged_out, &revoked] {
        let logs = setup.logs();
        for token in setup.fake.all_issued_tokens() {
            assert!(!logs.contains(&token), "a token is in brokerd's log");
            assert!(!report.contains(&token), "a token is in the Python output");
        }
    }
}
