//! The real GitHub Copilot CLI against the real brokerd, offline: brokerd
//! (`preset = "github"`) holds a GitHub App user login whose access tokens
//! expire and whose refresh tokens rotate, and `copilot -p` sessions run in
//! private network namespaces where `api.github.com`, `github.com` and
//! `api.githubcopilot.com` are a fake on loopback (see
//! `oauth_broker_tests::fake_copilot`).
//!
//! Proves, for Copilot CLI 1.0.102 (`tools::COPILOT_CLI_VERSION`):
//! * with `[[project]] kind = "copilot-cli"` (the broker writes `authTokens`
//!   in `~/.copilot/config.json`), 2 sessions at a time back to back until
//!   their model requests have carried three tokens (two refreshes, three
//!   lifetimes): every request answered by the API carried the broker's
//!   current token, Copilot sends no request at all to GitHub's token
//!   endpoint, and the token it had from its own login is never used again;
//! * a request that outlives its token is answered 401, after which Copilot
//!   re-reads `config.json` and retries with the broker's next token; a
//!   session whose token dies between two of its requests (a tool call in
//!   between) sends the second with the dead token (Copilot does not re-read
//!   the file before a request), gets a 401 and heals the same way;
//! * `brokerctl exec --env COPILOT_GITHUB_TOKEN -- copilot -p …` sends the
//!   broker's token on every request and stores nothing; and that token is
//!   fixed for the process: when it dies under a running session, Copilot
//!   retries with the same token and gives up ("Authorization error") — the
//!   recipe is for runs shorter than a token's life.
//!
//! Nothing leaves loopback: the sessions' network namespace has only
//! loopback, and the hosts file maps every GitHub and Copilot host Copilot
//! contacts to 127.0.0.1 (telemetry too: it still posts to
//! `telemetry.githubcopilot.com`, which the fake answers 404). Auto-update is
//! off (`COPILOT_AUTO_UPDATE=false`; it still asks `api.github.com` for its
//! releases, answered 404). The binary is installed on first use into
//! `${OAUTH_BROKER_CACHE:-$HOME/.cache/oauth-broker}`
//! (`oauth_broker_tests::tools::ensure_copilot_cli`;
//! `OAUTH_BROKER_COPILOT_BIN` may name another one).

use crate::common::*;
use oauth_broker_tests::fake_copilot::{CopilotRequest, FakeCopilot, Hold, LOGIN};
use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig};
use oauth_broker_tests::harness::{run_with_timeout, Backoff, TestEnv};
use oauth_broker_tests::tools::{copilot_pkg_cache, ensure_copilot_cli};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The GitHub App the broker logs in with (the user's own registration).
const APP_CLIENT_ID: &str = "Iv23-test-github-app";
/// The broker refreshes at 75–80 % of it, so the previous token lives 12 s
/// and more after the file got the next: longer than a session's start-up
/// on a loaded machine (up to 15 s was seen with 3 sessions at a time, two
/// busy loops and other builds on 2 cores). (A session whose token dies *during* its start-up
/// fails: the start-up requests are not retried after a 401 — see the README.
/// With GitHub's 8-hour tokens a token read from the file has more than 1.6
/// hours left.)
const LIFETIME: Duration = Duration::from_secs(60);
const SESSIONS: usize = 2;
/// Refreshes the sessions must span.
const REFRESHES: usize = 2;
const SPAN_TIMEOUT: Duration = Duration::from_secs(300);
const COPILOT_TIMEOUT: Duration = Duration::from_secs(120);
/// The token Copilot CLI had from its own `copilot login`, before the broker.
const OWN_LOGIN_TOKEN: &str = "gho_copilots-own-login-token";

/// brokerd with the github preset against the fake authorization server,
/// Copilot CLI installed, and the fake GitHub + Copilot API.
struct Setup {
    p: Broker,
    copilot_api: FakeCopilot,
    copilot: PathBuf,
    home: PathBuf,
    env: Vec<(String, String)>,
    workdir: PathBuf,
    /// The fake's access-token lifetime.
    lifetime: Duration,
}

impl Setup {
    fn start(lifetime: Duration, project: bool) -> Setup {
        let env = TestEnv::new();
        let fake = FakeAuthServer::start(FakeConfig {
            access_ttl: lifetime,
            client_id: APP_CLIENT_ID.to_string(),
            default_scope: String::new(),
            access_token_prefix: "ghu_".to_string(),
            ..FakeConfig::default()
        });
        let copilot_api = FakeCopilot::start(fake.clone(), env.root());
        if let Err(why) = copilot_api.check_isolation() {
            panic!("{why}");
        }
        let copilot = ensure_copilot_cli();
        let project = if project {
            "[[project]]\nkind = \"copilot-cli\"\npath = \"{root}/copilot-home/.copilot/config.json\"\nrefresh_margin_secs = 3\n"
        } else {
            ""
        };
        let p = Broker::builder()
            .fake_server(fake)
            .test_env(env)
            .before_start(|env, _| {
                // What Copilot CLI wrote after its own `copilot login`, where
                // no keychain is available (and with the setting that keeps
                // it out of one).
                let dir = env.path("copilot-home/.copilot");
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("config.json"), copilots_own_login()).unwrap();
                std::fs::write(
                    dir.join("settings.json"),
                    "{\n  \"storeTokenPlaintext\": true\n}\n",
                )
                .unwrap();
            })
            .config(move |fake| {
                format!(
                    "preset = \"github\"\nclient_id = \"{APP_CLIENT_ID}\"\ntoken_endpoint = \"{token}\"\n\n\
                     [refresh]\nbackoff_initial_ms = 200\nbackoff_max_secs = 2\nhttp_timeout_secs = 5\n\n\
                     {project}",
                    token = fake.token_endpoint(),
                )
            })
            .logged_in();
        let home = p.env.path("copilot-home");
        let workdir = p.env.path("work");
        let tmp = p.env.path("copilot-tmp");
        for dir in [&home, &workdir, &tmp] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let s = |p: &Path| p.display().to_string();
        let mut vars: Vec<(String, String)> = p
            .env
            .base_env()
            .into_iter()
            .filter(|(k, _)| {
                !k.to_ascii_lowercase().ends_with("_proxy")
                    && k != "TMPDIR"
                    && !k.contains("TOKEN")
                    && !k.starts_with("COPILOT_")
            })
            .collect();
        vars.extend(
            [
                ("HOME", s(&home)),
                ("TMPDIR", s(&tmp)),
                ("XDG_CACHE_HOME", s(&home.join(".cache"))),
                ("XDG_CONFIG_HOME", s(&home.join(".config"))),
                ("COPILOT_PKG_CACHE_HOME", s(&copilot_pkg_cache())),
                ("NODE_EXTRA_CA_CERTS", s(copilot_api.ca_path())),
                ("COPILOT_AUTO_UPDATE", "false".into()),
                ("COPILOT_OTEL_ENABLED", "false".into()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        Setup {
            p,
            copilot_api,
            copilot,
            home,
            env: vars,
            workdir,
            lifetime,
        }
    }

    fn config_file(&self) -> PathBuf {
        self.home.join(".copilot/config.json")
    }

    /// `program args…` in its own offline namespace, with Copilot's
    /// environment.
    fn run(&self, program: &Path, args: &[&str]) -> Output {
        let mut cmd: Command = self
            .copilot_api
            .command(program)
            .expect("isolate the program");
        cmd.args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.workdir);
        run_with_timeout(cmd, None, COPILOT_TIMEOUT).expect("the program runs")
    }

    /// One `copilot -p` session that must print the fake's answer.
    fn session(&self) -> Output {
        let out = self.run(&self.copilot, &["-p", "say pong"]);
        self.assert_answered(&out);
        out
    }

    fn assert_answered(&self, out: &Output) {
        assert!(
            out.status.success() && stdout(out).contains("pong"),
            "copilot -p failed ({}):\nstdout:\n{}\nstderr:\n{}\nthe fake saw: {:#?}\nbroker logs:\n{}",
            out.status,
            stdout(out),
            stderr(out),
            self.copilot_api.requests(),
            self.p.env.all_logs()
        );
    }

    /// The tokens the authorization server issued up to `at`, oldest first.
    fn issued_until(&self, at: Instant) -> Vec<String> {
        let fake = &self.p.fake;
        let mut issued: Vec<(Instant, String)> = fake
            .all_issued_tokens()
            .into_iter()
            .filter(|t| t.starts_with("ghu_"))
            .filter_map(|t| Some((fake.access_token_expires_at(&t)?, t)))
            .filter(|(expires, _)| *expires - self.lifetime <= at)
            .collect();
        issued.sort();
        issued.into_iter().map(|(_, t)| t).collect()
    }

    /// `r` carried the broker's current token: the newest access token the
    /// authorization server had issued when `r` arrived (the broker is its
    /// only client), or the one before it while that was still alive — the
    /// broker replaces a token at 75–80 % of its life and serves either until
    /// then, and a session reads the file once, at its start.
    fn assert_carried_current(&self, r: &CopilotRequest) {
        let issued = self.issued_until(r.at);
        let bearer = r.bearer.as_deref().unwrap_or_default();
        let newest = issued.last().expect("a token was issued");
        let previous_still_alive = issued.len() >= 2
            && issued[issued.len() - 2] == bearer
            && self
                .p
                .fake
                .access_token_expires_at(bearer)
                .is_some_and(|end| end > r.at);
        assert!(
            newest == bearer || previous_still_alive,
            "{} {}{} carried token {} while the broker's current one was {}",
            r.method,
            r.host,
            r.path,
            fingerprint(bearer),
            fingerprint(newest),
        );
    }

    /// Nothing but the broker ever refreshed: Copilot sent no request to
    /// GitHub's token endpoint, every refresh the authorization server saw
    /// was one of the broker's, with no reuse; and no request carried the
    /// token of Copilot's own earlier login.
    fn assert_only_the_broker_refreshed(&self) {
        let token_requests = self.copilot_api.token_requests();
        assert!(
            token_requests.is_empty(),
            "Copilot CLI sent {} request(s) to GitHub's token endpoint: {token_requests:#?}",
            token_requests.len()
        );
        let stats = self.p.fake.stats();
        assert_eq!(
            stats.refresh_requests,
            self.p.status().refresh_count,
            "{stats:#?}"
        );
        assert_eq!(stats.invalid_refresh_attempts, 0);
        assert_eq!(stats.reuse_detections, 0);
        assert_eq!(stats.families_revoked, 0);
        let own: Vec<CopilotRequest> = self
            .copilot_api
            .requests()
            .into_iter()
            .filter(|r| r.bearer.as_deref() == Some(OWN_LOGIN_TOKEN))
            .collect();
        assert!(
            own.is_empty(),
            "requests with Copilot's own token: {own:#?}"
        );
    }
}

/// What Copilot CLI 1.0.102 writes to `~/.copilot/config.json` after `copilot
/// login` (comment lines included), for the fake's account.
fn copilots_own_login() -> String {
    format!(
        "// User settings belong in settings.json.\n// This file is managed automatically.\n{}\n",
        serde_json::to_string_pretty(&serde_json::json!({
            "authTokens": {
                format!("https://github.com:{LOGIN}:github"): {"token": OWN_LOGIN_TOKEN},
                format!("https://github.com:{LOGIN}"): {"token": OWN_LOGIN_TOKEN},
            },
            "loggedInUsers": [{"host": "https://github.com", "login": LOGIN, "kind": "githubDotCom"}],
            "lastLoggedInUser": {"host": "https://github.com", "login": LOGIN},
        }))
        .unwrap()
    )
}

/// Every GitHub token in Copilot's `config.json` (which may start with `//`
/// comment lines).
fn tokens_in(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let json: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let Ok(value) = serde_json::from_str::<Value>(&json) else {
        return Vec::new();
    };
    value["authTokens"]
        .as_object()
        .map(|tokens| {
            tokens
                .values()
                .filter_map(|e| e["token"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn copilot_cli_sessions_use_the_projected_github_token_across_refreshes_and_401s() {
    let s = Setup::start(LIFETIME, true);
    let file = s.config_file();

    // The broker's token replaces Copilot's own login in both entries; the
    // file as Copilot wrote it is kept as the backup.
    Backoff::new(Duration::from_secs(20))
        .until(|| {
            let tokens = tokens_in(&file);
            (tokens.len() == 2
                && tokens
                    .iter()
                    .all(|t| fingerprint(t) == s.p.current_token_id()))
            .then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "{} never held the broker's token: {:?}\n{}",
                file.display(),
                s.p.status().projections,
                s.p.env.all_logs()
            )
        });
    let backup = PathBuf::from(format!("{}.oauth-broker-backup", file.display()));
    assert!(
        tokens_in(&backup).contains(&OWN_LOGIN_TOKEN.to_string()),
        "Copilot's own login was backed up"
    );

    let refreshes_before = s.p.fake.stats().refresh_requests;
    // Two sessions outlive their token: their first model request is held
    // until the token it carried is dead. One is then answered 401; the
    // other with a tool call, so that its next request shows which token a
    // running session sends after its token died.
    s.copilot_api.hold_next_model_request(Hold::Unauthorized);
    s.copilot_api.hold_next_model_request(Hold::ToolCall);
    let enough = AtomicBool::new(false);
    let started = Instant::now();
    let distinct_tokens = || {
        let mut used: Vec<String> = s
            .copilot_api
            .model_requests()
            .into_iter()
            .filter_map(|m| m.bearer)
            .collect();
        used.sort();
        used.dedup();
        used.len()
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..SESSIONS)
            .map(|_| {
                scope.spawn(|| {
                    s.session();
                    while !enough.load(Ordering::SeqCst) {
                        s.session();
                    }
                })
            })
            .collect();
        // Not a judge, only when to stop: every request is checked below.
        let spanned =
            Backoff::new(SPAN_TIMEOUT).until(|| (distinct_tokens() > REFRESHES).then_some(()));
        enough.store(true, Ordering::SeqCst);
        for worker in workers {
            worker.join().expect("a session failed");
        }
        spanned.unwrap_or_else(|| {
            panic!(
                "{} model requests in {:?} used only {} tokens",
                s.copilot_api.model_requests().len(),
                started.elapsed(),
                distinct_tokens()
            )
        });
    });

    let requests = s.copilot_api.requests();
    let api: Vec<&CopilotRequest> = requests.iter().filter(|r| r.is_api_request()).collect();
    let held: Vec<&&CopilotRequest> = api.iter().filter(|r| r.held.is_some()).collect();
    assert_eq!(held.len(), 2, "{held:#?}");
    for r in &held {
        let status = if r.held == Some(Hold::Unauthorized) {
            401
        } else {
            200
        };
        assert_eq!(r.status, status, "{r:#?}");
        s.assert_carried_current(r);
    }
    // Every request the API answered carried the broker's current token
    // (the release check included: Copilot sends it the same token).
    for r in api.iter().filter(|r| r.status != 401) {
        s.assert_carried_current(r);
    }
    // A 401 only ever answered a token that had died, and the session then
    // went on with the broker's next token (every session printed "pong").
    // The tool-call session's second request carried its dead token: Copilot
    // does not re-read the file before a request, only after a 401.
    let after_tool_call: Vec<&&CopilotRequest> = api
        .iter()
        .filter(|r| r.is_model_request() && r.status == 401 && r.held.is_none())
        .collect();
    for r in &after_tool_call {
        let bearer = r.bearer.as_deref().unwrap_or_default();
        assert!(
            !s.p.fake.is_access_token_valid(bearer)
                && s.p.fake.all_issued_tokens().iter().any(|t| t == bearer),
            "a 401 for a token the broker never served: {r:#?}"
        );
    }
    assert!(
        !after_tool_call.is_empty(),
        "the tool-call session's next request carried its dead token and was refused"
    );
    assert!(s.p.fake.stats().refresh_requests >= refreshes_before + REFRESHES as u64);

    s.assert_only_the_broker_refreshed();
    s.p.assert_no_token_in_logs();
}

#[test]
fn brokerctl_exec_hands_copilot_cli_the_github_token_for_runs_shorter_than_its_life() {
    // A token that outlives the session: the recipe.
    let s = Setup::start(Duration::from_secs(120), false);
    std::fs::remove_file(s.config_file()).unwrap();
    let socket = s.p.broker.socket_path().display().to_string();
    let copilot = s.copilot.display().to_string();
    let exec = |prompt: &str| {
        s.run(
            &brokerctl(),
            &[
                "--socket",
                &socket,
                "exec",
                "--env",
                "COPILOT_GITHUB_TOKEN",
                "--",
                &copilot,
                "-p",
                prompt,
            ],
        )
    };
    let out = exec("say pong");
    s.assert_answered(&out);
    let api: Vec<CopilotRequest> = s
        .copilot_api
        .requests()
        .into_iter()
        .filter(|r| r.is_api_request())
        .collect();
    assert!(api.iter().any(|r| r.is_model_request()), "{api:#?}");
    for r in &api {
        assert!(r.status == 200 || r.status == 404, "{r:#?}");
        assert_eq!(
            fingerprint(r.bearer.as_deref().unwrap_or_default()),
            s.p.current_token_id(),
            "{r:#?}"
        );
    }
    assert!(
        tokens_in(&s.config_file()).is_empty(),
        "Copilot kept the variable's token to itself"
    );
    s.assert_only_the_broker_refreshed();

    // The variable's token is fixed for the process: a session whose token
    // dies gets a 401, retries with the same token and gives up.
    let dying = Setup::start(LIFETIME, false);
    std::fs::remove_file(dying.config_file()).unwrap();
    dying
        .copilot_api
        .hold_next_model_request(Hold::Unauthorized);
    let socket = dying.p.broker.socket_path().display().to_string();
    let out = dying.run(
        &brokerctl(),
        &[
            "--socket",
            &socket,
            "exec",
            "--env",
            "COPILOT_GITHUB_TOKEN",
            "--",
            &copilot,
            "-p",
            "say pong",
        ],
    );
    assert!(
        !out.status.success() && stderr(&out).contains("Authorization error"),
        "a dead variable token ends the session:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let models = dying.copilot_api.model_requests();
    let first = models[0].bearer.clone();
    assert!(models.len() >= 2, "{models:#?}");
    assert!(
        models.iter().all(|m| m.bearer == first && m.status == 401),
        "every retry carried the same dead token: {models:#?}"
    );
    dying.assert_only_the_broker_refreshed();
    s.p.assert_no_token_in_logs();
    dying.p.assert_no_token_in_logs();
}
