//! The real Hermes Agent 0.19.0 against the real brokerd, offline: brokerd
//! keeps Hermes's `auth.json` fed (`[[project]] kind = "hermes"`), and
//! `hermes -z` turns against the `openai-codex` provider run spread over
//! several access-token lifetimes.
//!
//! Hermes's URLs are fixed (`https://chatgpt.com/backend-api/codex` for the
//! model, `https://auth.openai.com/oauth/token` for its own refreshes), so it
//! runs in a private network namespace where those names lead to the fakes
//! (`oauth_broker_tests::netns`): the fake ChatGPT backend and the fake
//! authorization server, which count what Hermes sent. Nothing it sends can
//! leave the machine: the namespace has no interface but its own loopback.
//!
//! Proves, for Hermes Agent 0.19.0:
//! * every backend request carries the broker's current token (and the
//!   account id from its claims);
//! * Hermes sends no request to the token endpoint while the file is fed;
//! * the broker keeps the rest of Hermes's `auth.json` (another provider's
//!   login) as it was;
//! * a backend 401 (a turn that outlives its token) makes Hermes try to refresh
//!   with what the file holds — only the placeholder, which the server refuses
//!   without any harm (no reuse detection, no family revoked) — and costs that
//!   turn; the next turn runs on the broker's current token;
//! * `hermes logout` revokes nothing; the broker keeps its login and writes
//!   the file again;
//! * Hermes and the real Codex CLI side by side on one broker: no refresh
//!   token is ever used twice.
//!
//! Hermes Agent (a venv, ≈228 MB) is installed outside the clone on first use,
//! once per machine, by `oauth_broker_tests::tools::ensure_hermes_agent`, and
//! the namespace needs unprivileged user namespaces (`unshare -rnm`). Without
//! either the tests fail with the cause; they never skip.
//!
//! As in the Codex CLI test, the tokens' JWT `exp` claims 15 minutes more than
//! their real life (Hermes judges them by `exp` and refreshes within 120 s of
//! it), and a token lives longer than one Hermes run (~30 s, most of it
//! Hermes's start-up).

use crate::common::*;
use oauth_broker_tests::fake_chatgpt::{BackendRequest, FakeChatGpt};
use oauth_broker_tests::fake_server::{ErrorShape, FakeAuthServer, FakeConfig};
use oauth_broker_tests::harness::{run_with_timeout, TestEnv};
use oauth_broker_tests::netns::{Netns, Route, Upstream};
use oauth_broker_tests::tools::{ensure_codex_cli, ensure_hermes_agent};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// Codex's OAuth client id, which Hermes uses too.
const CODEX_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
const ACCOUNT: &str = "acct-test";
/// Longer than one Hermes run, so a run starting on a fresh token ends
/// before it does.
const LIFETIME: Duration = Duration::from_secs(50);
const HERMES_TIMEOUT: Duration = Duration::from_secs(150);
/// Hermes's own login, as the token pointer into its file.
const TOKEN_AT: [&str; 4] = ["providers", "openai-codex", "tokens", "access_token"];
/// Hosts Hermes looks up on its own at start-up (model catalogue, update
/// check); answered with a refused connection inside the namespace.
const SINKHOLES: [&str; 2] = ["pypi.org", "models.dev"];

fn chatgpt_auth_server() -> FakeAuthServer {
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

fn broker_toml(fake: &FakeAuthServer) -> String {
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

[[project]]
kind = "hermes"
path = "{{root}}/hermes-home/auth.json"

# The README's recommendation: Hermes adopts $CODEX_HOME/auth.json after a
# refused refresh, so that file holds the broker's projection too.
[[project]]
kind = "codex"
path = "{{root}}/codex-home/auth.json"
"#,
        base = fake.base_url(),
        token = fake.token_endpoint(),
        authorize = fake.authorization_endpoint(),
        revoke = fake.revocation_endpoint(),
    )
}

struct Hermes {
    venv: PathBuf,
    home: PathBuf,
    netns: Netns,
    env: Vec<(String, String)>,
}

impl Hermes {
    fn new(venv: PathBuf, env: &TestEnv, fake: &FakeAuthServer, backend: &FakeChatGpt) -> Hermes {
        let home = env.path("hermes-home");
        let codex_home = env.path("codex-home");
        std::fs::create_dir_all(&codex_home).unwrap();
        let netns = Netns::start(
            &env.path("netns"),
            vec![
                Route {
                    hostnames: vec!["auth.openai.com".into()],
                    port: 443,
                    upstream: Upstream::TerminateTls {
                        config: backend.tls_server_config(),
                        upstream: fake.addr(),
                    },
                },
                Route {
                    hostnames: vec!["chatgpt.com".into()],
                    port: 443,
                    upstream: Upstream::Raw(backend.addr()),
                },
            ],
            &SINKHOLES,
        );
        let ca = backend.ca_path().display().to_string();
        let mut vars: Vec<(String, String)> = env
            .base_env()
            .into_iter()
            .filter(|(k, _)| !k.to_ascii_lowercase().ends_with("_proxy"))
            .collect();
        vars.extend([
            ("HERMES_HOME".to_string(), home.display().to_string()),
            ("CODEX_HOME".to_string(), codex_home.display().to_string()),
            ("SSL_CERT_FILE".to_string(), ca.clone()),
            ("REQUESTS_CA_BUNDLE".to_string(), ca.clone()),
            ("HERMES_CA_BUNDLE".to_string(), ca),
        ]);
        Hermes {
            venv,
            home,
            netns,
            env: vars,
        }
    }

    fn auth_json(&self) -> PathBuf {
        self.home.join("auth.json")
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self
            .netns
            .command(&self.venv.join("bin/python"), &self.venv.join("bin/hermes"));
        cmd.args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.home);
        run_with_timeout(cmd, None, HERMES_TIMEOUT).expect("hermes runs")
    }

    /// One non-interactive turn on the ChatGPT sign-in.
    fn turn(&self, backend: &FakeChatGpt) -> (Output, Vec<BackendRequest>) {
        backend.clear_requests();
        let out = self.run(&[
            "-z",
            "say pong",
            "--provider",
            "openai-codex",
            "-m",
            "gpt-test",
        ]);
        (out, backend.requests())
    }

    /// A turn that must succeed with the fake's answer.
    fn pong(&self, backend: &FakeChatGpt) -> Vec<BackendRequest> {
        let (out, requests) = self.turn(backend);
        assert!(
            out.status.success() && stdout(&out).contains("pong"),
            "hermes turn failed ({}):\nstdout:\n{}\nstderr:\n{}\nbackend saw: {requests:#?}",
            out.status,
            stdout(&out),
            stderr(&out),
        );
        requests
    }
}

fn turns(requests: &[BackendRequest]) -> Vec<&BackendRequest> {
    requests.iter().filter(|r| r.is_turn()).collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn hermes_runs_on_the_projected_file_across_refreshes_and_never_refreshes_itself() {
    Netns::available().unwrap_or_else(|why| panic!("{why}"));
    let venv = ensure_hermes_agent();
    let env = TestEnv::new();
    let fake = chatgpt_auth_server();
    let backend = FakeChatGpt::start(fake.clone(), ACCOUNT, env.root());
    let hermes = Hermes::new(venv, &env, &fake, &backend);
    // Hermes already holds another provider's login: it must survive.
    std::fs::create_dir_all(&hermes.home).unwrap();
    let nous = json!({"access_token": "nous-at", "refresh_token": "nous-rotating-rt"});
    std::fs::write(
        hermes.auth_json(),
        json!({"version": 1, "providers": {"nous": nous}, "active_provider": null}).to_string(),
    )
    .unwrap();
    let p = Broker::builder()
        .fake_server(fake.clone())
        .test_env(env)
        .config(broker_toml)
        .logged_in();
    let auth_json = hermes.auth_json();

    // Three runs, each on the token of a different lifetime.
    let mut run_tokens: Vec<String> = Vec::new();
    for lifetime in 0..3u64 {
        let token =
            p.wait_projected_after(&auth_json, &TOKEN_AT, run_tokens.last().map(String::as_str));
        let requests = hermes.pong(&backend);
        let served = turns(&requests);
        assert!(
            served.iter().any(|r| r.status == 200),
            "a model turn was served: {requests:#?}"
        );
        let now_in_file = file_token(&auth_json, &TOKEN_AT).expect("the projected file");
        let sent: Vec<&str> = requests
            .iter()
            .filter_map(|r| r.bearer.as_deref())
            .collect();
        assert!(!sent.is_empty(), "{requests:#?}");
        assert!(
            sent.iter().all(|b| *b == token || *b == now_in_file),
            "every request of run {lifetime} carried the broker's current token"
        );
        assert!(served
            .iter()
            .all(|r| r.account_id.as_deref() == Some(ACCOUNT)));
        run_tokens.push(sent[0].to_string());
        fake.wait_for_refresh_requests(lifetime + 1, Duration::from_secs(90))
            .expect("the broker refreshes");
    }
    run_tokens.dedup();
    assert_eq!(run_tokens.len(), 3, "the runs used three different tokens");

    // Hermes never refreshed: every refresh the server saw succeeded, so it
    // was the broker's (Hermes only holds the placeholder, which the server
    // would refuse as unknown).
    let stats = fake.stats();
    assert!(stats.refresh_requests >= 3, "{stats:#?}");
    assert_eq!(
        stats.refresh_requests, stats.successful_refreshes,
        "{stats:#?}"
    );
    assert_eq!(stats.invalid_refresh_attempts, 0);
    assert_eq!(stats.reuse_detections, 0);

    // The file: Hermes's shape, the placeholder, the other login untouched.
    let file = read_json(&auth_json);
    let login = &file["providers"]["openai-codex"];
    assert_eq!(login["tokens"]["refresh_token"], PLACEHOLDER);
    assert_eq!(login["tokens"]["account_id"], ACCOUNT);
    assert_eq!(file["providers"]["nous"], nous);
    let pool = file["credential_pool"]["openai-codex"]
        .as_array()
        .expect("Hermes seeded its credential pool from the login");
    assert!(pool.iter().all(|e| e["refresh_token"] == PLACEHOLDER));
    assert!(!file.to_string().contains("fake-rt-"));
    let codex_file = read_json(&p.env.path("codex-home/auth.json"));
    assert_eq!(codex_file["tokens"]["refresh_token"], PLACEHOLDER);

    // A turn that outlives its token: the answer is held until the token
    // Hermes sent is dead (the broker has refreshed and rewritten the file
    // long before). Hermes 0.19.0 answers a 401 by force-refreshing what its
    // file holds: only the placeholder, which the server refuses harmlessly;
    // that turn fails, the next one runs on the broker's current token.
    let before = fake.stats();
    p.wait_projected_after(&auth_json, &TOKEN_AT, run_tokens.last().map(String::as_str));
    backend.hold_next_turn();
    let (out, requests) = hermes.turn(&backend);
    let held = turns(&requests);
    assert!(
        held.first().is_some_and(|t| t.held && t.status == 401),
        "the held turn was refused: {requests:#?}\nstdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    let after = fake.stats();
    // Refused refreshes are Hermes's (the broker's all succeed).
    let hermes_refreshes = (after.refresh_requests - after.successful_refreshes)
        - (before.refresh_requests - before.successful_refreshes);
    eprintln!(
        "after the 401 Hermes sent {hermes_refreshes} refresh request(s); the turn {}",
        if stdout(&out).contains("pong") {
            "recovered"
        } else {
            "failed"
        }
    );
    assert!(
        hermes_refreshes >= 1,
        "Hermes 0.19.0 force-refreshes after a 401: {after:#?}"
    );
    assert_eq!(
        after.invalid_refresh_attempts - before.invalid_refresh_attempts,
        hermes_refreshes,
        "every refresh Hermes sent was refused as unknown (the placeholder): {after:#?}"
    );
    assert_eq!(after.reuse_detections, 0);
    assert_eq!(after.families_revoked, 0);
    let at_start = file_token(&auth_json, &TOKEN_AT).expect("the broker rewrote the file");
    let requests = hermes.pong(&backend);
    let last = turns(&requests).into_iter().last().expect("a turn");
    assert_eq!(last.status, 200);
    let now_in_file = file_token(&auth_json, &TOKEN_AT).expect("the projected file");
    let healed_with = last.bearer.as_deref().unwrap();
    assert!(
        healed_with == at_start || healed_with == now_in_file,
        "the next turn carried the broker's current token"
    );
    assert_ne!(Some(healed_with), held[0].bearer.as_deref());

    // `hermes logout` only forgets the login: nothing is revoked, the broker
    // keeps refreshing and writes the file again.
    let out = hermes.run(&["logout", "--provider", "openai-codex"]);
    assert!(out.status.success(), "hermes logout: {}", stderr(&out));
    assert_eq!(fake.stats().revocation_requests, 0);
    assert_eq!(fake.stats().families_revoked, 0);
    let before = fake.stats().successful_refreshes;
    fake.wait_until(Duration::from_secs(90), |s| s.successful_refreshes > before)
        .expect("the broker still refreshes after hermes logout");
    p.wait_projected(&auth_json, &TOKEN_AT);
    assert_eq!(read_json(&auth_json)["providers"]["nous"], nous);
    p.assert_no_token_in_logs();
}

/// Hermes and the real Codex CLI at the same time, each on its own projected
/// file of one broker: both run, neither refreshes, and the authorization
/// server sees no refresh token used twice.
#[test]
fn hermes_and_codex_cli_side_by_side_cause_no_reuse() {
    Netns::available().unwrap_or_else(|why| panic!("{why}"));
    let venv = ensure_hermes_agent();
    let codex = ensure_codex_cli();
    let env = TestEnv::new();
    let fake = chatgpt_auth_server();
    let backend = FakeChatGpt::start(fake.clone(), ACCOUNT, env.root());
    let hermes = Hermes::new(venv, &env, &fake, &backend);
    let codex_home = env.path("codex-home");
    let workdir = env.path("work");
    std::fs::create_dir_all(&workdir).unwrap();
    std::fs::write(
        codex_home.join("config.toml"),
        format!(
            r#"chatgpt_base_url = "{chatgpt}"
openai_base_url = "{codex}"
model = "gpt-test"
check_for_update_on_startup = false
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
        ),
    )
    .unwrap();
    let p = Broker::builder()
        .fake_server(fake.clone())
        .test_env(env)
        .config(broker_toml)
        .logged_in();
    let mut codex_env: Vec<(String, String)> = p
        .env
        .base_env()
        .into_iter()
        .filter(|(k, _)| !k.to_ascii_lowercase().ends_with("_proxy"))
        .collect();
    codex_env.extend([
        ("CODEX_HOME".to_string(), codex_home.display().to_string()),
        (
            "CODEX_CA_CERTIFICATE".to_string(),
            backend.ca_path().display().to_string(),
        ),
        (
            "CODEX_REFRESH_TOKEN_URL_OVERRIDE".to_string(),
            fake.token_endpoint(),
        ),
        (
            "CODEX_REVOKE_TOKEN_URL_OVERRIDE".to_string(),
            fake.revocation_endpoint(),
        ),
    ]);

    let mut previous: Option<String> = None;
    for round in 0..2u64 {
        let token = p.wait_projected_after(&hermes.auth_json(), &TOKEN_AT, previous.as_deref());
        p.wait_projected(&codex_home.join("auth.json"), &["tokens", "access_token"]);
        let mut cmd = std::process::Command::new(&codex);
        cmd.args(["exec", "--skip-git-repo-check", "-C"])
            .arg(&workdir)
            .arg("say pong")
            .env_clear()
            .envs(codex_env.iter().map(|(k, v)| (k, v)))
            .current_dir(&workdir);
        let codex_run = std::thread::spawn(move || {
            run_with_timeout(cmd, None, Duration::from_secs(90)).expect("codex runs")
        });
        let (hermes_out, _) = hermes.turn(&backend);
        let codex_out = codex_run.join().unwrap();
        assert!(
            stdout(&hermes_out).contains("pong"),
            "hermes, round {round}: {}\n{}",
            stdout(&hermes_out),
            stderr(&hermes_out)
        );
        assert!(
            codex_out.status.success() && stdout(&codex_out).contains("pong"),
            "codex, round {round}: {}\n{}",
            stdout(&codex_out),
            stderr(&codex_out)
        );
        fake.wait_for_refresh_requests(round + 1, Duration::from_secs(90))
            .expect("the broker refreshes");
        previous = Some(token);
    }
    let stats = fake.stats();
    assert_eq!(stats.reuse_detections, 0, "{stats:#?}");
    assert_eq!(stats.families_revoked, 0);
    assert_eq!(stats.invalid_refresh_attempts, 0);
    assert_eq!(stats.refresh_requests, stats.successful_refreshes);
    assert!(backend
        .requests()
        .iter()
        .filter(|r| r.is_turn())
        .all(|r| r.status == 200));
    p.assert_no_token_in_logs();
}
