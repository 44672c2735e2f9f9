//! [`Broker`] and its builder: a running `brokerd` against a fake server.

use super::{brokerctl, brokerd, stderr};
use oauth_broker::store::PersistedState;
use oauth_broker_client::proto::{ExposeSecret, StatusReport};
use oauth_broker_client::{AccessToken, Client};
use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig, IssuedTokens};
use oauth_broker_tests::harness::{generic_config, BrokerProcess, BrokerSpec, TestEnv};
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

/// The `[refresh]` table of most tests: first retry after 200 ms, doubling to
/// a 2 s cap, 5 s per token-endpoint call.
pub const DEFAULT_REFRESH: &str =
    "backoff_initial_ms = 200\nbackoff_max_secs = 2\nhttp_timeout_secs = 5\n";

/// `[refresh]` settings that keep fault tests quick: first retry after 100 ms,
/// doubling to a 1 s cap, 2 s per token-endpoint call.
pub const FAST_REFRESH: &str =
    "backoff_initial_ms = 100\nbackoff_max_secs = 1\nhttp_timeout_secs = 2\nforced_refresh_floor_secs = 0\n";

type ConfigFn = Box<dyn FnOnce(&FakeAuthServer) -> String>;
type BeforeStart = Box<dyn FnOnce(&TestEnv, Option<&IssuedTokens>)>;

/// What to start. Defaults: a fresh fake server with [`FakeConfig::default`],
/// a fresh [`TestEnv`], the real brokerd, the generic provider config pointed
/// at the fake server with a [`DEFAULT_REFRESH`] table.
pub struct BrokerBuilder {
    fake_config: FakeConfig,
    fake: Option<FakeAuthServer>,
    env: Option<TestEnv>,
    refresh: String,
    server: Option<String>,
    extra: String,
    config: Option<ConfigFn>,
    brokerd: PathBuf,
    brokerd_env: Vec<(String, String)>,
    before_start: Option<BeforeStart>,
}

impl BrokerBuilder {
    /// The fake server's configuration.
    pub fn fake(mut self, config: FakeConfig) -> Self {
        self.fake_config = config;
        self
    }

    /// The fake server's access-token lifetime.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.fake_config.access_ttl = ttl;
        self
    }

    /// An already running fake server (shared with other parts of a test).
    pub fn fake_server(mut self, fake: FakeAuthServer) -> Self {
        self.fake = Some(fake);
        self
    }

    /// A prepared test environment (files placed before brokerd starts).
    pub fn test_env(mut self, env: TestEnv) -> Self {
        self.env = Some(env);
        self
    }

    /// The reliability tests' `[refresh]` table, [`FAST_REFRESH`].
    pub fn fast_refresh(self) -> Self {
        self.refresh_toml(FAST_REFRESH)
    }

    /// Body of the `[refresh]` table (default [`DEFAULT_REFRESH`]).
    pub fn refresh_toml(mut self, toml: &str) -> Self {
        self.refresh = toml.to_string();
        self
    }

    /// Body of a `[server]` table (none by default).
    pub fn server_toml(mut self, toml: &str) -> Self {
        self.server = Some(toml.to_string());
        self
    }

    /// TOML appended after the generated tables (e.g. `[[project]]` entries
    /// or a `[login]` table); `{root}` stands for the test's temp dir.
    pub fn extra_toml(mut self, toml: &str) -> Self {
        self.extra = toml.to_string();
        self
    }

    /// The complete config, written for the fake server (e.g. a preset
    /// pointed at it); replaces every generated table. `{root}` stands for
    /// the test's temp dir.
    pub fn config(mut self, make: impl FnOnce(&FakeAuthServer) -> String + 'static) -> Self {
        self.config = Some(Box::new(make));
        self
    }

    /// The program started as brokerd: a wrapper that execs the real one
    /// (e.g. with lowered limits).
    pub fn brokerd(mut self, path: PathBuf) -> Self {
        self.brokerd = path;
        self
    }

    /// One more environment variable for brokerd (e.g. a store fault hook).
    pub fn brokerd_env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.brokerd_env.push((key.to_string(), value.into()));
        self
    }

    /// Runs before brokerd starts, with the grant [`logged_in`](Self::logged_in)
    /// will import (`None` for [`start`](Self::start)): to place files, mount
    /// a file system as the state directory, …
    pub fn before_start(
        mut self,
        hook: impl FnOnce(&TestEnv, Option<&IssuedTokens>) + 'static,
    ) -> Self {
        self.before_start = Some(Box::new(hook));
        self
    }

    /// Starts the fake server (unless given) and brokerd, without a login.
    pub fn start(self) -> Broker {
        self.launch(false)
    }

    /// Starts everything and imports a fresh grant with `brokerctl import -`.
    pub fn logged_in(self) -> Broker {
        self.launch(true)
    }

    fn launch(self, login: bool) -> Broker {
        let env = self.env.unwrap_or_default();
        let fake = self
            .fake
            .unwrap_or_else(|| FakeAuthServer::start(self.fake_config));
        let grant = login.then(|| fake.issue_grant());
        if let Some(hook) = self.before_start {
            hook(&env, grant.as_ref());
        }
        let config = match self.config {
            Some(make) => make(&fake),
            None => generated_config(&fake, &self.refresh, self.server.as_deref(), &self.extra),
        };
        let config = config.replace("{root}", &env.root().display().to_string());
        let mut broker = Broker {
            broker: BrokerProcess::start(spec(&self.brokerd, &self.brokerd_env, &env, &config))
                .expect("brokerd starts"),
            fake,
            grant: None,
            env,
            brokerd: self.brokerd,
            brokerd_env: self.brokerd_env,
            config,
        };
        if let Some(grant) = grant {
            broker.import(grant);
        }
        broker
    }
}

/// The config the builder writes by default: the generic provider pointed at
/// `fake` and a [`DEFAULT_REFRESH`] table. For tests that start brokerd
/// themselves (socket activation, a changed `RUST_LOG`).
pub fn default_config(fake: &FakeAuthServer) -> String {
    generated_config(fake, DEFAULT_REFRESH, None, "")
}

fn generated_config(
    fake: &FakeAuthServer,
    refresh: &str,
    server: Option<&str>,
    extra: &str,
) -> String {
    let server = server
        .map(|s| format!("[server]\n{s}\n"))
        .unwrap_or_default();
    format!(
        "{}\n[refresh]\n{refresh}\n{server}{extra}",
        generic_config(fake)
    )
}

fn spec<'a>(
    brokerd: &std::path::Path,
    vars: &[(String, String)],
    env: &'a TestEnv,
    config: &str,
) -> BrokerSpec<'a> {
    let mut spec = BrokerSpec::new(brokerd, env, config);
    for (k, v) in vars {
        spec = spec.with_env(k.clone(), v.clone());
    }
    spec
}

/// A running broker against a fake server. Field order matters: the broker is
/// stopped before the server stops and before its temp dir disappears.
pub struct Broker {
    pub broker: BrokerProcess,
    pub fake: FakeAuthServer,
    /// The last grant imported through this fixture.
    pub grant: Option<IssuedTokens>,
    pub env: TestEnv,
    brokerd: PathBuf,
    brokerd_env: Vec<(String, String)>,
    config: String,
}

impl Broker {
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder {
            fake_config: FakeConfig::default(),
            fake: None,
            env: None,
            refresh: DEFAULT_REFRESH.to_string(),
            server: None,
            extra: String::new(),
            config: None,
            brokerd: brokerd(),
            brokerd_env: Vec::new(),
            before_start: None,
        }
    }

    /// `Broker::builder().fake(config).logged_in()`.
    pub fn logged_in(fake_config: FakeConfig) -> Broker {
        Broker::builder().fake(fake_config).logged_in()
    }

    /// `Broker::builder().fake(config).start()`: no login.
    pub fn logged_out(fake_config: FakeConfig) -> Broker {
        Broker::builder().fake(fake_config).start()
    }

    /// The grant imported at start (or last); panics if there was none.
    pub fn grant(&self) -> &IssuedTokens {
        self.grant.as_ref().expect("the fixture imported a grant")
    }

    /// The config TOML this broker was started with.
    pub fn config_toml(&self) -> &str {
        &self.config
    }

    /// A spec for another brokerd of this fixture (same env, config, account).
    pub fn broker_spec(&self) -> BrokerSpec<'_> {
        spec(&self.brokerd, &self.brokerd_env, &self.env, &self.config)
    }

    /// Issues a new grant at the fake server and hands it to the broker with
    /// `brokerctl import -`.
    pub fn import_fresh_grant(&mut self) -> IssuedTokens {
        let grant = self.fake.issue_grant();
        self.import(grant.clone());
        grant
    }

    fn import(&mut self, grant: IssuedTokens) {
        let out = self.ctl_stdin(&["import", "-"], grant.to_import_json().as_bytes());
        assert!(out.status.success(), "import failed: {}", stderr(&out));
        self.grant = Some(grant);
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

    /// The broker's status through the client crate.
    pub fn status(&self) -> StatusReport {
        self.client().status().expect("status")
    }

    /// `brokerctl status --json`, parsed.
    pub fn status_json(&self) -> serde_json::Value {
        let out = self.ctl(&["status", "--json"]);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}; stderr: {}", stderr(&out)))
    }

    /// SIGTERM, then a new brokerd with the same config on the same state;
    /// returns how long the new one took until its socket accepted.
    pub fn restart(&mut self) -> Duration {
        self.broker.terminate().expect("brokerd stops");
        self.restart_after_kill()
    }

    /// Starts a new brokerd on the same state (after the old one was killed)
    /// and returns how long it took until its socket accepted a connection.
    pub fn restart_after_kill(&mut self) -> Duration {
        assert!(
            !self.broker.is_running(),
            "restart_after_kill with a live broker"
        );
        let started = Instant::now();
        self.broker = BrokerProcess::start(self.broker_spec()).expect("brokerd restarts");
        started.elapsed()
    }

    /// Every log line brokerd wrote so far (all starts).
    pub fn logs(&self) -> String {
        self.env.all_logs()
    }

    /// Waits (polling the log file: it has no notification) until brokerd
    /// logged a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.logs().contains(needle) {
            assert!(
                Instant::now() < deadline,
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

    /// True if the fake server accepts this access token now.
    pub fn server_accepts(&self, token: &AccessToken) -> bool {
        self.fake
            .is_access_token_valid(token.secret().expose_secret())
    }

    /// The account's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.env.state_dir().join(self.broker.account())
    }

    /// The state on disk as the next broker would read it; `None` if absent.
    /// Panics (failing the test) if it does not parse.
    pub fn read_state(&self) -> Option<PersistedState> {
        super::read_state_dir(&self.state_dir())
    }

    /// The refresh token in the state file.
    pub fn disk_refresh_token(&self) -> Option<String> {
        self.read_state()?
            .credentials()
            .map(|c| c.refresh_token.expose_secret().to_string())
    }

    /// Starts `brokerctl relogin --json <args…>` and returns it while it runs,
    /// so the test can act as the user on the events it prints.
    pub fn relogin_json(&self, args: &[&str]) -> super::LoginChild {
        let mut full = vec!["relogin", "--json"];
        full.extend_from_slice(args);
        super::LoginChild::spawn(self.broker.brokerctl_command(&brokerctl(), &full))
    }
}
