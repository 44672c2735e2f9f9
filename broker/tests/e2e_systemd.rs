//! systemd integration: the shipped units and the ones `brokerctl service
//! install` writes pass `systemd-analyze verify`; brokerd started by
//! `systemd-socket-activate` serves tokens through the socket it was passed,
//! notifies READY/STATUS/STOPPING, logs journal-style and never unlinks the
//! socket it did not create.
//!
//! Needs `systemd-analyze` and `systemd-socket-activate` (Debian package
//! `systemd`, installed on first use when missing by
//! `oauth_broker_tests::tools::ensure_system_tools`). Missing tools fail the
//! tests, never skip them.

use crate::common::{brokerctl, brokerd, default_config, stderr, stdout};
use oauth_broker_client::{Client, ExposeSecret};
use oauth_broker_tests::fake_server::FakeAuthServer;
use oauth_broker_tests::harness::{run_with_timeout, Backoff, BrokerProcess, BrokerSpec, TestEnv};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);

/// The full path of a tool from the `systemd` package, or a failing test that
/// says how to get it.
fn systemd_tool(name: &str) -> PathBuf {
    oauth_broker_tests::tools::ensure_system_tools();
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/bin"])
    {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "{name} not found: install the distribution's `systemd` package \
         (e.g. `apt-get install systemd`)"
    );
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `systemd-analyze --user verify` on units (paths, or unit names found via
/// `unit_path`); fails the test with its output unless it is clean.
fn verify(env: &TestEnv, unit_path: &Path, units: &[&str]) {
    let mut cmd = Command::new(systemd_tool("systemd-analyze"));
    cmd.args(["--user", "verify"])
        .args(units)
        .env_clear()
        .envs(env.base_env())
        // Unit names resolve from this directory first (the trailing ':'
        // appends the built-in search path).
        .env("SYSTEMD_UNIT_PATH", format!("{}:", unit_path.display()))
        .current_dir(unit_path);
    let out = run_with_timeout(cmd, None, TIMEOUT).expect("run systemd-analyze");
    let err = stderr(&out);
    let complaints: Vec<&str> = err.lines().filter(|l| l.contains("oauth-broker")).collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify {units:?} failed ({}):\n{err}{}",
        out.status,
        stdout(&out)
    );
}

#[test]
fn shipped_units_pass_systemd_analyze_verify() {
    let env = TestEnv::new();
    let dir = env.path("units");
    fs::create_dir(&dir).unwrap();
    let brokerd = brokerd();
    for entry in fs::read_dir(repo_root().join("systemd")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".service") || name.ends_with(".socket")) {
            continue;
        }
        // The shipped ExecStart= names a distribution's /usr/bin/brokerd, which
        // verify would (rightly) report missing here.
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("/usr/bin/brokerd", brokerd.to_str().unwrap());
        fs::write(dir.join(&name), text).unwrap();
    }
    for name in [
        "oauth-broker.service",
        "oauth-broker.socket",
        "oauth-broker@.service",
        "oauth-broker@.socket",
    ] {
        assert!(dir.join(name).is_file(), "systemd/{name} is missing");
    }
    verify(
        &env,
        &dir,
        &["./oauth-broker.service", "./oauth-broker.socket"],
    );
    // Templates are verified as instances, as systemd loads them.
    verify(
        &env,
        &dir,
        &["oauth-broker@work.service", "oauth-broker@work.socket"],
    );
}

/// `brokerctl service install` with a temp HOME/XDG_CONFIG_HOME.
fn service_install(env: &TestEnv, args: &[&str]) -> Output {
    let mut cmd = Command::new(brokerctl());
    cmd.args(args).env_clear().envs(env.base_env());
    run_with_timeout(cmd, None, TIMEOUT).expect("run brokerctl")
}

#[test]
fn service_install_writes_units_that_verify_and_prints_the_enable_command() {
    let env = TestEnv::new();
    let unit_dir = env.config_dir().join("systemd/user");
    let expected_brokerd = brokerctl().parent().unwrap().join("brokerd");

    let out = service_install(&env, &["service", "install"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        text.lines().last().unwrap().trim(),
        "systemctl --user enable --now oauth-broker.socket",
        "{text}"
    );
    let service = fs::read_to_string(unit_dir.join("oauth-broker.service")).unwrap();
    assert!(
        service.contains(&format!(
            "\nExecStart={} --account default\n",
            expected_brokerd.display()
        )),
        "{service}"
    );
    assert!(unit_dir.join("oauth-broker.socket").is_file());
    verify(
        &env,
        &unit_dir,
        &["./oauth-broker.service", "./oauth-broker.socket"],
    );

    // Another account: the templates, and the instance to enable.
    let out = service_install(&env, &["service", "install", "--account", "work", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["unit"], "oauth-broker@work.socket");
    assert_eq!(
        report["command"],
        "systemctl --user enable --now oauth-broker@work.socket"
    );
    assert_eq!(report["files"].as_array().unwrap().len(), 2);
    assert_eq!(report["files"][0]["changed"], true);
    verify(
        &env,
        &unit_dir,
        &["oauth-broker@work.service", "oauth-broker@work.socket"],
    );

    // Running it again changes nothing.
    let out = service_install(&env, &["service", "install", "--account", "work", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files"][0]["changed"], false);

    // A bad account is a usage error naming the rule.
    let out = service_install(&env, &["service", "install", "--account", "../x"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid account name"));
}

/// Collects sd_notify datagrams sent to a socket of the test.
struct NotifyListener {
    socket: UnixDatagram,
    path: PathBuf,
    seen: Vec<String>,
}

impl NotifyListener {
    fn bind(env: &TestEnv) -> NotifyListener {
        let path = env.run_dir().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        NotifyListener {
            socket,
            path,
            seen: Vec::new(),
        }
    }

    /// Waits for a datagram line satisfying `pred` (every line is kept).
    fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return line.clone();
        }
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                for line in text.lines() {
                    self.seen.push(line.to_string());
                    if pred(line) {
                        return line.to_string();
                    }
                }
            }
        }
        panic!(
            "no notification {what} within {TIMEOUT:?}; got {:?}",
            self.seen
        );
    }
}

/// brokerd run by `systemd-socket-activate`, which execs it in its own place.
struct Activated {
    child: Child,
    log: PathBuf,
}

impl Activated {
    fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn socket_activated_brokerd_serves_a_token_through_the_passed_fd() {
    let env = TestEnv::new();
    let fake = FakeAuthServer::start(crate::common::fake_with_ttl(Duration::from_secs(3600)));
    let config = env.config_dir().join("default.toml");
    fs::write(&config, default_config(&fake)).unwrap();
    // Not the path brokerd would pick by itself: it must use what it is given.
    let socket = env.run_dir().join("activated.sock");
    let mut notify = NotifyListener::bind(&env);

    let log = env.logs_dir().join("activated.log");
    let log_file = fs::File::create(&log).unwrap();
    // stderr is the "journal": JOURNAL_STREAM names its device and inode.
    let meta = log_file.metadata().unwrap();
    let journal_stream = format!("{}:{}", meta.dev(), meta.ino());

    let mut cmd = Command::new(systemd_tool("systemd-socket-activate"));
    cmd.arg("--listen").arg(&socket);
    for (key, _) in env.base_env() {
        cmd.arg(format!("--setenv={key}"));
    }
    cmd.arg("--setenv=RUST_LOG=oauth_broker=debug,info")
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify.path.display()))
        .arg(format!("--setenv=JOURNAL_STREAM={journal_stream}"))
        .arg(brokerd())
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(env.state_dir().join("default"))
        .env_clear()
        .envs(env.base_env())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    let child = cmd.spawn().expect("spawn systemd-socket-activate");
    let activated = Activated { child, log };

    // systemd-socket-activate creates the socket and waits for a connection
    // before it starts brokerd.
    Backoff::new(TIMEOUT)
        .until(|| socket.exists().then_some(()))
        .unwrap_or_else(|| panic!("no socket; log:\n{}", activated.logs()));

    // The first connection starts brokerd, which serves it on the passed fd.
    let grant = fake.issue_grant();
    let mut import = Command::new(brokerctl());
    import
        .arg("--socket")
        .arg(&socket)
        .args(["import", "-"])
        .env_clear()
        .envs(env.base_env());
    let out = run_with_timeout(import, Some(grant.to_import_json().as_bytes()), TIMEOUT).unwrap();
    assert!(
        out.status.success(),
        "import failed: {}\nbrokerd log:\n{}",
        stderr(&out),
        activated.logs()
    );

    notify.wait_for("READY=1", |l| l == "READY=1");
    let status = notify.wait_for("STATUS=logged in", |l| {
        l.starts_with("STATUS=logged in, token valid until ")
    });
    assert!(status.ends_with(" UTC, 0 refreshes"), "{status}");

    let mut client = Client::builder()
        .socket(&socket)
        .client_name("e2e-systemd")
        .connect()
        .expect("connect");
    let token = client.token(Duration::from_secs(30)).expect("token");
    assert_eq!(token.expose_secret(), grant.access_token);
    assert!(fake.is_access_token_valid(token.expose_secret()));
    drop(client);

    let logs = activated.logs();
    assert!(
        logs.contains("socket-activated: using the socket passed by systemd"),
        "{logs}"
    );
    // Journal style: a priority prefix, no timestamp of our own.
    for line in logs.lines().filter(|l| l.contains("brokerd ready")) {
        assert!(line.starts_with("<6>"), "not journal-formatted: {line:?}");
        assert!(
            !line.contains("Z "),
            "timestamp in a journal line: {line:?}"
        );
    }
    assert!(!logs.contains(&grant.access_token), "token in the log");

    // SIGTERM: STOPPING=1, a clean exit, and the socket systemd created stays.
    let pid = nix::unistd::Pid::from_raw(activated.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    notify.wait_for("STOPPING=1", |l| l == "STOPPING=1");
    let mut activated = activated;
    let exited = Backoff::new(TIMEOUT).until(|| activated.child.try_wait().ok().flatten());
    let exited =
        exited.unwrap_or_else(|| panic!("brokerd did not stop; log:\n{}", activated.logs()));
    assert!(exited.success(), "{exited}; log:\n{}", activated.logs());
    assert!(
        socket.exists(),
        "brokerd unlinked a socket it did not create"
    );
}

#[test]
fn listen_fds_for_another_process_are_ignored_and_ready_is_still_notified() {
    let env = TestEnv::new();
    let fake = FakeAuthServer::start(crate::common::fake_with_ttl(Duration::from_secs(3600)));
    let mut notify = NotifyListener::bind(&env);
    // As if inherited from a socket-activated parent: LISTEN_PID is not ours.
    let spec = BrokerSpec::new(brokerd(), &env, default_config(&fake))
        .with_env("LISTEN_FDS", "1")
        .with_env("LISTEN_PID", "1")
        .with_env("NOTIFY_SOCKET", notify.path.to_string_lossy());
    let broker = BrokerProcess::start(spec).expect("brokerd binds its own socket");
    notify.wait_for("READY=1", |l| l == "READY=1");
    notify.wait_for("STATUS=not logged in", |l| {
        l == "STATUS=not logged in — run brokerctl relogin or brokerctl import"
    });
    assert!(broker.socket_path().exists());
    assert!(!broker.logs().contains("socket-activated"));
}
