//! The storm demo (`cargo run --release -p oauth-broker-tests --bin
//! storm-demo`): the same N programs sharing one login over the same number of
//! token lifetimes, first the way they work today, then through one broker.
//!
//! * [`status_quo`] — every program holds its own copy of the tokens and
//!   refreshes on its own against the fake authorization server, which — like
//!   the strict real ones — rotates refresh tokens and revokes the whole family
//!   when a used one comes back. This is Codex CLI, an IDE extension and an
//!   agent each reading the same `auth.json` today.
//! * [`brokered`] — one real `brokerd` holds the login; every program asks it
//!   through the real client crate.
//!
//! Both sides make the same API calls at the same pace (a protected resource of
//! the fake server that rejects expired and revoked tokens), and count the
//! same things. Each "program" is a thread with its own connection, its own
//! HTTP client and its own copy of its state — to the servers that is the
//! same as a separate process. [`table`] prints the two side by side.

pub mod brokered;
pub mod status_quo;
pub mod table;

use std::time::Duration;

use crate::fake_server::{FakeAuthServer, FakeConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Programs sharing the login.
    pub processes: usize,
    /// How many access-token lifetimes each side runs for.
    pub lifetimes: u32,
    /// The access-token lifetime the fake server issues (short, so the demo
    /// sees several refreshes in seconds).
    pub token_lifetime: Duration,
    /// Pause between two API calls of one program.
    pub request_interval: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            processes: 10,
            lifetimes: 3,
            token_lifetime: Duration::from_secs(2),
            request_interval: Duration::from_millis(50),
        }
    }
}

impl DemoConfig {
    /// How long each side runs.
    pub fn duration(&self) -> Duration {
        self.token_lifetime * self.lifetimes
    }

    /// A fake server issuing tokens of the configured lifetime.
    pub(crate) fn fake_server(&self) -> FakeAuthServer {
        FakeAuthServer::start(FakeConfig {
            access_ttl: self.token_lifetime,
            ..FakeConfig::default()
        })
    }
}

/// What one side produced, counted by the programs and by the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideResult {
    /// Refresh requests that reached the token endpoint.
    pub refresh_attempts: u64,
    /// Of those, the ones that produced new tokens.
    pub successful_refreshes: u64,
    /// Of those, the ones the server refused (reused or revoked refresh token).
    pub refused_refreshes: u64,
    /// Replays of an already used refresh token the server detected.
    pub reuse_detections: u64,
    /// Whether the login's token family ended revoked (everyone logged out).
    pub family_revoked: bool,
    /// API calls made.
    pub requests: u64,
    /// API calls that did not succeed, even after one retry with a new token.
    pub failed_requests: u64,
    /// Why they failed, for the first few (the programs' own words), so a
    /// failing run says what went wrong.
    pub failure_causes: Vec<String>,
}

impl SideResult {
    /// The server's counters after a side ran (family 0 is the shared login).
    pub(crate) fn from_server(fake: &FakeAuthServer, tally: Tally) -> Self {
        let stats = fake.stats();
        SideResult {
            refresh_attempts: stats.refresh_requests,
            successful_refreshes: stats.successful_refreshes,
            refused_refreshes: stats.refresh_requests - stats.successful_refreshes,
            reuse_detections: stats.reuse_detections,
            family_revoked: fake.families().first().is_some_and(|f| f.revoked),
            requests: tally.requests,
            failed_requests: tally.failed,
            failure_causes: tally.causes,
        }
    }
}

/// How many failure causes a side keeps.
const CAUSES_KEPT: usize = 10;

/// Per-program tallies.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub requests: u64,
    pub failed: u64,
    /// Why calls failed (the first [`CAUSES_KEPT`]).
    pub causes: Vec<String>,
}

impl Tally {
    /// Counts one failed call and keeps its cause if there is room.
    pub(crate) fn fail(&mut self, cause: String) {
        self.failed += 1;
        if self.causes.len() < CAUSES_KEPT {
            self.causes.push(cause);
        }
    }
}

impl std::iter::Sum for Tally {
    fn sum<I: Iterator<Item = Tally>>(iter: I) -> Tally {
        iter.fold(Tally::default(), |mut a, b| {
            a.requests += b.requests;
            a.failed += b.failed;
            let room = CAUSES_KEPT.saturating_sub(a.causes.len());
            a.causes.extend(b.causes.into_iter().take(room));
            a
        })
    }
}

/// A small runtime for the programs' HTTP calls (they block on it from their
/// own threads).
pub(crate) fn http_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
