//! Shared rig of the reliability tests (`reliability_*.rs`): the real `brokerd`
//! against the fake authorization server, with refresh and server settings
//! chosen per test (fast backoff, short timeouts), plus the observations those
//! tests need — the state file as the next broker will read it, the broker's
//! resident memory, and polling helpers for the few facts that have no
//! notification (a status field, a wall-clock expiry).

#![allow(dead_code)]

use oauth_broker::store::PersistedState;
use oauth_broker_client::proto::{ExposeSecret, StatusReport};
use oauth_broker_client::{AccessToken, Client};
use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig, IssuedTokens};
use oauth_broker_tests::harness::{generic_config, Backoff, BrokerProcess, BrokerSpec, TestEnv};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// The real daemon binary.
pub fn brokerd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_brokerd"))
}

/// The real admin CLI.
pub fn brokerctl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_brokerctl"))
}

/// `[refresh]` settings that keep fault tests quick: first retry after 100 ms,
/// doubling to a 1 s cap, 2 s per token-endpoint call, and no floor between
/// forced refreshes (these tests force rotation after rotation with 401
/// reports; the floor has tests of its own in `e2e_forced_refresh_bounds.rs`).
pub const FAST_REFRESH: &str =
    "backoff_initial_ms = 100\nbackoff_max_secs = 1\nhttp_timeout_secs = 2\nforced_refresh_floor_secs = 0\n";

/// What to start: the fake server's knobs and the broker's config tables.
#[derive(Clone)]
pub struct RigSpec {
    pub fake: FakeConfig,
    /// Body of the `[refresh]` table.
    pub refresh: String,
    /// Body of the `[server]` table.
    pub server: String,
    /// Extra environment for brokerd (e.g. the store fault hook).
    pub env: Vec<(String, String)>,
    /// The program started as brokerd: the real binary, or a wrapper that
    /// execs it (e.g. with lowered limits).
    pub brokerd: PathBuf,
}

impl RigSpec {
    /// Fake server with access tokens living `ttl`, [`FAST_REFRESH`], default
    /// server limits.
    pub fn with_ttl(ttl: Duration) -> Self {
        RigSpec {
            fake: FakeConfig {
                access_ttl: ttl,
                ..FakeConfig::default()
            },
            refresh: FAST_REFRESH.to_string(),
            server: String::new(),
            env: Vec::new(),
            brokerd: brokerd(),
        }
    }

    pub fn refresh(mut self, toml: &str) -> Self {
        self.refresh = toml.to_string();
        self
    }

    pub fn server(mut self, toml: &str) -> Self {
        self.server = toml.to_string();
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }
}

/// A running broker against a fake server. Field order matters: the broker is
/// killed before the server stops and before its temp dir disappears.
pub struct Rig {
    pub broker: BrokerProcess,
    pub fake: FakeAuthServer,
    pub env: TestEnv,
    spec: RigSpec,
}

impl Rig {
    /// Starts the fake server and brokerd, without a login.
    pub fn start(spec: RigSpec) -> Rig {
        Rig::start_prepared(spec, |_| {})
    }

    /// Like [`start`](Self::start), running `prepare` on the environment
    /// before brokerd starts (e.g. to mount a tmpfs as the state directory).
    pub fn start_prepared(spec: RigSpec, prepare: impl FnOnce(&TestEnv)) -> Rig {
        let env = TestEnv::new();
        prepare(&env);
        let fake = FakeAuthServer::start(spec.fake.clone());
        let broker = BrokerProcess::start(broker_spec(&env, &fake, &spec)).expect("brokerd starts");
        Rig {
            broker,
            fake,
            env,
            spec,
        }
    }

    /// Starts everything and imports a fresh grant.
    pub fn logged_in(spec: RigSpec) -> (Rig, IssuedTokens) {
        let rig = Rig::start(spec);
        let grant = rig.import_fresh_grant();
        (rig, grant)
    }

    /// The config TOML this rig gives brokerd.
    pub fn config_toml(&self) -> String {
        config_toml(&self.fake, &self.spec)
    }

    /// A spec for another brokerd of this rig (same env, config and account).
    pub fn broker_spec(&self) -> BrokerSpec<'_> {
        broker_spec(&self.env, &self.fake, &self.spec)
    }

    /// Issues a new grant at the fake server and hands it over with
    /// `brokerctl import -`.
    pub fn import_fresh_grant(&self) -> IssuedTokens {
        let grant = self.fake.issue_grant();
        let out = self.broker.brokerctl_with_stdin(
            &brokerctl(),
            &["import", "-"],
            Some(grant.to_import_json().as_bytes()),
        );
        assert!(out.status.success(), "import failed: {}", text(&out.stderr));
        grant
    }

    /// A blocking client of the real client crate.
    pub fn client(&self) -> Client {
        Client::builder()
            .socket(self.broker.socket_path())
            .client_name("reliability-test")
            .request_timeout(Duration::from_secs(30))
            .connect()
            .expect("client connects")
    }

    /// The broker's status through the client crate.
    pub fn status(&self) -> StatusReport {
        self.client().status().expect("status")
    }

    /// Runs brokerctl against this broker.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.broker.brokerctl(&brokerctl(), args)
    }

    /// Starts a new brokerd on the same state (after the old one was killed)
    /// and returns how long it took until its socket accepted a connection.
    pub fn restart_after_kill(&mut self) -> Duration {
        assert!(
            !self.broker.is_running(),
            "restart_after_kill with a live broker"
        );
        let started = Instant::now();
        self.broker = BrokerProcess::start(broker_spec(&self.env, &self.fake, &self.spec))
            .expect("brokerd restarts");
        started.elapsed()
    }

    /// SIGTERM, then a new brokerd on the same state.
    pub fn restart(&mut self) -> Duration {
        self.broker.terminate().expect("brokerd stops");
        self.restart_after_kill()
    }

    /// The account's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.env.state_dir().join(self.broker.account())
    }

    /// The state file as the next broker would read it; `None` if absent.
    /// Panics (failing the test) if it does not parse.
    pub fn read_state(&self) -> Option<PersistedState> {
        read_state_file(&self.state_dir().join("state.json"))
    }

    /// The refresh token in the state file.
    pub fn disk_refresh_token(&self) -> Option<String> {
        self.read_state()?
            .credentials()
            .map(|c| c.refresh_token.expose_secret().to_string())
    }

    /// Every log line of every brokerd of this rig.
    pub fn logs(&self) -> String {
        self.env.all_logs()
    }

    /// True if the fake server accepts this access token now.
    pub fn server_accepts(&self, token: &AccessToken) -> bool {
        self.fake
            .is_access_token_valid(token.secret().expose_secret())
    }
}

fn config_toml(fake: &FakeAuthServer, spec: &RigSpec) -> String {
    format!(
        "{}\n[refresh]\n{}\n[server]\n{}\n",
        generic_config(fake),
        spec.refresh,
        spec.server
    )
}

fn broker_spec<'a>(env: &'a TestEnv, fake: &FakeAuthServer, spec: &RigSpec) -> BrokerSpec<'a> {
    let mut b = BrokerSpec::new(spec.brokerd.clone(), env, config_toml(fake, spec));
    for (k, v) in &spec.env {
        b = b.with_env(k.clone(), v.clone());
    }
    b
}

/// Parses a state file strictly (the broker's own type); panics with the cause
/// if it is torn or invalid. `None` if the file does not exist.
pub fn read_state_file(path: &Path) -> Option<PersistedState> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    match serde_json::from_str::<PersistedState>(&text) {
        Ok(state) => Some(state),
        Err(e) => panic!(
            "state file {} is corrupt ({e}); {} bytes",
            path.display(),
            text.len()
        ),
    }
}

/// Resident memory of a process in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn vm_rss_kib(pid: u32) -> u64 {
    proc_status_field(pid, "VmRSS:")
        .and_then(|v| v.split_whitespace().next().map(str::to_string))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for pid {pid}"))
}

/// One field of `/proc/<pid>/status`, without its label.
pub fn proc_status_field(pid: u32, label: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(label).map(|v| v.trim().to_string()))
}

/// Polls `f` with backoff (1 ms doubling to 50 ms) until it returns `Some`;
/// panics with `what` after `timeout`. For facts with no notification, such
/// as a status field the broker changes on its own.
pub fn eventually<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    Backoff::new(timeout)
        .until(f)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Sleeps until the wall clock passes `unix_secs` (plus a little): expiry has
/// no notification.
pub fn sleep_until_unix(unix_secs: u64) {
    let target = std::time::UNIX_EPOCH + Duration::from_secs(unix_secs) + Duration::from_millis(50);
    if let Ok(left) = target.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(left);
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `<dir>/brokerd-low-nofile`, a wrapper that lowers the open-files
/// soft limit to `soft` and then execs the real brokerd (same pid), as a
/// distribution default of 1024 would.
pub fn brokerd_with_low_nofile(dir: &Path, soft: u64) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("brokerd-low-nofile");
    let script = format!(
        "#!/bin/sh\nulimit -S -n {soft} || exit 97\nexec '{}' \"$@\"\n",
        brokerd().display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path
}

/// The soft and hard open-files limits of a process, from /proc.
pub fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let mut fields = line["Max open files".len()..].split_whitespace();
    (
        fields.next().unwrap().to_string(),
        fields.next().unwrap().to_string(),
    )
}
