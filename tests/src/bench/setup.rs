//! A logged-in `brokerd` against the fake authorization server, set up the way
//! the measurements need it.
//!
//! Why its own set-up instead of the e2e tests' one: the e2e harness logs at
//! trace level (so that secret greps see every line), which would put a log
//! write on every request; a benchmark must measure the daemon as users run
//! it, at the default `info` level, and with a connection limit high enough
//! for 1,000 open connections.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use oauth_broker_client::{Client, ImportTokens, SecretString};

use crate::fake_server::{FakeAuthServer, FakeConfig, IssuedTokens};
use crate::harness::{generic_config, BrokerProcess, BrokerSpec, TestEnv};

/// Connections brokerd accepts in the benchmarks (default 512).
pub const MAX_CONNECTIONS: usize = 4096;

/// A running brokerd and its fake server. Field order matters: the broker is
/// stopped before its temporary directory goes away.
pub struct BenchBroker {
    pub broker: BrokerProcess,
    pub fake: FakeAuthServer,
    pub env: TestEnv,
}

impl BenchBroker {
    /// Starts a fake server issuing JWT access tokens (the size real providers'
    /// tokens have) that live `access_ttl`, and brokerd, not yet logged in.
    pub fn start(brokerd: &Path, access_ttl: Duration) -> anyhow::Result<BenchBroker> {
        BenchBroker::start_with(brokerd, access_ttl, "")
    }

    /// [`BenchBroker::start`] with `extra` TOML appended to brokerd's config
    /// file (whole sections, e.g. `[[proxy]]` or `[state]`).
    pub fn start_with(
        brokerd: &Path,
        access_ttl: Duration,
        extra: &str,
    ) -> anyhow::Result<BenchBroker> {
        let env = TestEnv::new();
        let fake = FakeAuthServer::start(FakeConfig {
            access_ttl,
            jwt_access_tokens: true,
            ..FakeConfig::default()
        });
        let mut spec = BrokerSpec::new(brokerd, &env, format!("{}\n{extra}", config_for(&fake)));
        spec.rust_log = "info".to_owned();
        let broker = BrokerProcess::start(spec)?;
        Ok(BenchBroker { broker, fake, env })
    }

    /// Starts everything and logs in with a fresh grant.
    pub fn logged_in(brokerd: &Path, access_ttl: Duration) -> anyhow::Result<BenchBroker> {
        let bench = BenchBroker::start(brokerd, access_ttl)?;
        bench.login()?;
        Ok(bench)
    }

    /// [`BenchBroker::logged_in`] with `extra` TOML in the config.
    pub fn logged_in_with(
        brokerd: &Path,
        access_ttl: Duration,
        extra: &str,
    ) -> anyhow::Result<BenchBroker> {
        let bench = BenchBroker::start_with(brokerd, access_ttl, extra)?;
        bench.login()?;
        Ok(bench)
    }

    /// Issues a new grant at the fake server and imports it through the client.
    pub fn login(&self) -> anyhow::Result<IssuedTokens> {
        let grant = self.fake.issue_grant();
        import(self.socket(), &grant)?;
        Ok(grant)
    }

    pub fn socket(&self) -> &Path {
        self.broker.socket_path()
    }

    /// A connected client of the real client crate.
    pub fn client(&self) -> anyhow::Result<Client> {
        connect(self.socket())
    }
}

/// The generic preset pointing at `fake`, with room for many connections.
pub fn config_for(fake: &FakeAuthServer) -> String {
    format!(
        "{}\n[server]\nmax_connections = {MAX_CONNECTIONS}\n",
        generic_config(fake)
    )
}

/// A connected client named `bench`.
pub fn connect(socket: &Path) -> anyhow::Result<Client> {
    Client::builder()
        .socket(socket)
        .client_name("bench")
        .connect()
        .with_context(|| format!("connecting to brokerd at {}", socket.display()))
}

/// Hands `grant` to the broker at `socket` (what `brokerctl import` does).
pub fn import(socket: &Path, grant: &IssuedTokens) -> anyhow::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let tokens = ImportTokens {
        refresh_token: SecretString::from(grant.refresh().to_owned()),
        access_token: Some(SecretString::from(grant.access_token.clone())),
        expires_at: Some(now + grant.expires_in),
        id_token: grant.id_token.clone().map(SecretString::from),
        scope: Some(grant.scope.clone()),
        token_type: Some("Bearer".to_owned()),
        account_id: None,
    };
    connect(socket)?
        .import(tokens)
        .context("importing the fake server's grant into brokerd")?;
    Ok(())
}
