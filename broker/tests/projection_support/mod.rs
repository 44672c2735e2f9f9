//! Shared set-up of the projection tests: the real brokerd with `[[project]]`
//! entries against the fake authorization server, and reading the projected
//! files back.

#![allow(dead_code)]

use oauth_broker_client::proto::{token_fingerprint, ProjectionStatus, StatusReport};
use oauth_broker_client::{Client, SecretString};
use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig, IssuedTokens};
use oauth_broker_tests::harness::{generic_config, Backoff, BrokerProcess, BrokerSpec, TestEnv};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// The placeholder brokerd writes instead of the refresh token.
pub const PLACEHOLDER: &str = "oauth-broker-placeholder.the-broker-holds-the-real-refresh-token";

pub fn brokerd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_brokerd"))
}

pub fn brokerctl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_brokerctl"))
}

/// A fake server issuing JWT access tokens (what Codex needs) of `ttl`.
pub fn jwt_fake(ttl: Duration) -> FakeConfig {
    FakeConfig {
        access_ttl: ttl,
        jwt_access_tokens: true,
        ..FakeConfig::default()
    }
}

/// A running broker with projection targets. Field order: the broker stops
/// before its temp dir goes.
pub struct Projected {
    pub broker: BrokerProcess,
    pub fake: FakeAuthServer,
    pub grant: IssuedTokens,
    pub env: TestEnv,
}

impl Projected {
    /// Starts the fake server and brokerd with `project_toml` appended to the
    /// config, then imports a fresh login through `brokerctl import -`.
    /// `project_toml` may use `{root}` for the test's temp dir.
    pub fn start(fake_config: FakeConfig, project_toml: &str) -> Projected {
        Self::start_with(
            FakeAuthServer::start(fake_config),
            TestEnv::new(),
            project_toml,
            |_, _| {},
        )
    }

    /// Like [`start`](Self::start) with a hook that runs before brokerd
    /// starts (to place files), and a given server and environment.
    pub fn start_with(
        fake: FakeAuthServer,
        env: TestEnv,
        project_toml: &str,
        before: impl FnOnce(&TestEnv, &IssuedTokens),
    ) -> Projected {
        let grant = fake.issue_grant();
        before(&env, &grant);
        let toml = format!(
            "{}\n[refresh]\nbackoff_initial_ms = 200\nbackoff_max_secs = 2\nhttp_timeout_secs = 5\n\n{project_toml}",
            generic_config(&fake),
        );
        Self::launch(fake, env, grant, &toml)
    }

    /// Starts brokerd with the complete config `toml` (`{root}` is the temp
    /// dir) and imports a fresh login.
    pub fn start_config(fake: FakeAuthServer, env: TestEnv, toml: &str) -> Projected {
        let grant = fake.issue_grant();
        Self::launch(fake, env, grant, toml)
    }

    fn launch(fake: FakeAuthServer, env: TestEnv, grant: IssuedTokens, toml: &str) -> Projected {
        let toml = toml.replace("{root}", &env.root().display().to_string());
        let broker =
            BrokerProcess::start(BrokerSpec::new(brokerd(), &env, toml)).expect("brokerd starts");
        let out = broker.brokerctl_with_stdin(
            &brokerctl(),
            &["import", "-"],
            Some(grant.to_import_json().as_bytes()),
        );
        assert!(out.status.success(), "import failed: {}", stderr(&out));
        Projected {
            broker,
            fake,
            grant,
            env,
        }
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        self.broker.brokerctl(&brokerctl(), args)
    }

    pub fn client(&self) -> Client {
        Client::builder()
            .socket(self.broker.socket_path())
            .client_name("projection-test")
            .request_timeout(Duration::from_secs(30))
            .connect()
            .expect("client connects")
    }

    pub fn status(&self) -> StatusReport {
        self.client().status().expect("status")
    }

    /// The broker's current `token_id`.
    pub fn current_token_id(&self) -> String {
        self.status().token_id.expect("the broker holds a token")
    }

    /// Waits until the broker serves a token whose id is not in `seen`.
    pub fn wait_token_not_in(&self, seen: &[String]) -> String {
        Backoff::new(Duration::from_secs(20))
            .until(|| {
                let id = self.current_token_id();
                (!seen.contains(&id)).then_some(id)
            })
            .expect("the broker moves on to a new token")
    }

    /// The status line of the target writing `path`.
    pub fn target_status(&self, path: &Path) -> ProjectionStatus {
        let path = path.display().to_string();
        self.status()
            .projections
            .into_iter()
            .find(|p| p.path == path)
            .unwrap_or_else(|| panic!("no projection target {path} in status"))
    }

    /// Waits until `file_token(path)` is the broker's current token; returns
    /// that token.
    pub fn wait_projected(&self, path: &Path, token_at: &[&str]) -> String {
        self.wait_projected_after(path, token_at, None)
    }

    /// Like [`wait_projected`](Self::wait_projected), for a token other than
    /// `previous` (the broker has refreshed since).
    pub fn wait_projected_after(
        &self,
        path: &Path,
        token_at: &[&str],
        previous: Option<&str>,
    ) -> String {
        Backoff::new(Duration::from_secs(20))
            .until(|| {
                let token = file_token(path, token_at)?;
                let fresh = previous != Some(token.as_str());
                (fresh && fingerprint(&token) == self.current_token_id()).then_some(token)
            })
            .unwrap_or_else(|| {
                panic!(
                    "{} never held the broker's current token; status {:?}\nlogs:\n{}",
                    path.display(),
                    self.status().projections,
                    self.env.all_logs()
                )
            })
    }

    /// Every refresh token the fake server issued (all generations).
    pub fn real_refresh_tokens(&self) -> Vec<String> {
        self.fake
            .all_issued_tokens()
            .into_iter()
            .filter(|t| t.starts_with("fake-rt-"))
            .collect()
    }

    /// Fails if any token the fake server issued appears in the logs.
    pub fn assert_no_token_in_logs(&self) {
        let logs = self.env.all_logs();
        for token in self.fake.all_issued_tokens() {
            assert!(!logs.contains(&token), "a token leaked into the logs");
        }
    }
}

/// The string at `pointer` (e.g. `["tokens", "access_token"]`) of the JSON
/// file at `path`, if both exist.
pub fn file_token(path: &Path, pointer: &[&str]) -> Option<String> {
    let value: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let mut at = &value;
    for key in pointer {
        at = at.get(*key)?;
    }
    at.as_str().map(str::to_string)
}

pub fn fingerprint(token: &str) -> String {
    token_fingerprint(&SecretString::from(token.to_string()))
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// File mode bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
