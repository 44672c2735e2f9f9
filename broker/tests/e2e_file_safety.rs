//! The files brokerd trusts, against the real daemon:
//!
//! * a config file (or `client_secret_file`) another user could write — the
//!   file itself, its owner, or a directory above it — is refused at start
//!   with the `chmod`/`chown` that fixes it: the config decides where the
//!   refresh token is sent;
//! * a config that is too large (`--config /dev/zero`) is refused without
//!   reading it all;
//! * a state file reached through a symlink, or one that names another
//!   account, or whose refresh token another account's state holds, is refused
//!   at start; a symlinked lock file is refused without touching its target;
//! * importing a refresh token another account holds is a `bad_request`
//!   naming that account (one writer per token family);
//! * of two brokers started at the same instant, the loser names the
//!   winner's pid; a state directory that is a file is reported once, with
//!   the fix.

use crate::common::{brokerctl, brokerd, stderr};
use oauth_broker_client::{Client, Error, ImportTokens, SecretString};
use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig, IssuedTokens};
use oauth_broker_tests::harness::{
    generic_config, run_with_timeout, Backoff, BrokerProcess, BrokerSpec, TestEnv,
};
use std::fs::{self, File, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const NOBODY: u32 = 65534;
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// `brokerd` for `account` in `env` with the config file `config` (the
/// harness always writes its own 0600 config; these tests need other ones).
fn brokerd_command(env: &TestEnv, account: &str, config: &Path) -> Command {
    let mut cmd = Command::new(brokerd());
    cmd.arg("--config")
        .arg(config)
        .arg("--account")
        .arg(account)
        .arg("--socket")
        .arg(env.socket_path(account))
        .arg("--state-dir")
        .arg(env.state_dir().join(account))
        .env_clear()
        .envs(env.base_env())
        .current_dir(env.root());
    cmd
}

/// Runs `cmd`, which must refuse to start (exit 1, not killed by the time
/// limit); returns its one `brokerd: …` error line.
fn refusal_line(cmd: Command, what: &str) -> String {
    let out = run_with_timeout(cmd, None, EXIT_WAIT).expect("run brokerd");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{what}: {}\n{err}", out.status);
    error_line(&err, what)
}

/// The single `brokerd: …` line of a refused start's output.
fn error_line(output: &str, what: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .filter(|l| l.starts_with("brokerd: "))
        .collect();
    assert_eq!(lines.len(), 1, "{what}: not one error line:\n{output}");
    assert!(!output.contains("panicked"), "{what}: panic:\n{output}");
    lines[0].to_string()
}

/// Spawns brokerd through the harness, expecting it to refuse to start;
/// returns its error line.
fn refused(spec: BrokerSpec<'_>, what: &str) -> String {
    let mut broker = BrokerProcess::spawn(spec).expect("spawn brokerd");
    let status = broker.wait_exit(EXIT_WAIT).unwrap_or_else(|| {
        panic!(
            "{what}: brokerd did not refuse to start:\n{}",
            broker.logs()
        )
    });
    assert!(!status.success(), "{what}: exit {status}");
    error_line(&broker.logs(), what)
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
}

fn write_with_mode(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap();
    chmod(path, mode);
}

fn private_dir(path: &Path) {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .unwrap();
}

#[test]
fn a_config_file_others_can_write_is_refused_with_the_chmod_that_fixes_it() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let env = TestEnv::new();
    let config = env.home_dir().join("broker.toml");
    write_with_mode(&config, &generic_config(&fake), 0o666);

    let line = refusal_line(
        brokerd_command(&env, "default", &config),
        "world-writable config",
    );
    assert!(line.contains(&config.display().to_string()), "{line}");
    assert!(
        line.contains(&format!("`chmod go-w {}`", config.display())),
        "{line}"
    );
    assert!(!env.socket_path("default").exists(), "it must not serve");

    // Group-writable is as bad as world-writable.
    chmod(&config, 0o620);
    let line = refusal_line(
        brokerd_command(&env, "default", &config),
        "group-writable config",
    );
    assert!(line.contains("mode 620"), "{line}");
}

#[test]
fn a_config_in_a_directory_others_can_write_is_refused_and_starts_once_fixed() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let env = TestEnv::new();
    // The harness writes <root>/config/default.toml (0600): the file is fine,
    // but anyone may rename it away and put their own in its place.
    chmod(&env.config_dir(), 0o777);
    let line = refused(
        BrokerSpec::new(brokerd(), &env, generic_config(&fake)),
        "config in a world-writable directory",
    );
    let config = env.config_dir().join("default.toml");
    assert!(line.contains(&config.display().to_string()), "{line}");
    assert!(
        line.contains(&format!("`chmod go-w {}`", env.config_dir().display())),
        "{line}"
    );

    // A sticky directory (like /tmp): others cannot replace our file.
    chmod(&env.config_dir(), 0o1777);
    let mut broker = BrokerProcess::start(BrokerSpec::new(brokerd(), &env, generic_config(&fake)))
        .expect("a config in a sticky directory is accepted");
    broker.terminate().unwrap();

    chmod(&env.config_dir(), 0o700);
    BrokerProcess::start(BrokerSpec::new(brokerd(), &env, generic_config(&fake)))
        .expect("fixed as told, brokerd starts");
}

#[test]
fn a_config_owned_by_another_user_is_refused() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: only root can give a file to another user");
        return;
    }
    let fake = FakeAuthServer::start(FakeConfig::default());
    let env = TestEnv::new();
    let config = env.home_dir().join("broker.toml");
    write_with_mode(&config, &generic_config(&fake), 0o644);
    nix::unistd::chown(&config, Some(nix::unistd::Uid::from_raw(NOBODY)), None).unwrap();
    let line = refusal_line(
        brokerd_command(&env, "default", &config),
        "config of another user",
    );
    assert!(line.contains(&format!("belongs to uid {NOBODY}")), "{line}");
    assert!(
        line.contains(&format!("chown 0 {}", config.display())),
        "{line}"
    );
}

#[test]
fn a_client_secret_file_in_a_directory_others_can_write_is_refused() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let env = TestEnv::new();
    let shared = env.home_dir().join("shared");
    fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o777);
    let secret = shared.join("client-secret");
    write_with_mode(&secret, "s3cret\n", 0o600);
    let config = format!(
        "client_secret_file = {:?}\n{}",
        secret.display().to_string(),
        generic_config(&fake)
    );
    let line = refused(
        BrokerSpec::new(brokerd(), &env, config),
        "secret in a world-writable directory",
    );
    assert!(line.contains("client_secret_file"), "{line}");
    assert!(
        line.contains(&format!("`chmod go-w {}`", shared.display())),
        "{line}"
    );
    assert!(!line.contains("s3cret"), "{line}");
}

#[test]
fn an_oversized_config_is_refused_without_reading_it_all() {
    let env = TestEnv::new();
    // An endless device: without a cap brokerd would read until memory runs out.
    let line = refusal_line(
        brokerd_command(&env, "default", Path::new("/dev/zero")),
        "--config /dev/zero",
    );
    assert!(line.contains("/dev/zero"), "{line}");
    assert!(line.contains("larger than 1 MiB"), "{line}");

    // A 200 MB file (sparse: it costs no disk).
    let big = env.home_dir().join("big.toml");
    File::create(&big)
        .unwrap()
        .set_len(200 * 1024 * 1024)
        .unwrap();
    chmod(&big, 0o600);
    let line = refusal_line(brokerd_command(&env, "default", &big), "200 MB config");
    assert!(line.contains(&big.display().to_string()), "{line}");
    assert!(line.contains("larger than 1 MiB"), "{line}");
}

/// Starts a broker for `account` in `env`, imports a fresh grant and stops
/// it; returns the grant (its refresh token is now in the account's state).
fn logged_in_then_stopped(env: &TestEnv, fake: &FakeAuthServer, account: &str) -> IssuedTokens {
    let mut broker = BrokerProcess::start(
        BrokerSpec::new(brokerd(), env, generic_config(fake)).account(account),
    )
    .expect("brokerd starts");
    let grant = fake.issue_grant();
    let out = broker.brokerctl_with_stdin(
        &brokerctl(),
        &["import", "-"],
        Some(grant.to_import_json().as_bytes()),
    );
    assert!(out.status.success(), "import: {}", stderr(&out));
    broker.terminate().unwrap();
    grant
}

/// The account's state journal.
fn state_file(env: &TestEnv, account: &str) -> PathBuf {
    env.state_dir().join(account).join("state.journal")
}

#[test]
fn a_state_file_reached_through_a_symlink_is_refused() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let env = TestEnv::new();
    let grant = logged_in_then_stopped(&env, &fake, "default");
    // The state now lives elsewhere and `default` only links to it (a second
    // broker pointed at the same file would spend the same refresh token).
    let elsewhere = env.home_dir().join("state.journal");
    fs::rename(state_file(&env, "default"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, state_file(&env, "default")).unwrap();

    let line = refused(
        BrokerSpec::new(brokerd(), &env, generic_config(&fake)),
        "symlinked state file",
    );
    assert!(line.contains("is a symbolic link"), "{line}");
    assert!(
        line.contains(&format!("rm {}", state_file(&env, "default").display())),
        "{line}"
    );
    assert_eq!(fake.stats().refresh_requests, 0, "no token may be spent");
    assert!(!env
        .all_logs()
        .contains(grant.refresh_token.as_deref().unwrap()));
}

#[test]
fn a_symlinked_lock_file_is_refused_and_its_target_left_alone() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let env = TestEnv::new();
    let dir = env.state_dir().join("default");
    private_dir(&dir);
    let precious = env.home_dir().join("precious");
    fs::write(&precious, b"do not overwrite").unwrap();
    std::os::unix::fs::symlink(&precious, dir.join("lock")).unwrap();

    let line = refused(
        BrokerSpec::new(brokerd(), &env, generic_config(&fake)),
        "symlinked lock",
    );
    assert!(line.contains("is a symbolic link"), "{line}");
    assert_eq!(fs::read(&precious).unwrap(), b"do not overwrite");
}

#[test]
fn a_state_file_of_another_account_or_sharing_its_refresh_token_is_refused() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let env = TestEnv::new();
    let grant = logged_in_then_stopped(&env, &fake, "home");
    let refresh_token = grant.refresh_token.clone().unwrap();

    // `home`'s state journal copied into `work`.
    private_dir(&env.state_dir().join("work"));
    let copy = state_file(&env, "work");
    fs::copy(state_file(&env, "home"), &copy).unwrap();
    chmod(&copy, 0o600);
    let spec = || BrokerSpec::new(brokerd(), &env, generic_config(&fake)).account("work");
    let line = refused(spec(), "state of another account");
    assert!(
        line.contains(r#"belongs to account "home", not to "work""#),
        "{line}"
    );
    assert!(line.contains("brokerctl --account work relogin"), "{line}");

    // The same state with its account field edited, as an earlier version's
    // `state.json`: the refresh token is still `home`'s, and two brokers
    // would spend it.
    fs::remove_file(&copy).unwrap();
    let copy = env.state_dir().join("work").join("state.json");
    let mut state = oauth_broker::store::read_state_dir(&env.state_dir().join("home"))
        .unwrap()
        .unwrap();
    state.account = "work".into();
    write_with_mode(&copy, &serde_json::to_string(&state).unwrap(), 0o600);
    let line = refused(spec(), "state sharing home's refresh token");
    assert!(line.contains(r#"also held by account "home""#), "{line}");
    assert!(line.contains("brokerctl --account work relogin"), "{line}");

    // Fixed as told (the copy moved aside): `work` starts, logged out, and
    // `home` still owns its login.
    fs::remove_file(&copy).unwrap();
    let mut work = BrokerProcess::start(spec()).expect("work starts");
    work.terminate().unwrap();
    let home = BrokerProcess::start(
        BrokerSpec::new(brokerd(), &env, generic_config(&fake)).account("home"),
    )
    .expect("home starts");
    drop(home);
    assert_eq!(fake.stats().refresh_requests, 0, "no token was spent twice");
    assert!(
        !env.all_logs().contains(&refresh_token),
        "token in the logs"
    );
}

#[test]
fn importing_a_refresh_token_another_account_holds_is_a_bad_request_naming_it() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let env = TestEnv::new();
    let home = BrokerProcess::start(
        BrokerSpec::new(brokerd(), &env, generic_config(&fake)).account("home"),
    )
    .expect("home starts");
    let grant = fake.issue_grant();
    let out = home.brokerctl_with_stdin(
        &brokerctl(),
        &["import", "-"],
        Some(grant.to_import_json().as_bytes()),
    );
    assert!(out.status.success(), "import into home: {}", stderr(&out));

    let work = BrokerProcess::start(
        BrokerSpec::new(brokerd(), &env, generic_config(&fake)).account("work"),
    )
    .expect("work starts");
    let out = work.brokerctl_with_stdin(
        &brokerctl(),
        &["import", "-"],
        Some(grant.to_import_json().as_bytes()),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(r#"account "home""#), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // Through the client crate: the error is a `bad_request`.
    let mut client = Client::builder()
        .socket(work.socket_path())
        .connect()
        .expect("client connects");
    let refused = client
        .import(ImportTokens {
            refresh_token: SecretString::from(grant.refresh_token.clone().unwrap()),
            access_token: None,
            expires_at: None,
            id_token: None,
            scope: None,
            token_type: None,
            account_id: None,
        })
        .unwrap_err();
    assert!(matches!(refused, Error::BadRequest { .. }), "{refused:?}");
    assert!(
        refused.to_string().contains(r#"account "home""#),
        "{refused}"
    );

    let status = work.brokerctl(&brokerctl(), &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["state"], "logged_out", "work adopted nothing");
    assert!(!env
        .all_logs()
        .contains(grant.refresh_token.as_deref().unwrap()));
}

#[test]
fn of_two_brokers_started_at_once_the_loser_names_the_winner_pid() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let env = TestEnv::new();
    let config = env.config_dir().join("default.toml");
    write_with_mode(&config, &generic_config(&fake), 0o600);
    for round in 0..8 {
        let mut children: Vec<_> = (0..2)
            .map(|n| {
                let log = env.logs_dir().join(format!("race-{round}-{n}.log"));
                let file = File::create(&log).unwrap();
                let mut cmd = brokerd_command(&env, "default", &config);
                cmd.stdin(Stdio::null())
                    .stdout(file.try_clone().unwrap())
                    .stderr(file);
                (cmd.spawn().expect("spawn brokerd"), log)
            })
            .collect();
        let loser = Backoff::new(EXIT_WAIT)
            .until(|| {
                children
                    .iter_mut()
                    .position(|(child, _)| child.try_wait().unwrap().is_some())
            })
            .unwrap_or_else(|| panic!("round {round}: neither brokerd refused the other"));
        let winner = children[1 - loser].0.id();
        let log = fs::read_to_string(&children[loser].1).unwrap();
        let line = error_line(&log, "the second brokerd");
        assert!(
            line.contains(&format!("pid {winner}")) && line.contains(&format!("kill {winner}")),
            "round {round}: the refusal does not name the winner {winner}: {line}"
        );
        assert!(!line.contains("unknown"), "{line}");
        for (child, _) in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_state_directory_that_is_a_file_is_reported_once_with_the_fix() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let env = TestEnv::new();
    let path = env.state_dir().join("default");
    write_with_mode(&path, "", 0o600);
    let line = refused(
        BrokerSpec::new(brokerd(), &env, generic_config(&fake)),
        "state dir is a file",
    );
    assert!(line.contains("is not a directory"), "{line}");
    assert!(line.contains("--state-dir"), "{line}");
    assert!(line.contains(&format!("mv {} ", path.display())), "{line}");
    assert!(
        line.matches("os error").count() <= 1,
        "cause repeated: {line}"
    );
}
