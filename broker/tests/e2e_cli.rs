//! brokerctl against the real daemon: exit codes, output shapes, import errors,
//! logout.

use crate::common::{brokerctl, fake_with_ttl, stderr, stdout, Broker};
use oauth_broker_tests::fake_server::FakeConfig;
use std::time::Duration;

#[test]
fn status_exit_codes_follow_the_login_state() {
    let mut setup = Broker::logged_out(FakeConfig::default());
    let out = setup.ctl(&["status"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "not logged in: {}",
        stdout(&out)
    );
    setup.import_fresh_grant();
    let out = setup.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid"), "{}", stdout(&out));

    // No broker at all.
    let out = std::process::Command::new(brokerctl())
        .args(["--socket", "/nonexistent/oauth-broker.sock", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr(&out).trim_end().lines().count(),
        1,
        "{}",
        stderr(&out)
    );
}

#[test]
fn token_prints_the_token_alone_or_one_json_object() {
    let setup = Broker::logged_in(fake_with_ttl(Duration::from_secs(120)));
    let out = setup.ctl(&["token"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.ends_with('\n'));
    let token = text.trim_end();
    assert!(!token.contains(char::is_whitespace));
    assert!(setup.fake.is_access_token_valid(token));

    let out = setup.ctl(&["token", "--json", "--min-valid", "10"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["access_token"], token);
    assert_eq!(v["token_type"], "Bearer");
    let expires_in = v["expires_in"].as_u64().unwrap();
    assert!(expires_in > 0 && expires_in <= 120, "{v}");
    assert!(v["expires_at"].as_u64().unwrap() > 0);
    assert_eq!(v["token_id"].as_str().unwrap().len(), 12);
}

#[test]
fn bad_import_input_is_one_clear_line_and_keeps_the_login() {
    let setup = Broker::logged_in(fake_with_ttl(Duration::from_secs(120)));
    for (input, needle) in [
        (&b"not json"[..], "JSON"),
        (br#"{"access_token":"abc"}"#, "refresh_token"),
        (br#"{"refresh_token":""}"#, "refresh_token"),
    ] {
        let out = setup.ctl_stdin(&["import", "-"], input);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(!err.contains("abc"), "input echoed: {err}");
    }
    // The existing login is untouched.
    setup.client().token(Duration::ZERO).unwrap();
}

#[test]
fn logout_forgets_the_login_and_revokes_it() {
    let setup = Broker::logged_in(fake_with_ttl(Duration::from_secs(120)));
    let out = setup.ctl(&["logout"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(setup.fake.stats().revocation_requests, 1);
    let rt = setup.grant.as_ref().unwrap().refresh_token.clone().unwrap();
    assert!(
        !setup.fake.is_refresh_token_current(&rt),
        "revoked at the server"
    );
    let err = setup.client().token(Duration::ZERO).unwrap_err();
    assert!(err.is_not_logged_in(), "{err:?}");
    assert!(!setup.env.state_dir().join("default/state.journal").exists());
    assert!(!setup.env.state_dir().join("default/state.json").exists());
}

#[test]
fn importing_the_same_tokens_again_after_a_rotation_is_refused() {
    let setup = Broker::logged_in(fake_with_ttl(Duration::from_secs(120)));
    let grant = setup.grant.clone().unwrap();
    // Importing the very same login again is harmless.
    let out = setup.ctl_stdin(&["import", "-"], grant.to_import_json().as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    // After the broker rotated it, the old copy is burned: adopting it would be
    // a replay that revokes the whole family at the server. Refused instead.
    let token = setup.client().token(Duration::ZERO).unwrap();
    setup.client().unauthorized(&token).unwrap();
    let out = setup.ctl_stdin(&["import", "-"], grant.to_import_json().as_bytes());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already spent"), "{}", stderr(&out));
    setup.client().token(Duration::ZERO).unwrap();
    let stats = setup.fake.stats();
    assert_eq!(stats.reuse_detections, 0);
    assert_eq!(stats.families_revoked, 0);
}

/// brokerctl starts without std's start-up (`ctl/start.rs`): what std did and
/// brokerctl relies on still holds. A reader that went away is an error with
/// exit 1 (SIGPIPE stays ignored), not a death by signal; a closed stdout is
/// reopened on /dev/null before the socket is opened, so the token cannot land
/// in the socket, and the token is still served.
#[test]
fn token_start_up_keeps_sigpipe_ignored_and_standard_fds_open() {
    let setup = Broker::logged_in(fake_with_ttl(Duration::from_secs(120)));

    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let out = setup
        .broker
        .brokerctl_command(&brokerctl(), &["token"])
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{:?} {}",
        out.status,
        stderr(&out)
    );
    assert!(stderr(&out).contains("Broken pipe"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("eyJ"),
        "no token in: {}",
        stderr(&out)
    );

    // `sh` closes fd 1 and execs brokerctl.
    let env = setup.broker.client_env().to_vec();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"exec "$0" --socket "$1" token >&-"#)
        .arg(brokerctl())
        .arg(setup.broker.socket_path())
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    // The broker saw a well-formed exchange, nothing written into the socket
    // after it: a plain token still comes.
    assert!(setup.ctl(&["token"]).status.success());
}
