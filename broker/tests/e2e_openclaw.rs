//! The real OpenClaw against the real brokerd, offline: brokerd keeps
//! OpenClaw's auth profile store fed (`[[project]] kind = "openclaw"`, the row
//! `authProfiles.store` of its SQLite state database), and `openclaw agent
//! --local` turns on the ChatGPT/Codex login run spread over several
//! access-token lifetimes.
//!
//! OpenClaw's URLs are fixed (`https://chatgpt.com/backend-api/codex/responses`
//! for the model, `https://auth.openai.com/oauth/token` for its own
//! refreshes), so every OpenClaw process runs in private user, network and
//! mount namespaces (the runner of `oauth_broker_tests::fake_anthropic`, via
//! `FakeChatGpt::command`) where those names are `127.0.0.1:443`, served by
//! the fake ChatGPT backend; it passes `auth.openai.com` on to the fake
//! authorization server, which counts every refresh and revocation. The
//! namespace has no interface but its own loopback: nothing leaves the
//! machine.
//!
//! Proves, for OpenClaw `tools::OPENCLAW_VERSION`:
//! * turns spread over three access-token lifetimes (three at a time) each
//!   send the broker's current token with the `ChatGPT-Account-ID` of its
//!   claims, and OpenClaw sends nothing to `auth.openai.com`;
//! * what a backend 401 does (a turn held until its token is dead), and that
//!   the next turn runs on the broker's current token;
//! * what `openclaw models auth logout --provider openai` does: it revokes
//!   nothing, and the broker keeps its login and writes the profile again.
//!
//! Why short test tokens do not make OpenClaw refresh: it refreshes when the
//! profile's `expires` is within 5 minutes, and the broker writes `expires`
//! from the token's JWT `exp`. As in the Codex CLI and Hermes tests, the
//! fake's JWTs claim 15 minutes more than their real life
//! (`FakeConfig::jwt_exp_slack`), so OpenClaw always sees more than 10 minutes
//! left (and the broker's 8-minute margin never fires early), while the fake
//! ends the tokens after `LIFETIME` and the broker refreshes at 75–80 % of
//! it. Real ChatGPT tokens live days: `expires` is far off anyway.
//!
//! One OpenClaw turn spends 40–150 s starting up on a loaded two-core machine
//! (its plugins, tools and SQLite maintenance), so the lifetime turns run three
//! at a time. OpenClaw and the Node.js it needs are installed outside the
//! clone on first use (`oauth_broker_tests::tools::ensure_openclaw`, ≈700
//! MB); without them, or without unprivileged user namespaces, the test fails
//! with the cause.

use crate::common::*;
use oauth_broker_tests::fake_chatgpt::{BackendRequest, FakeChatGpt};
use oauth_broker_tests::fake_server::{ErrorShape, FakeAuthServer, FakeConfig};
use oauth_broker_tests::harness::{run_with_timeout, Backoff, TestEnv};
use oauth_broker_tests::tools::{ensure_openclaw, OpenClawInstall};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Codex's OAuth client id, which OpenClaw uses too.
const CODEX_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
const ACCOUNT: &str = "acct-test";
/// Longer than one OpenClaw turn from the moment it reads the store to its
/// model request (see the module doc); the broker's forced refreshes rotate
/// the token between turns.
const LIFETIME: Duration = Duration::from_secs(240);
/// Tokens (lifetimes) the turns run on.
const LIFETIMES: usize = 3;
const TURN_TIMEOUT: Duration = Duration::from_secs(300);
/// A model OpenClaw 2026.9.6 routes to ChatGPT's Codex backend.
const MODEL: &str = "openai/gpt-5.6-terra";
const PROFILE: &str = "openai:default";
/// Another provider's login OpenClaw holds (a setup token; never sent).
const ANTHROPIC_TOKEN: &str =
    "sk-ant-oat01-test-setup-token-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-test";

struct Setup {
    p: Broker,
    backend: FakeChatGpt,
    openclaw: OpenClawInstall,
    db: PathBuf,
    env: Vec<(String, String)>,
    workdir: PathBuf,
    sessions: AtomicUsize,
}

impl Setup {
    /// The fakes, OpenClaw with a state database of its own and another
    /// provider's login in its store (`openclaw models auth paste-token`: its
    /// first saved profile also makes the state database the store's home,
    /// `auth.sharedStore`, which the projection needs), then brokerd
    /// projecting into that database.
    fn start() -> Setup {
        let env = TestEnv::new();
        let fake = FakeAuthServer::start(FakeConfig {
            access_ttl: LIFETIME,
            jwt_access_tokens: true,
            jwt_exp_slack: Duration::from_secs(15 * 60),
            error_shape: ErrorShape::Nested,
            client_id: CODEX_CLIENT_ID.to_string(),
            account_id: ACCOUNT.to_string(),
            ..FakeConfig::default()
        });
        let backend = FakeChatGpt::start(fake.clone(), ACCOUNT, env.root());
        backend
            .check_isolation()
            .unwrap_or_else(|why| panic!("{why}"));
        let openclaw = ensure_openclaw();
        let state_dir = env.path("openclaw");
        let home = env.path("openclaw-home");
        let workdir = env.path("work");
        for dir in [&state_dir, &home, &workdir] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let text = |p: &Path| p.display().to_string();
        let mut vars: Vec<(String, String)> = env
            .base_env()
            .into_iter()
            .filter(|(k, _)| !k.to_ascii_lowercase().ends_with("_proxy"))
            .collect();
        vars.extend(
            [
                ("HOME", text(&home)),
                ("OPENCLAW_STATE_DIR", text(&state_dir)),
                ("NODE_EXTRA_CA_CERTS", text(backend.ca_path())),
                ("PATH", openclaw.path_var()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        let db = state_dir.join("state/openclaw.sqlite");
        let out = openclaw_run(
            &backend,
            &openclaw,
            &vars,
            &workdir,
            &[
                "models",
                "auth",
                "paste-token",
                "--provider",
                "anthropic",
                "--expires-in",
                "365d",
            ],
            Some(format!("{ANTHROPIC_TOKEN}\n").as_bytes()),
        );
        assert!(
            out.status.success() && db.exists(),
            "openclaw models auth paste-token: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        let p = Broker::builder()
            .fake_server(fake)
            .test_env(env)
            .config(broker_toml)
            .logged_in();
        let s = Setup {
            p,
            backend,
            openclaw,
            db,
            env: vars,
            workdir,
            sessions: AtomicUsize::new(0),
        };
        s.wait_projected_after(None);
        s
    }

    fn run(&self, args: &[&str]) -> Output {
        openclaw_run(
            &self.backend,
            &self.openclaw,
            &self.env,
            &self.workdir,
            args,
            None,
        )
    }

    /// One `openclaw agent --local` turn in a session of its own.
    fn turn(&self) -> Output {
        let session = format!("s{}", self.sessions.fetch_add(1, Ordering::SeqCst));
        self.run(&[
            "agent",
            "--local",
            "--agent",
            "main",
            "--session-id",
            &session,
            "--model",
            MODEL,
            "--message",
            "say pong",
            "--json",
        ])
    }

    fn answered(out: &Output) -> bool {
        out.status.success() && stdout(out).contains("\"finalAssistantVisibleText\": \"pong\"")
    }

    /// The store document in OpenClaw's database.
    fn store(&self) -> Option<Value> {
        let db = rusqlite::Connection::open_with_flags(
            &self.db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()?;
        let json: String = db
            .query_row(
                "SELECT value_json FROM config_machine_state WHERE state_key = 'authProfiles.store'",
                [],
                |row| row.get(0),
            )
            .ok()?;
        serde_json::from_str(&json).ok()
    }

    fn profile(&self) -> Option<Value> {
        Some(self.store()?["profiles"].get(PROFILE)?.clone())
    }

    /// Waits until the profile holds the broker's current token (other than
    /// `previous`); returns it.
    fn wait_projected_after(&self, previous: Option<&str>) -> String {
        Backoff::new(Duration::from_secs(30))
            .until(|| {
                let token = self.profile()?["access"].as_str()?.to_string();
                let fresh = previous != Some(token.as_str());
                (fresh && fingerprint(&token) == self.p.current_token_id()).then_some(token)
            })
            .unwrap_or_else(|| {
                panic!(
                    "the store never held the broker's current token; status {:?}\nlogs:\n{}",
                    self.p.target_status(&self.db),
                    self.p.logs()
                )
            })
    }

    /// A forced refresh (a 401 report through the real client): the broker
    /// gets a new token and projects it; returns it.
    fn rotate(&self, previous: &str) -> String {
        let mut client = self.p.client();
        let token = client.token(Duration::ZERO).expect("a token");
        client.unauthorized(&token).expect("a forced refresh");
        self.wait_projected_after(Some(previous))
    }

    fn auth_requests(&self) -> Vec<BackendRequest> {
        self.backend
            .requests()
            .into_iter()
            .filter(BackendRequest::is_auth_request)
            .collect()
    }
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
forced_refresh_floor_secs = 0

[[project]]
kind = "openclaw"
path = "{{root}}/openclaw/state/openclaw.sqlite"
"#,
        base = fake.base_url(),
        token = fake.token_endpoint(),
        authorize = fake.authorization_endpoint(),
        revoke = fake.revocation_endpoint(),
    )
}

/// `openclaw args…` in its own offline namespace.
fn openclaw_run(
    backend: &FakeChatGpt,
    openclaw: &OpenClawInstall,
    env: &[(String, String)],
    workdir: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Output {
    let mut cmd = backend.command(&openclaw.bin).expect("isolate openclaw");
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(workdir);
    run_with_timeout(cmd, stdin, TURN_TIMEOUT).expect("openclaw runs")
}

fn turns(requests: &[BackendRequest]) -> Vec<&BackendRequest> {
    requests.iter().filter(|r| r.is_turn()).collect()
}

#[test]
fn openclaw_turns_use_the_projected_token_across_refreshes_401s_and_logout() {
    let s = Setup::start();
    let started = Instant::now();

    // Turns on three tokens, the broker rotating the token between them.
    let mut token = s.wait_projected_after(None);
    let mut used = Vec::new();
    for lifetime in 0..LIFETIMES {
        if lifetime > 0 {
            token = s.rotate(&token);
        }
        s.backend.clear_requests();
        let out = s.turn();
        let requests = s.backend.requests();
        assert!(
            Setup::answered(&out),
            "turn {lifetime} failed ({}):\nstdout:\n{}\nstderr:\n{}\nbackend saw {requests:#?}",
            out.status,
            tail(&stdout(&out)),
            tail(&stderr(&out))
        );
        let served = turns(&requests);
        assert!(served.iter().any(|r| r.status == 200), "{requests:#?}");
        for r in &requests {
            assert!(
                !r.is_auth_request(),
                "OpenClaw went to auth.openai.com: {r:#?}"
            );
            assert!(r.status == 200 || r.websocket, "{r:#?}");
            assert_eq!(
                r.bearer.as_deref(),
                Some(token.as_str()),
                "the broker's current token: {r:?}"
            );
            assert_eq!(r.account_id.as_deref(), Some(ACCOUNT), "{r:?}");
        }
        used.push(token.clone());
        eprintln!("turn {lifetime} done after {:?}", started.elapsed());
    }
    used.dedup();
    assert_eq!(used.len(), LIFETIMES);
    let stats = s.p.fake.stats();
    assert_eq!(
        stats.refresh_requests, stats.successful_refreshes,
        "{stats:#?}"
    );
    assert_eq!(stats.invalid_refresh_attempts, 0);
    assert_eq!(stats.reuse_detections, 0);
    let profile = s.profile().expect("the broker's profile");
    assert_eq!(profile["refresh"], PLACEHOLDER);
    assert_eq!(profile["accountId"], ACCOUNT);
    assert_eq!(profile["type"], "oauth");
    assert_eq!(
        s.store().unwrap()["profiles"]["anthropic:manual"]["token"],
        ANTHROPIC_TOKEN,
        "the other provider's login is kept"
    );

    // A turn that outlives its token: the answer is held until the token it
    // sent is dead (the broker refreshed and rewrote the store long before),
    // then 401.
    let before = s.p.fake.stats();
    s.backend.clear_requests();
    s.backend.hold_next_turn();
    let held_out = s.turn();
    let requests = s.backend.requests();
    eprintln!(
        "401 turn after {:?}: answered={} backend saw {:#?}\nstdout tail: {}\nstderr tail: {}",
        started.elapsed(),
        Setup::answered(&held_out),
        requests
            .iter()
            .map(|r| (
                r.host.clone(),
                r.method.clone(),
                r.path.clone(),
                r.websocket,
                r.status,
                r.held,
                r.bearer.as_deref().map(fingerprint)
            ))
            .collect::<Vec<_>>(),
        tail(&stdout(&held_out)),
        tail(&stderr(&held_out)),
    );
    let after = s.p.fake.stats();
    eprintln!("stats before {before:?}\nafter {after:?}");
    assert_eq!(after.reuse_detections, 0);
    assert_eq!(after.families_revoked, 0);
    assert_eq!(
        after.invalid_refresh_attempts,
        before.invalid_refresh_attempts
    );
    let token = s.wait_projected_after(None);
    s.backend.clear_requests();
    let out = s.turn();
    assert!(
        Setup::answered(&out),
        "the turn after the 401: {}\n{}",
        tail(&stdout(&out)),
        tail(&stderr(&out))
    );
    for r in s.backend.requests() {
        assert!(!r.is_auth_request(), "{r:#?}");
        s.p.assert_current_since(
            r.bearer.as_deref().unwrap(),
            &fingerprint(&token),
            "the turn after the 401",
        );
    }
    eprintln!("401 phase done after {:?}", started.elapsed());

    // `openclaw models auth logout`.
    let before = s.p.fake.stats();
    s.backend.clear_requests();
    let out = s.run(&[
        "models", "auth", "logout", PROFILE, "--agent", "main", "--yes",
    ]);
    eprintln!(
        "logout: {} {}\n{}\nstore now: {:?}\nbackend saw {:?}",
        out.status,
        tail(&stdout(&out)),
        tail(&stderr(&out)),
        s.store().map(|d| d["profiles"]
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())),
        s.backend.requests(),
    );
    let after = s.p.fake.stats();
    assert_eq!(after.revocation_requests, before.revocation_requests);
    assert_eq!(after.families_revoked, 0);
    assert!(s.auth_requests().is_empty());
    // The broker keeps its login and writes its profile again.
    s.rotate("");
    s.p.assert_no_token_in_logs();
    eprintln!("done after {:?}", started.elapsed());
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(3000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    &text[start..]
}
