//! Projection tests' helpers: reading the projected files back and waiting
//! until the broker's current token reached them.

use super::Broker;
use oauth_broker_client::proto::{token_fingerprint, ProjectionStatus};
use oauth_broker_client::SecretString;
use oauth_broker_tests::fake_server::FakeConfig;
use oauth_broker_tests::harness::Backoff;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The placeholder brokerd writes instead of the refresh token.
pub const PLACEHOLDER: &str = "oauth-broker-placeholder.the-broker-holds-the-real-refresh-token";

/// A fake server issuing JWT access tokens (what Codex needs) of `ttl`.
pub fn jwt_fake(ttl: Duration) -> FakeConfig {
    FakeConfig {
        access_ttl: ttl,
        jwt_access_tokens: true,
        ..FakeConfig::default()
    }
}

impl Broker {
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

/// File mode bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
