//! Shared set-up for the end-to-end tests: a fake authorization server on a real
//! loopback port, the real `brokerd` binary on a temp dir, and logins imported
//! through the real `brokerctl`.

#![allow(dead_code)]

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
