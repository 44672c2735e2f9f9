//! The real Claude Code against the real brokerd, offline: brokerd projects
//! its Anthropic login into a temporary `CLAUDE_CONFIG_DIR`, and `claude -p`
//! sessions run in private network namespaces where `api.anthropic.com` and
//! `platform.claude.com` are a fake on loopback (see
//! `oauth_broker_tests::fake_anthropic`).
//!
//! Proves, for Claude Code 2.1.332 (`tools::CLAUDE_CODE_VERSION`):
//! * with `[[project]] kind = "claude-code"`, with 8 sessions at a time back
//!   to back until their requests have carried four tokens (three refreshes,
//!   three lifetimes), every Messages request carries
//!   the broker's current token and Claude Code sends no request at all to
//!   its token endpoint;
//! * a file wiped the way Claude Code wipes it (after its own refresh failed)
//!   is rewritten by the broker, and the next session works;
//! * a request that outlives its token (answered 401 after the broker has
//!   refreshed) is retried with the token Claude Code re-reads from the file,
//!   again without a refresh of its own; and a session whose token dies
//!   between two of its requests (a tool call in between) sends the second
//!   one with the file's new token, without a 401 (both among the sessions
//!   above);
//! * the recipe `brokerctl exec --env CLAUDE_CODE_OAUTH_TOKEN -- claude -p …`
//!   sends the broker's token as an OAuth token (with the OAuth beta header)
//!   and writes no credential file.
//!
//! Why the short test tokens do not make Claude Code refresh: it refreshes
//! when `expiresAt` is within 5 minutes, at start-up and after a 401. The
//! projection therefore writes `expiresAt` as the real expiry but at least
//! 15 minutes after the broker got the token
//! (`projection::claude_code::LEAST_CLAIMED_LIFETIME`); Anthropic's own tokens
//! live hours and are written unchanged. The fake's tokens end after
//! `LIFETIME` regardless, and the broker refreshes at 75–80 % of that.
//!
//! Nothing leaves loopback: the sessions' network namespace has no other
//! interface, the hosts file maps every Anthropic host to 127.0.0.1, and
//! telemetry, error reporting, auto-update and other non-essential traffic
//! are switched off by their environment variables (with them, 2.1.332
//! connects only to api.anthropic.com — checked with `strace -f -e
//! trace=connect` when this test was written). The binary is installed on
//! first use into `${OAUTH_BROKER_CACHE:-$HOME/.cache/oauth-broker}`
//! (`oauth_broker_tests::tools::ensure_claude_code`; `OAUTH_BROKER_CLAUDE_BIN`
//! may name another one). A machine that does not allow unprivileged user
//! namespaces fails these tests with a message naming the sysctl to change.

use crate::common::*;
use oauth_broker_tests::fake_anthropic::{AnthropicRequest, FakeAnthropic, Hold};
use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig};
use oauth_broker_tests::harness::{run_with_timeout, Backoff, TestEnv};
use oauth_broker_tests::tools::ensure_claude_code;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Claude Code's OAuth client id (the anthropic preset's default); the fake
/// authorization server accepts only it.
const CLAUDE_CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";
const SCOPE: &str = "user:profile user:inference";
/// The broker refreshes at 75–80 % of it: the previous token lives 4 s and
/// more after the file got the next, so a session that read the file just
/// before still gets its answer on a slow machine.
const LIFETIME: Duration = Duration::from_secs(20);
const SESSIONS: usize = 8;
/// Refreshes the sessions must span.
const REFRESHES: usize = 3;
/// Bound on the sessions' span (about 50 s on an idle machine).
const SPAN_TIMEOUT: Duration = Duration::from_secs(150);
const CLAUDE_TIMEOUT: Duration = Duration::from_secs(90);
const ACCESS_TOKEN: &[&str] = &["claudeAiOauth", "accessToken"];
/// How long after a refresh a request may still carry the token before it
/// (Claude Code checks the file just before it sends; the machine may be
/// slow). Well under the broker's refresh interval (75–80 % of `LIFETIME`).
const CURRENT_GRACE: Duration = Duration::from_secs(4);

/// brokerd with the anthropic preset against the fake authorization server,
/// Claude Code installed, and the fake Anthropic.
pub(crate) struct Setup {
    pub(crate) p: Broker,
    pub(crate) anthropic: FakeAnthropic,
    pub(crate) claude: PathBuf,
    config_dir: PathBuf,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) workdir: PathBuf,
    /// The fake's access-token lifetime.
    lifetime: Duration,
}

impl Setup {
    /// Fails (naming the sysctl to change) when this machine cannot run
    /// programs in private namespaces, and when Claude Code cannot be
    /// installed.
    fn start(lifetime: Duration, project: bool) -> Setup {
        let project = if project {
            "[[project]]\nkind = \"claude-code\"\npath = \"{root}/claude/.credentials.json\"\n"
        } else {
            ""
        };
        Setup::start_with(lifetime, project.to_string(), |_| String::new())
    }

    /// [`Setup::start`] with `tables` appended to the broker's config, and
    /// `more` (given the fake Anthropic) appended after them.
    pub(crate) fn start_with(
        lifetime: Duration,
        tables: String,
        more: impl FnOnce(&FakeAnthropic) -> String,
    ) -> Setup {
        let env = TestEnv::new();
        let fake = FakeAuthServer::start(FakeConfig {
            access_ttl: lifetime,
            client_id: CLAUDE_CLIENT_ID.to_string(),
            default_scope: SCOPE.to_string(),
            ..FakeConfig::default()
        });
        let anthropic = FakeAnthropic::start(fake.clone(), env.root());
        if let Err(why) = anthropic.check_isolation() {
            panic!("{why}");
        }
        let claude = ensure_claude_code();
        let project = format!("{tables}{}", more(&anthropic));
        let p = Broker::builder()
            .fake_server(fake)
            .test_env(env)
            .config(move |fake| {
                format!(
                    "preset = \"anthropic\"\ntoken_endpoint = \"{token}\"\n\n\
                     [refresh]\nbackoff_initial_ms = 200\nbackoff_max_secs = 2\nhttp_timeout_secs = 5\n\n\
                     {project}",
                    token = fake.token_endpoint(),
                )
            })
            .logged_in();
        let config_dir = p.env.path("claude");
        let home = p.env.path("claude-home");
        let workdir = p.env.path("work");
        let tmp = p.env.path("claude-tmp");
        for dir in [&config_dir, &home, &workdir, &tmp] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let s = |p: &Path| p.display().to_string();
        let mut vars: Vec<(String, String)> = p
            .env
            .base_env()
            .into_iter()
            .filter(|(k, _)| !k.to_ascii_lowercase().ends_with("_proxy") && k != "TMPDIR")
            .collect();
        vars.extend(
            [
                ("HOME", s(&home)),
                ("TMPDIR", s(&tmp)),
                ("CLAUDE_CONFIG_DIR", s(&config_dir)),
                ("NODE_EXTRA_CA_CERTS", s(anthropic.ca_path())),
                ("DISABLE_TELEMETRY", "1".into()),
                ("DISABLE_ERROR_REPORTING", "1".into()),
                ("DISABLE_AUTOUPDATER", "1".into()),
                ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        Setup {
            p,
            anthropic,
            claude,
            config_dir,
            env: vars,
            workdir,
            lifetime,
        }
    }

    fn credentials(&self) -> PathBuf {
        self.config_dir.join(".credentials.json")
    }

    /// `program args…` in its own offline namespace, with Claude Code's
    /// environment.
    fn run(&self, program: &Path, args: &[&str]) -> Output {
        let mut cmd: Command = self
            .anthropic
            .command(program)
            .expect("isolate the program");
        cmd.args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.workdir);
        run_with_timeout(cmd, None, CLAUDE_TIMEOUT).expect("the program runs")
    }

    /// One `claude -p` session that must print the fake's answer.
    fn session(&self) -> Output {
        let out = self.run(&self.claude, &["-p", "say pong"]);
        self.assert_answered(&out);
        out
    }

    fn assert_answered(&self, out: &Output) {
        assert!(
            out.status.success() && stdout(out).contains("pong"),
            "claude -p failed ({}):\nstdout:\n{}\nstderr:\n{}\nthe fake saw: {:#?}",
            out.status,
            stdout(out),
            stderr(out),
            self.anthropic.requests()
        );
    }

    /// `m` was answered and carried the broker's current token: the newest
    /// access token the authorization server had issued when `m` arrived (the
    /// broker is its only client), or the one before it if the newest was
    /// issued less than `CURRENT_GRACE` earlier (a session that read the file
    /// just before the broker rewrote it).
    fn assert_current(&self, m: &AnthropicRequest) {
        assert_eq!(m.status, 200, "answered: {m:#?}");
        self.assert_carried_current(m);
    }

    /// `m` carried the broker's current token (see [`Self::assert_current`]),
    /// as an OAuth token.
    pub(crate) fn assert_carried_current(&self, m: &AnthropicRequest) {
        assert!(m.oauth_beta, "sent as an OAuth token: {m:#?}");
        let fake = &self.p.fake;
        let mut issued: Vec<(Instant, String)> = fake
            .all_issued_tokens()
            .into_iter()
            .filter_map(|t| Some((fake.access_token_expires_at(&t)? - self.lifetime, t)))
            .filter(|(at, _)| *at <= m.at)
            .collect();
        issued.sort();
        let bearer = m.bearer.as_deref().unwrap_or_default();
        let newest = issued.last().expect("a token was issued");
        let previous_still_current = issued.len() >= 2
            && issued[issued.len() - 2].1 == bearer
            && m.at.duration_since(newest.0) < CURRENT_GRACE;
        assert!(
            newest.1 == bearer || previous_still_current,
            "a Messages request carried token {} while the broker's current one was {} (issued {:?} before the request)",
            fingerprint(bearer),
            fingerprint(&newest.1),
            m.at.duration_since(newest.0),
        );
    }

    /// The file's `expiresAt`, in the tool's terms.
    fn claimed_expiry(&self) -> SystemTime {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.credentials()).unwrap()).unwrap();
        let ms = json["claudeAiOauth"]["expiresAt"].as_u64().unwrap();
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// Nothing but the broker ever refreshed: Claude Code sent no request to
    /// its token endpoint, and every refresh the authorization server saw was
    /// one of the broker's, with no reuse.
    pub(crate) fn assert_only_the_broker_refreshed(&self) {
        let token_requests = self.anthropic.token_requests();
        assert!(
            token_requests.is_empty(),
            "Claude Code sent {} request(s) to its token endpoint: {token_requests:#?}",
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
        let others: Vec<AnthropicRequest> = self
            .anthropic
            .requests()
            .into_iter()
            .filter(|r| r.host != "api.anthropic.com")
            .collect();
        assert!(others.is_empty(), "requests to other hosts: {others:#?}");
    }
}

#[test]
fn claude_code_sessions_use_the_projected_token_across_refreshes_wipes_and_401s() {
    let s = Setup::start(LIFETIME, true);
    let file = s.credentials();

    // 8 sessions at a time, back to back, until their requests have carried
    // four different tokens: the sessions span three refreshes (and three
    // token lifetimes).
    s.p.wait_projected(&file, ACCESS_TOKEN);
    assert!(
        s.claimed_expiry() > SystemTime::now() + Duration::from_secs(10 * 60),
        "Claude Code is shown an expiresAt beyond its 5-minute refresh window"
    );
    let refreshes_before = s.p.fake.stats().refresh_requests;
    // Two of the sessions outlive their token: their first request is held
    // until the token it carried is dead (the broker refreshed and rewrote the
    // file before). One is then answered 401: Claude Code must re-read the
    // file and retry. The other is answered with a tool call: Claude Code's
    // next request in that session (the tool's error) must carry the file's
    // new token without having been told the old one died — it re-reads the
    // file when its mtime changed.
    s.anthropic.hold_next_message(Hold::Unauthorized);
    s.anthropic.hold_next_message(Hold::ToolCall);
    let enough = AtomicBool::new(false);
    let started = Instant::now();
    let distinct_tokens = || {
        let mut used: Vec<String> = s
            .anthropic
            .messages()
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
                "{} sessions in {:?} used only {} tokens",
                s.anthropic.messages().len(),
                started.elapsed(),
                distinct_tokens()
            )
        });
    });
    let messages = s.anthropic.messages();
    let (held, answered): (Vec<_>, Vec<_>) = messages.into_iter().partition(|m| m.held.is_some());
    assert_eq!(held.len(), 2, "{held:#?}");
    for m in &held {
        let status = if m.held == Some(Hold::Unauthorized) {
            401
        } else {
            200
        };
        assert_eq!(m.status, status, "{m:#?}");
        s.assert_carried_current(m);
    }
    // Every other request was answered, so carried a live token: the two held
    // sessions' next requests too (both sessions printed the answer), though
    // their first token was dead by then. That is the file's next token, got
    // without a refresh; for the tool-call session without a 401 either.
    for m in &answered {
        s.assert_current(m);
    }
    assert!(s.p.fake.stats().refresh_requests >= refreshes_before + REFRESHES as u64);

    // Claude Code wipes the file when its own refresh fails; the broker
    // rewrites it and the next session works.
    let wiped = serde_json::json!({"claudeAiOauth": {
        "accessToken": "", "refreshToken": "", "expiresAt": 0,
        "scopes": ["user:inference", "user:profile"], "subscriptionType": null}});
    std::fs::write(&file, wiped.to_string()).unwrap();
    s.p.wait_projected(&file, ACCESS_TOKEN);
    s.anthropic.clear_requests();
    s.session();
    for m in s.anthropic.messages() {
        s.assert_current(&m);
    }

    s.assert_only_the_broker_refreshed();
    assert_eq!(
        file_token(&file, &["claudeAiOauth", "refreshToken"]).as_deref(),
        Some(PLACEHOLDER),
        "the file never held a real refresh token"
    );
    s.p.assert_no_token_in_logs();
}

#[test]
fn brokerctl_exec_hands_claude_code_the_current_token_in_its_oauth_variable() {
    // Tokens that outlive the session: the recipe is for short runs.
    let s = Setup::start(Duration::from_secs(120), false);
    let socket = s.p.broker.socket_path().display().to_string();
    let claude = s.claude.display().to_string();
    let out = s.run(
        &brokerctl(),
        &[
            "--socket",
            &socket,
            "exec",
            "--env",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "--",
            &claude,
            "-p",
            "say pong",
        ],
    );
    s.assert_answered(&out);
    let messages = s.anthropic.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].status, 200);
    assert!(messages[0].oauth_beta, "sent as an OAuth token");
    assert_eq!(
        fingerprint(messages[0].bearer.as_deref().unwrap()),
        s.p.current_token_id()
    );
    // Every request carried the same token, and none went to the token
    // endpoint.
    assert!(s
        .anthropic
        .requests()
        .iter()
        .all(|r| r.bearer == messages[0].bearer));
    s.assert_only_the_broker_refreshed();
    assert!(
        !s.credentials().exists(),
        "Claude Code kept the variable's token to itself"
    );
    s.p.assert_no_token_in_logs();
}
