//! Tests of the harness itself, with `stub-brokerd` standing in for the
//! real daemon (which is developed in parallel and tested in broker/tests).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig};
use oauth_broker_tests::harness::{
    generic_config, run_with_timeout, BrokerProcess, BrokerSpec, TestEnv, DEFAULT_RUST_LOG,
};

fn stub() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stub-brokerd"))
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn test_env_is_private_and_complete() {
    let env = TestEnv::new();
    assert_eq!(mode(env.root()), 0o700);
    for d in [
        env.home_dir(),
        env.state_dir(),
        env.run_dir(),
        env.config_dir(),
        env.logs_dir(),
    ] {
        assert!(d.is_dir(), "{}", d.display());
        assert_eq!(mode(&d), 0o700);
        assert!(d.starts_with(env.root()));
    }
    let vars = env.base_env();
    for key in [
        "HOME",
        "XDG_STATE_HOME",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_CACHE_HOME",
    ] {
        let (_, v) = vars.iter().find(|(k, _)| k == key).unwrap();
        assert!(Path::new(v).starts_with(env.root()), "{key}={v}");
    }
    let root = env.root().to_owned();
    drop(env);
    assert!(!root.exists(), "removed on drop");
}

#[test]
fn start_waits_for_the_socket_and_isolates_the_environment() {
    let env = TestEnv::new();
    let mut broker = BrokerProcess::start(
        BrokerSpec::new(stub(), &env, "preset = \"generic\"\n")
            .account("work")
            .with_env("EXTRA_VAR", "extra"),
    )
    .expect("stub starts");
    assert!(broker.is_running());
    assert_eq!(broker.socket_path(), env.run_dir().join("work.sock"));
    assert!(std::os::unix::net::UnixStream::connect(broker.socket_path()).is_ok());
    assert_eq!(broker.config_path(), env.config_dir().join("work.toml"));
    assert_eq!(mode(broker.config_path()), 0o600);
    assert_eq!(
        fs::read_to_string(broker.config_path()).unwrap(),
        "preset = \"generic\"\n"
    );

    let logs = broker.logs();
    let root = env.root().display().to_string();
    assert!(logs.contains(&format!("env HOME={root}/home\n")), "{logs}");
    assert!(logs.contains(&format!("env XDG_STATE_HOME={root}/state\n")));
    assert!(logs.contains(&format!("env XDG_RUNTIME_DIR={root}/run\n")));
    assert!(logs.contains(&format!("env XDG_CONFIG_HOME={root}/config\n")));
    assert!(logs.contains(&format!("env RUST_LOG={DEFAULT_RUST_LOG}\n")));
    assert!(logs.contains("env NO_COLOR=1\n"));
    assert!(logs.contains("env EXTRA_VAR=extra\n"));
    // Cargo's variables of this test process do not leak through.
    assert!(!logs.contains("env CARGO_MANIFEST_DIR="), "{logs}");
    assert!(logs.contains("\"--account\", \"work\""));
    assert!(logs.contains(&format!("\"--state-dir\", \"{root}/state/work\"")));

    let status = broker.terminate().unwrap();
    assert_eq!(status.signal(), Some(libc_sigterm()));
    assert!(!broker.is_running());
}

fn libc_sigterm() -> i32 {
    nix::sys::signal::Signal::SIGTERM as i32
}

#[test]
fn early_exit_is_an_error_with_the_log() {
    let env = TestEnv::new();
    let err = BrokerProcess::start(BrokerSpec::new(stub(), &env, "").with_env("STUB_MODE", "exit"))
        .expect_err("stub exits");
    let msg = format!("{err:#}");
    assert!(msg.contains("exited before it was ready"), "{msg}");
    assert!(msg.contains("failing on purpose"), "{msg}");

    let mut p =
        BrokerProcess::spawn(BrokerSpec::new(stub(), &env, "").with_env("STUB_MODE", "exit"))
            .unwrap();
    assert_eq!(
        p.wait_exit(Duration::from_secs(10)).unwrap().code(),
        Some(3)
    );
}

#[test]
fn terminate_escalates_to_sigkill() {
    let env = TestEnv::new();
    let mut broker = BrokerProcess::start(
        BrokerSpec::new(stub(), &env, "").with_env("STUB_MODE", "ignore-term"),
    )
    .unwrap();
    let start = Instant::now();
    let status = broker
        .terminate_with_timeout(Duration::from_millis(200))
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(nix::sys::signal::Signal::SIGKILL as i32)
    );
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[test]
fn drop_kills_and_restart_reuses_the_environment() {
    let env = TestEnv::new();
    let spec = BrokerSpec::new(stub(), &env, "");
    let pid = {
        let broker = BrokerProcess::start(spec.clone()).unwrap();
        broker.pid()
    };
    let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None);
    assert!(gone.is_err(), "pid {pid} still exists");

    // A second start in the same environment (e.g. after a crash).
    let mut again = BrokerProcess::start(spec).unwrap();
    assert_ne!(
        again.log_path(),
        env.logs_dir().join("brokerd-default-1.log")
    );
    again.kill().unwrap();
    let all = env.all_logs();
    assert_eq!(all.matches("stub-brokerd ready").count(), 2, "{all}");
}

#[test]
fn brokerctl_gets_the_socket_env_and_stdin() {
    let env = TestEnv::new();
    let broker =
        BrokerProcess::start(BrokerSpec::new(stub(), &env, "").with_env("EXTRA_VAR", "x")).unwrap();
    // The stub acts as brokerctl when its first argument is --socket.
    let ctl = stub();
    let out =
        broker.brokerctl_with_stdin(&ctl, &["import", "-"], Some(b"{\"refresh_token\":\"x\"}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2));
    let sock = broker.socket_path().display().to_string();
    assert!(
        stdout.contains(&format!("args: --socket {sock} import -")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("env HOME={}\n", env.home_dir().display())));
    assert!(stdout.contains(&format!("env OAUTH_BROKER_SOCKET={sock}\n")));
    assert!(stdout.contains("env EXTRA_VAR=x\n"));
    assert!(stdout.contains("stdin: {\"refresh_token\":\"x\"}"));

    let out = broker.brokerctl(&ctl, &["status"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("args: --socket {sock} status")),
        "{stdout}"
    );
    assert!(stdout.contains("stdin: \n"), "no stdin: {stdout}");
}

#[test]
fn run_with_timeout_kills_hung_commands() {
    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    let out = run_with_timeout(cmd, None, Duration::from_millis(100)).unwrap();
    assert_eq!(
        out.status.signal(),
        Some(nix::sys::signal::Signal::SIGKILL as i32)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("killed after"));
}

#[test]
fn generic_config_points_at_the_fake_server() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let cfg = generic_config(&fake);
    let base = fake.base_url();
    let expected = format!(
        "preset = \"generic\"\n\
         token_endpoint = \"{base}/oauth/token\"\n\
         device_authorization_endpoint = \"{base}/oauth/device/code\"\n\
         authorization_endpoint = \"{base}/oauth/authorize\"\n\
         revocation_endpoint = \"{base}/oauth/revoke\"\n\
         client_id = \"test-client\"\n\
         scopes = [\"openid\", \"offline_access\"]\n\
         refresh_body = \"form\"\n"
    );
    assert_eq!(cfg, expected);
}
