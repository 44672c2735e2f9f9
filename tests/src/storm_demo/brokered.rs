//! With the broker: one `brokerd` holds the login, every program asks it for
//! the token before each API call (and reports a 401 with `unauthorized`).

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use oauth_broker_client::{Client, ExposeSecret};
use rand::Rng as _;

use super::{http_runtime, DemoConfig, SideResult, Tally};
use crate::bench::setup::{config_for, import};
use crate::direct_oauth::{self, ApiAnswer};
use crate::harness::{BrokerProcess, BrokerSpec, TestEnv};

/// What each program asks for (brokerctl's default).
const MIN_VALID: Duration = Duration::from_secs(60);

/// Runs the broker side: a fresh fake server, a real `brokerd`, and the
/// programs on the client crate.
pub fn run(config: &DemoConfig, brokerd: &Path) -> anyhow::Result<SideResult> {
    let env = TestEnv::new();
    let fake = config.fake_server();
    let mut spec = BrokerSpec::new(brokerd, &env, config_for(&fake));
    spec.rust_log = "info".to_owned();
    let broker = BrokerProcess::start(spec)?;
    // The same login the status-quo programs copied, handed to the broker.
    import(broker.socket_path(), &fake.issue_grant())?;
    let runtime = http_runtime()?;
    let api = fake.userinfo_endpoint();
    let start = Arc::new(Barrier::new(config.processes));
    let deadline = Instant::now() + config.duration();
    let mut programs = Vec::with_capacity(config.processes);
    for i in 0..config.processes {
        let client = Client::builder()
            .socket(broker.socket_path())
            .client_name(format!("storm-demo-{i}"))
            .connect()
            .context("connecting a program to brokerd")?;
        let program = Program {
            client,
            http: reqwest::Client::new(),
            runtime: runtime.handle().clone(),
        };
        let (api, start, interval) = (api.clone(), start.clone(), config.request_interval);
        programs.push(std::thread::spawn(move || {
            program.run(&api, &start, deadline, interval)
        }));
    }
    let tally: Tally = programs
        .into_iter()
        .map(|p| p.join().map_err(|_| anyhow::anyhow!("a program panicked")))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("broker side")?
        .into_iter()
        .sum();
    let result = SideResult::from_server(&fake, tally);
    drop(broker);
    Ok(result)
}

struct Program {
    client: Client,
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl Program {
    fn run(mut self, api: &str, start: &Barrier, deadline: Instant, interval: Duration) -> Tally {
        let mut tally = Tally::default();
        start.wait();
        std::thread::sleep(interval.mul_f64(rand::rng().random_range(0.0..1.0)));
        while Instant::now() < deadline {
            tally.requests += 1;
            if let Err(cause) = self.call(api) {
                tally.fail(cause);
            }
            std::thread::sleep(interval);
        }
        tally
    }

    /// Token from the broker, API call, and on 401 one retry with the token
    /// `unauthorized` returns. A failure says which step failed and how much
    /// life the token had left when the broker served it.
    fn call(&mut self, api: &str) -> Result<(), String> {
        let token = self
            .client
            .token(MIN_VALID)
            .map_err(|e| format!("token request: {e}"))?;
        let served_with = token.remaining();
        let asked = Instant::now();
        let answer = self.runtime.block_on(direct_oauth::call_api(
            &self.http,
            api,
            token.expose_secret(),
        ));
        match answer {
            ApiAnswer::Ok => Ok(()),
            ApiAnswer::Failed => Err(format!(
                "API call failed (neither 2xx nor 401) after {:?}",
                asked.elapsed()
            )),
            ApiAnswer::Unauthorized => {
                let first = format!(
                    "first call 401 after {:?}, token served with {served_with:?} left",
                    asked.elapsed()
                );
                let token = self
                    .client
                    .unauthorized(&token)
                    .map_err(|e| format!("{first}; unauthorized: {e}"))?;
                let served_with = token.remaining();
                let asked = Instant::now();
                match self.runtime.block_on(direct_oauth::call_api(
                    &self.http,
                    api,
                    token.expose_secret(),
                )) {
                    ApiAnswer::Ok => Ok(()),
                    retry => Err(format!(
                        "{first}; retry {retry:?} after {:?}, token served with {served_with:?} left",
                        asked.elapsed()
                    )),
                }
            }
        }
    }
}
