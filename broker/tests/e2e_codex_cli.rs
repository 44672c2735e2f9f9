//! The real Codex CLI against the real brokerd, offline: a fake ChatGPT backend
//! (HTTPS with a throw-away CA) and the fake authorization server on loopback,
//! brokerd projecting into a temporary `CODEX_HOME`, and `codex exec` runs
//! spread over several access-token lifetimes.
//!
//! Proves, for Codex CLI 0.169.0:
//! * every backend request carries the broker's current token;
//! * Codex never sends a refresh request (so never one for a real refresh
//!   token: the file only ever holds the placeholder);
//! * a backend 401 after a broker refresh is healed by Codex re-reading the
//!   file;
//! * `codex logout` revokes only the placeholder;
//! * the file-less recipe (a custom provider whose `auth.command` is
//!   `brokerctl token`) sends the broker's token and reruns the command after
//!   a 401.
//!
//! Codex judges a token by its JWT `exp` and refreshes on its own within
//! 5 minutes of it, so test tokens that live seconds would always look due. The
//! fake server therefore puts an `exp` 15 minutes past the real end into the
//! JWT (`jwt_exp_slack`) and still ends each token after 6 s: Codex sees
//! long-lived tokens, as it does in real life, while the broker refreshes every
//! few seconds and the backend rejects a token as soon as the server ended it.
//!
//! The Codex binary (≈400 MB) is installed outside the clone on first use, once
//! per machine, by `oauth_broker_tests::tools::ensure_codex_cli`
//! (`OAUTH_BROKER_CODEX_BIN` may name another binary). A Codex that cannot be
//! installed fails the tests; they never skip.
//!
//! Nothing leaves loopback: every URL Codex uses is redirected by its config
//! (`chatgpt_base_url`, `openai_base_url`) or environment
//! (`CODEX_REFRESH_TOKEN_URL_OVERRIDE`, `CODEX_REVOKE_TOKEN_URL_OVERRIDE`), and
//! telemetry, analytics, update checks, plugins and apps are switched off (each
//! of them otherwise resolves a chatgpt.com host; checked with `strace -f -e
//! trace=network` when this test was written). No proxy variable reaches Codex.

use crate::common::*;
use oauth_broker_tests::fake_chatgpt::{BackendRequest, FakeChatGpt};
use oauth_broker_tests::fake_server::{ErrorShape, FakeAuthServer, FakeConfig};
use oauth_broker_tests::harness::{run_with_timeout, TestEnv};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Codex CLI's own OAuth client id; the fake server accepts only it, so a
/// refresh Codex sent would be judged on its refresh token alone.
const CODEX_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
pub(crate) const ACCOUNT: &str = "acct-test";
const LIFETIME: Duration = Duration::from_secs(6);
const CODEX_TIMEOUT: Duration = Duration::from_secs(60);

/// The fake authorization server as ChatGPT's: nested errors, Codex's client
/// id, JWT access tokens that end after `LIFETIME` but claim 15 more minutes.
pub(crate) fn chatgpt_auth_server() -> FakeAuthServer {
    FakeAuthServer::start(FakeConfig {
        access_ttl: LIFETIME,
        jwt_access_tokens: true,
        jwt_exp_slack: Duration::from_secs(15 * 60),
        error_shape: ErrorShape::Nested,
        client_id: CODEX_CLIENT_ID.to_string(),
        account_id: ACCOUNT.to_string(),
        ..FakeConfig::default()
    })
}

/// brokerd's config: the openai-codex preset pointed at the fake server.
pub(crate) fn broker_toml(fake: &FakeAuthServer, extra: &str) -> String {
    format!(
        r#"preset = "openai-codex"
issuer = "{base}"
token_endpoint = "{token}"
authorization_endpoint = "{authorize}"
revocation_endpoint = "{revoke}"
client_id = "{CODEX_CLIENT_ID}"

[refresh]
backoff_initial_ms = 200
backoff_max_secs = 2
http_timeout_secs = 5

{extra}"#,
        base = fake.base_url(),
        token = fake.token_endpoint(),
        authorize = fake.authorization_endpoint(),
        revoke = fake.revocation_endpoint(),
    )
}

/// Codex's `config.toml`: every URL on loopback, everything that would call
/// elsewhere switched off.
pub(crate) fn codex_toml(backend: &FakeChatGpt, extra: &str) -> String {
    format!(
        r#"chatgpt_base_url = "{chatgpt}"
openai_base_url = "{codex}"
model = "gpt-test"
check_for_update_on_startup = false
{extra}
[analytics]
enabled = false

[otel]
exporter = "none"
trace_exporter = "none"
metrics_exporter = "none"

[features]
plugins = false
apps = false
in_app_updates = false
"#,
        chatgpt = backend.chatgpt_base_url(),
        codex = backend.codex_base_url(),
    )
}

pub(crate) struct Codex {
    bin: PathBuf,
    pub(crate) home: PathBuf,
    workdir: PathBuf,
    pub(crate) env: Vec<(String, String)>,
}

impl Codex {
    pub(crate) fn new(
        bin: PathBuf,
        env: &TestEnv,
        fake: &FakeAuthServer,
        backend: &FakeChatGpt,
    ) -> Codex {
        let home = env.path("codex-home");
        let workdir = env.path("work");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&workdir).unwrap();
        let mut vars: Vec<(String, String)> = env
            .base_env()
            .into_iter()
            .filter(|(k, _)| !k.to_ascii_lowercase().ends_with("_proxy"))
            .collect();
        let s = |p: &Path| p.display().to_string();
        vars.extend([
            ("CODEX_HOME".to_string(), s(&home)),
            ("CODEX_CA_CERTIFICATE".to_string(), s(backend.ca_path())),
            (
                "CODEX_REFRESH_TOKEN_URL_OVERRIDE".to_string(),
                fake.token_endpoint(),
            ),
            (
                "CODEX_REVOKE_TOKEN_URL_OVERRIDE".to_string(),
                fake.revocation_endpoint(),
            ),
        ]);
        Codex {
            bin,
            home,
            workdir,
            env: vars,
        }
    }

    pub(crate) fn write_config(&self, toml: &str) {
        std::fs::write(self.home.join("config.toml"), toml).unwrap();
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.workdir);
        run_with_timeout(cmd, None, CODEX_TIMEOUT).expect("codex runs")
    }

    /// One `codex exec` turn that must succeed with the fake's answer.
    pub(crate) fn exec(&self, backend: &FakeChatGpt) -> Vec<BackendRequest> {
        backend.clear_requests();
        let workdir = self.workdir.display().to_string();
        let out = self.run(&["exec", "--skip-git-repo-check", "-C", &workdir, "say pong"]);
        assert!(
            out.status.success() && stdout(&out).contains("pong"),
            "codex exec failed ({}):\nstdout:\n{}\nstderr:\n{}\nbackend saw: {:#?}",
            out.status,
            stdout(&out),
            stderr(&out),
            backend.requests()
        );
        assert!(
            !stderr(&out).contains("Failed to refresh token"),
            "Codex tried to refresh on its own:\n{}",
            stderr(&out)
        );
        backend.requests()
    }
}

fn bearers(requests: &[BackendRequest]) -> Vec<String> {
    requests.iter().filter_map(|r| r.bearer.clone()).collect()
}

/// Asserts that every refresh the fake server saw was the broker's: Codex
/// never refreshed on its own. The broker's count is read before the
/// server's, so a refresh still in flight only delays the equality (polled
/// for), while a single refresh by Codex makes it impossible.
pub(crate) fn assert_every_refresh_was_the_brokers(p: &Broker) {
    oauth_broker_tests::harness::Backoff::new(Duration::from_secs(20))
        .until(|| {
            let broker = p.status().refresh_count;
            (p.fake.stats().refresh_requests == broker).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "the server saw refreshes the broker did not make: {:#?}, broker {}",
                p.fake.stats(),
                p.status().refresh_count
            )
        });
}

#[test]
fn codex_cli_runs_on_the_projected_file_across_refreshes_and_heals_a_401() {
    let bin = oauth_broker_tests::tools::ensure_codex_cli();
    let env = TestEnv::new();
    let fake = chatgpt_auth_server();
    let backend = FakeChatGpt::start(fake.clone(), ACCOUNT, env.root());
    let toml = broker_toml(
        &fake,
        "[[project]]\nkind = \"codex\"\npath = \"{root}/codex-home/auth.json\"\n",
    );
    let p = Broker::builder()
        .fake_server(fake.clone())
        .test_env(env)
        .config(move |_| toml)
        .logged_in();
    let codex = Codex::new(bin, &p.env, &fake, &backend);
    codex.write_config(&codex_toml(&backend, ""));
    let auth_json = codex.home.join("auth.json");

    // Several runs, each on the token of a different lifetime.
    let mut run_tokens: Vec<String> = Vec::new();
    for lifetime in 0..4u64 {
        let token = p.wait_projected_after(
            &auth_json,
            &["tokens", "access_token"],
            run_tokens.last().map(String::as_str),
        );
        let requests = codex.exec(&backend);
        let sent = bearers(&requests);
        assert!(
            requests.iter().any(|r| r.is_turn() && r.status == 200),
            "a model turn was served: {requests:#?}"
        );
        assert!(
            !sent.is_empty(),
            "the run's requests carried a token: {requests:#?}"
        );
        // The file held `token` when the run started; should the broker have
        // refreshed while Codex was starting (a slow machine), Codex loaded a
        // later one. Either way every request carried the broker's current
        // token of some moment of the run. Codex keeps the token it loaded,
        // unless a 401 made it re-read the file (on a loaded machine a run can
        // outlive its token): then it moves on to a newer one of the broker's.
        let first_401 = requests.iter().position(|r| r.status == 401);
        for (i, request) in requests.iter().enumerate() {
            let Some(bearer) = request.bearer.as_deref() else {
                continue;
            };
            p.assert_current_since(
                bearer,
                &fingerprint(&token),
                &format!("request {i} of run {lifetime}"),
            );
            if bearer != sent[0] {
                assert!(
                    first_401.is_some_and(|at| at < i)
                        && p.issue_position(bearer) > p.issue_position(&sent[0]),
                    "run {lifetime} changed tokens only after a 401, to a newer one: {requests:#?}"
                );
            }
        }
        // The token that served the run's turn.
        let token = requests
            .iter()
            .rfind(|r| r.is_turn() && r.status == 200)
            .and_then(|r| r.bearer.clone())
            .unwrap();
        assert!(requests
            .iter()
            .filter(|r| r.bearer.is_some())
            .all(|r| r.account_id.as_deref() == Some(ACCOUNT)));
        run_tokens.push(token);
        fake.wait_for_refresh_requests(lifetime + 1, Duration::from_secs(20))
            .expect("the broker refreshes");
    }
    run_tokens.dedup();
    assert_eq!(run_tokens.len(), 4, "the runs used four different tokens");

    // A run that outlives its token: the turn is held until the token Codex
    // loaded is dead (the broker has refreshed and rewritten the file long
    // before); the 401 makes Codex re-read the file and retry.
    let started_with = p.wait_projected_after(
        &auth_json,
        &["tokens", "access_token"],
        run_tokens.last().map(String::as_str),
    );
    backend.hold_next_turn();
    let requests = codex.exec(&backend);
    let turns: Vec<_> = requests.iter().filter(|r| r.is_turn()).collect();
    assert!(turns.len() >= 2, "a retry followed the 401: {turns:#?}");
    assert!(turns[0].held && turns[0].status == 401);
    // The token Codex loaded at start: the file's (or, after a refresh while
    // Codex was starting, a later one of the broker's).
    let held_with = turns[0].bearer.clone().unwrap();
    p.assert_current_since(&held_with, &fingerprint(&started_with), "the held turn");
    let last = turns.last().unwrap();
    assert_eq!(last.status, 200);
    let healed_with = last.bearer.clone().unwrap();
    p.assert_current_since(
        &healed_with,
        &fingerprint(&held_with),
        "the retry after the 401",
    );
    assert!(
        p.issue_position(&healed_with) > p.issue_position(&held_with),
        "the retry carried a token the broker obtained after the one that died"
    );

    // Codex never refreshed: every refresh the server saw was the broker's.
    assert_every_refresh_was_the_brokers(&p);
    let stats = fake.stats();
    assert_eq!(stats.invalid_refresh_attempts, 0);
    assert_eq!(stats.reuse_detections, 0);
    assert_eq!(stats.families_revoked, 0);

    // `codex logout` revokes what the file holds: only the placeholder.
    let out = codex.run(&["logout"]);
    assert!(out.status.success(), "codex logout: {}", stderr(&out));
    assert_eq!(fake.revoked_tokens(), vec![PLACEHOLDER.to_string()]);
    assert_eq!(fake.stats().families_revoked, 0);
    // The broker's login is untouched and keeps refreshing.
    let before = fake.stats().successful_refreshes;
    fake.wait_until(Duration::from_secs(20), |s| s.successful_refreshes > before)
        .expect("the broker still refreshes after codex logout");
    let out = p.ctl(&["token"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The projection writes the file again; the next Codex run works.
    p.wait_projected(&auth_json, &["tokens", "access_token"]);
    codex.exec(&backend);
    p.assert_no_token_in_logs();
}

#[test]
fn codex_cli_custom_provider_gets_its_token_from_brokerctl_and_reruns_it_after_a_401() {
    let bin = oauth_broker_tests::tools::ensure_codex_cli();
    let env = TestEnv::new();
    let fake = chatgpt_auth_server();
    let backend = FakeChatGpt::start(fake.clone(), ACCOUNT, env.root());
    let p = Broker::builder()
        .fake_server(fake.clone())
        .test_env(env)
        .config(|fake| broker_toml(fake, ""))
        .logged_in();
    let codex = Codex::new(bin, &p.env, &fake, &backend);
    // The README recipe: no auth.json at all, the token comes from brokerctl.
    let provider = format!(
        r#"model_provider = "broker"

[model_providers.broker]
name = "oauth-broker"
base_url = "{api}"
wire_api = "responses"
http_headers = {{ "ChatGPT-Account-ID" = "{ACCOUNT}" }}
auth = {{ command = "{brokerctl}", args = ["--socket", "{socket}", "token"], refresh_interval_ms = 0 }}
"#,
        api = backend.api_base_url(),
        brokerctl = brokerctl().display(),
        socket = p.broker.socket_path().display(),
    );
    codex.write_config(&codex_toml(&backend, &provider));
    assert!(!codex.home.join("auth.json").exists());

    let before = p.current_token_id();
    let requests = codex.exec(&backend);
    let turns: Vec<_> = requests.iter().filter(|r| r.is_turn()).collect();
    // One turn, served with the token brokerctl got from the broker. (On a
    // loaded machine the token, served with a fifth of its life left, may end
    // before the turn arrives: then only a 401 makes Codex ask again.)
    let (served, rejected) = turns.split_last().expect("a turn");
    assert_eq!(served.status, 200, "{requests:#?}");
    assert!(rejected.iter().all(|t| t.status == 401), "{requests:#?}");
    let first = served.bearer.clone().unwrap();
    p.assert_current_since(&first, &before, "the turn");

    // The turn outlives its token; the 401 makes Codex run brokerctl again.
    let before = p.current_token_id();
    backend.hold_next_turn();
    let requests = codex.exec(&backend);
    let turns: Vec<_> = requests.iter().filter(|r| r.is_turn()).collect();
    assert!(turns.len() >= 2, "a retry followed the 401: {turns:#?}");
    assert!(turns[0].held && turns[0].status == 401);
    let held_with = turns[0].bearer.clone().unwrap();
    p.assert_current_since(&held_with, &before, "the held turn");
    let last = turns.last().unwrap();
    assert_eq!(last.status, 200);
    let retried_with = last.bearer.clone().unwrap();
    p.assert_current_since(
        &retried_with,
        &fingerprint(&held_with),
        "the retry after the 401",
    );
    assert!(
        p.issue_position(&retried_with) > p.issue_position(&held_with),
        "the rerun brokerctl served a token obtained after the one that died"
    );
    assert_every_refresh_was_the_brokers(&p);
    let stats = fake.stats();
    assert_eq!(stats.invalid_refresh_attempts, 0);
    assert_eq!(stats.reuse_detections, 0);
    p.assert_no_token_in_logs();
}
