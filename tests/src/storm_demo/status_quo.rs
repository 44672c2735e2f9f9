//! Today: every program refreshes with its own copy of the tokens.
//!
//! Each program does what the tools do: refresh when its access token is about
//! to expire (less than a tenth of its lifetime left) or when the API answers
//! 401, and keep the rotated refresh token to itself. When the server refuses
//! its refresh token the program is logged out: every later call fails until a
//! human logs in again.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng as _;

use super::{http_runtime, DemoConfig, SideResult, Tally};
use crate::direct_oauth::{self, ApiAnswer, OwnTokens, Refreshed};

/// Runs the status-quo side on a fresh fake server.
pub fn run(config: &DemoConfig) -> anyhow::Result<SideResult> {
    let fake = config.fake_server();
    let runtime = http_runtime()?;
    let grant = fake.issue_grant();
    let issued_at = Instant::now();
    // Everyone starts from the same copy, as after copying auth.json around.
    let shared = OwnTokens {
        access_token: grant.access_token.clone(),
        refresh_token: grant.refresh().to_owned(),
        expires_at: issued_at + Duration::from_secs(grant.expires_in),
        lifetime: Duration::from_secs(grant.expires_in),
    };
    let endpoint = fake.token_endpoint();
    let client_id = fake.config().client_id;
    let api = fake.userinfo_endpoint();
    let start = Arc::new(Barrier::new(config.processes));
    let deadline = Instant::now() + config.duration();
    let programs: Vec<_> = (0..config.processes)
        .map(|_| {
            let program = Program {
                tokens: shared.clone(),
                logged_out: false,
                http: reqwest::Client::new(),
                endpoint: endpoint.clone(),
                client_id: client_id.clone(),
                runtime: runtime.handle().clone(),
            };
            let (api, start, interval) = (api.clone(), start.clone(), config.request_interval);
            std::thread::spawn(move || program.run(&api, &start, deadline, interval))
        })
        .collect();
    let tally: Tally = programs
        .into_iter()
        .map(|p| p.join().map_err(|_| anyhow::anyhow!("a program panicked")))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("status quo")?
        .into_iter()
        .sum();
    Ok(SideResult::from_server(&fake, tally))
}

/// One program with its own tokens and its own HTTP client.
struct Program {
    tokens: OwnTokens,
    logged_out: bool,
    http: reqwest::Client,
    endpoint: String,
    client_id: String,
    runtime: tokio::runtime::Handle,
}

impl Program {
    fn run(mut self, api: &str, start: &Barrier, deadline: Instant, interval: Duration) -> Tally {
        let mut tally = Tally::default();
        start.wait();
        // Programs do not call in lockstep.
        std::thread::sleep(interval.mul_f64(rand::rng().random_range(0.0..1.0)));
        while Instant::now() < deadline {
            let left = self
                .tokens
                .expires_at
                .saturating_duration_since(Instant::now());
            if left < self.tokens.lifetime / 10 {
                self.refresh();
            }
            tally.requests += 1;
            if !self.call(api) {
                tally.fail("logged out or refused".to_owned());
            }
            std::thread::sleep(interval);
        }
        tally
    }

    /// One API call, refreshing and retrying once on 401.
    fn call(&mut self, api: &str) -> bool {
        if self.logged_out {
            return false;
        }
        let answer = self.runtime.block_on(direct_oauth::call_api(
            &self.http,
            api,
            &self.tokens.access_token,
        ));
        match answer {
            ApiAnswer::Ok => true,
            ApiAnswer::Failed => false,
            ApiAnswer::Unauthorized => {
                self.refresh();
                !self.logged_out
                    && self.runtime.block_on(direct_oauth::call_api(
                        &self.http,
                        api,
                        &self.tokens.access_token,
                    )) == ApiAnswer::Ok
            }
        }
    }

    fn refresh(&mut self) {
        if self.logged_out {
            return;
        }
        let answer = self.runtime.block_on(direct_oauth::refresh(
            &self.http,
            &self.endpoint,
            &self.client_id,
            &self.tokens.refresh_token,
        ));
        match answer {
            Refreshed::Tokens(tokens) => self.tokens = tokens,
            // invalid_grant: the refresh token was used by another program, or
            // its family was revoked because of that. A human must log in.
            Refreshed::Refused(_) => self.logged_out = true,
            Refreshed::Failed(_) => {}
        }
    }
}
