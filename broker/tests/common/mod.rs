//! Shared set-up for the end-to-end tests: a fake authorization server on a real
//! loopback port, the real `brokerd` binary on a temp dir, and logins imported
//! through the real `brokerctl`.

#![allow(dead_code)]

pub mod token_hammer;

use oauth_broker_client::Client;
use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig, IssuedTokens};
use oauth_broker_tests::harness::{generic_config, BrokerProcess, BrokerSpec, TestEnv};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

/// The real daemon binary.
pub fn brokerd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_brokerd"))
}

/// The real admin CLI.
pub fn brokerctl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_brokerctl"))
}

/// A running broker against a fake server. Field order matters: the broker is
/// stopped before its temp dir disappears.
pub struct Setup {
    pub broker: BrokerProcess,
    pub fake: FakeAuthServer,
    pub grant: Option<IssuedTokens>,
    pub env: TestEnv,
}

/// Config for the fake server with fast backoff so fault tests stay quick.
pub fn config_for(fake: &FakeAuthServer, extra: &str) -> String {
    format!(
        "{}\n[refresh]\nbackoff_initial_ms = 200\nbackoff_max_secs = 2\nhttp_timeout_secs = 5\n{extra}",
        generic_config(fake)
    )
}

impl Setup {
    /// Starts the fake server and brokerd, without a login.
    pub fn logged_out(fake_config: FakeConfig) -> Setup {
        let env = TestEnv::new();
        let fake = FakeAuthServer::start(fake_config);
        let broker = BrokerProcess::start(BrokerSpec::new(brokerd(), &env, config_for(&fake, "")))
            .expect("brokerd starts");
        Setup {
            broker,
            fake,
            grant: None,
            env,
        }
    }

    /// Starts everything and imports a fresh grant through `brokerctl import -`.
    pub fn logged_in(fake_config: FakeConfig) -> Setup {
        let mut setup = Setup::logged_out(fake_config);
        setup.import_fresh_grant();
        setup
    }

    /// Issues a new grant at the fake server and hands it to the broker.
    pub fn import_fresh_grant(&mut self) -> IssuedTokens {
        let grant = self.fake.issue_grant();
        let out = self.ctl_stdin(&["import", "-"], grant.to_import_json().as_bytes());
        assert!(out.status.success(), "import failed: {}", stderr(&out));
        self.grant = Some(grant.clone());
        grant
    }

    /// Runs brokerctl against this broker.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.broker.brokerctl(&brokerctl(), args)
    }

    /// Runs brokerctl with stdin.
    pub fn ctl_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.broker
            .brokerctl_with_stdin(&brokerctl(), args, Some(stdin))
    }

    /// A blocking client of the real client crate.
    pub fn client(&self) -> Client {
        Client::builder()
            .socket(self.broker.socket_path())
            .client_name("e2e-test")
            .request_timeout(Duration::from_secs(30))
            .connect()
            .expect("client connects")
    }

    /// Restarts brokerd (SIGTERM, then start again with the same config).
    pub fn restart(&mut self) {
        self.broker.terminate().expect("brokerd stops");
        let spec = BrokerSpec::new(brokerd(), &self.env, config_for(&self.fake, ""));
        self.broker = BrokerProcess::start(spec).expect("brokerd restarts");
    }

    /// Every log line brokerd wrote so far (all starts).
    pub fn logs(&self) -> String {
        self.env.all_logs()
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fake server config with the given access-token lifetime.
pub fn fake_with_ttl(ttl: Duration) -> FakeConfig {
    FakeConfig {
        access_ttl: ttl,
        ..FakeConfig::default()
    }
}

// ----- logins -------------------------------------------------------------

impl Setup {
    /// Starts the fake server and brokerd with the config `make_config` writes
    /// for that server (e.g. a preset pointed at it), without a login.
    pub fn with_config(
        fake_config: FakeConfig,
        make_config: impl FnOnce(&FakeAuthServer) -> String,
    ) -> Setup {
        let env = TestEnv::new();
        let fake = FakeAuthServer::start(fake_config);
        let broker = BrokerProcess::start(BrokerSpec::new(brokerd(), &env, make_config(&fake)))
            .expect("brokerd starts");
        Setup {
            broker,
            fake,
            grant: None,
            env,
        }
    }

    /// Starts `brokerctl relogin --json <args…>` and returns it while it runs,
    /// so the test can act as the user on the events it prints.
    pub fn relogin_json(&self, args: &[&str]) -> LoginChild {
        let mut full = vec!["relogin", "--json"];
        full.extend_from_slice(args);
        LoginChild::spawn(self.broker.brokerctl_command(&brokerctl(), &full))
    }

    /// `brokerctl status --json`, parsed.
    pub fn status_json(&self) -> serde_json::Value {
        let out = self.ctl(&["status", "--json"]);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}; stderr: {}", stderr(&out)))
    }

    /// Waits (polling the log file) until brokerd logged a line containing
    /// `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while !self.logs().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "brokerd did not log {needle:?} within {timeout:?}; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts that no token the fake server issued appears in brokerd's logs.
    pub fn assert_no_token_in_logs(&self) {
        let logs = self.logs();
        for token in self.fake.all_issued_tokens() {
            assert!(!logs.contains(&token), "a token leaked into the logs");
        }
    }
}

/// A running `brokerctl relogin --json`: its stdout lines are read as they
/// come; killed when dropped.
pub struct LoginChild {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// How long a login step may take before the test fails.
pub const STEP: Duration = Duration::from_secs(20);

impl LoginChild {
    fn spawn(mut cmd: std::process::Command) -> LoginChild {
        use std::io::{BufRead, Read};
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn brokerctl relogin");
        let stdout = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        LoginChild {
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// The next JSON event (fails the test after `STEP`).
    pub fn next_event(&mut self) -> serde_json::Value {
        match self.lines.recv_timeout(STEP) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line:?}")),
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr.take().map(|h| h.join().unwrap_or_default());
                panic!("no login event within {STEP:?}; brokerctl stderr: {err:?}")
            }
        }
    }

    /// The next event, which must be `kind` (`device_code`, …).
    pub fn expect_event(&mut self, kind: &str) -> serde_json::Value {
        let event = self.next_event();
        assert_eq!(event["event"], kind, "unexpected event {event}");
        event
    }

    /// Waits for brokerctl to exit; returns its exit code and stderr. Every
    /// line of stdout must have been read before.
    pub fn finish(mut self) -> (Option<i32>, String) {
        let status = oauth_broker_tests::harness::Backoff::new(STEP)
            .until(|| self.child.try_wait().ok().flatten())
            .unwrap_or_else(|| {
                let _ = self.child.kill();
                panic!("brokerctl relogin did not exit within {STEP:?}")
            });
        let err = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let rest: Vec<String> = self.lines.try_iter().collect();
        assert!(rest.is_empty(), "unread events: {rest:?}");
        (status.code(), err)
    }

    /// Kills brokerctl (the user pressed Ctrl-C, or the terminal went away).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LoginChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of query parameter `name` in `url`.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
