//! Interoperability with an authorization server nobody here wrote: panva's
//! OpenID Certified `oidc-provider` (pinned in
//! `tests/interop/oidc-provider/package-lock.json`, installed by the test on first use),
//! configured with refresh-token rotation, reuse detection, PKCE and the
//! device flow, on loopback.
//!
//! Our own fake server only proves that the broker agrees with itself; this
//! proves it against a strict, independent implementation:
//! 1. `brokerctl relogin --device --json` logs in while the test approves the
//!    user code through the server's own pages; the broker knows only the
//!    issuer and finds every endpoint by discovery.
//! 2. Concurrent clients in several processes get tokens across several
//!    access-token lifetimes; every token works at the server's userinfo
//!    endpoint and the server's own records show every refresh succeeded and
//!    none was a reuse.
//! 3. The grant is revoked at the server: the broker reports
//!    `relogin_required` with the reason and the hint, and
//!    `brokerctl relogin --browser --json` (login and consent pages driven over
//!    HTTP up to the broker's loopback redirect) recovers while a client stays
//!    connected on one and the same connection.
//! 4. The "none was a reuse" above is meaningful: replaying a refresh token
//!    the broker has rotated makes the server detect the reuse and revoke
//!    the grant, and the broker reports `relogin_required`.
//!
//! No token is made by hand: every one comes out of oidc-provider's grant
//! handlers.

use crate::common::token_hammer::{hammer, result_line, Hammer};
use crate::interop::browser::{excerpt, Browser};
use crate::interop::login_process::LoginProcess;
use crate::interop::raw_connection::RawConnection;
use crate::interop::server::{OidcProvider, ServerOptions, TEST_USER_AGENT};
use oauth_broker_proto::{ErrorCode, ExposeSecret as _, Request, Response, TokenGrant};
use oauth_broker_tests::harness::{BrokerProcess, BrokerSpec, TestEnv};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The public client registered at the server.
const CLIENT_ID: &str = "oauth-broker-interop";
/// The user who logs in on the server's pages.
const USER: &str = "interop-user";
/// Access-token lifetime at the server: short, so that several lifetimes
/// pass in seconds.
const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(4);
/// Lifetimes the concurrent clients span.
const LIFETIMES: u32 = 3;
/// Client processes, and client threads in each.
const PROCESSES: usize = 4;
const THREADS_PER_PROCESS: usize = 8;
/// The redirect the broker's browser login uses (RFC 8252 loopback; the
/// server ignores the port of a loopback redirect for native clients).
const REDIRECT_URIS: &[&str] = &["http://127.0.0.1/callback"];
/// Limit for each step that waits on the broker.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const CHILD_ENV: &str = "OAUTH_BROKER_INTEROP_CHILD_SOCKET";

fn brokerd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_brokerd"))
}

fn brokerctl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_brokerctl"))
}

/// Not a test of its own: the entry point of the client processes spawned by
/// `brokerd_interoperates_with_oidc_provider`. Returns at once unless that
/// test started it.
#[test]
fn interop_child_entry() {
    let Ok(socket) = std::env::var(CHILD_ENV) else {
        return;
    };
    let run_for = Duration::from_millis(
        std::env::var("INTEROP_RUN_MS")
            .expect("INTEROP_RUN_MS")
            .parse()
            .expect("INTEROP_RUN_MS is a number"),
    );
    let deadline = Instant::now() + run_for;
    let (total, ids) = hammer(
        &socket,
        deadline,
        &Hammer {
            threads: THREADS_PER_PROCESS,
            name_prefix: "interop",
            request_timeout: Some(Duration::from_secs(30)),
            min_valid: |i| Duration::from_secs((i % 2) as u64),
            pause: Duration::from_millis(10),
        },
    );
    println!("{}", result_line("INTEROP_RESULT", total, ids));
}

/// The whole scenario, in order, on one server and one broker.
#[test]
fn brokerd_interoperates_with_oidc_provider() {
    let started = Instant::now();
    let mut run = Interop::start();
    run.device_login();
    let tokens = run.serve_concurrent_clients();
    let mut keeper = RawConnection::open(run.broker.socket_path());
    let revoked_token = run.revoke_at_server(&mut keeper);
    run.browser_login();
    let new_tokens = run.keeper_gets_new_grant(&mut keeper, &revoked_token);
    run.check_final_records();
    run.reuse_detection_is_live(&mut keeper);
    run.check_no_token_in_logs(tokens.iter().chain(&new_tokens).chain([&revoked_token]));
    println!(
        "interop: whole run {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// One server, one broker, and what the test learned from discovery.
/// Field order is drop order: the broker stops before the server, and both
/// before their temp dir disappears.
struct Interop {
    broker: BrokerProcess,
    server: OidcProvider,
    env: TestEnv,
    rt: tokio::runtime::Runtime,
    issuer: String,
    discovery: Value,
    /// Successful refreshes the server recorded before the revocation.
    refreshes_before_revocation: u64,
}

impl Interop {
    /// Starts oidc-provider and brokerd; brokerd knows only the issuer, so
    /// every endpoint must come from discovery.
    fn start() -> Interop {
        let env = TestEnv::new();
        let server = OidcProvider::start(
            &ServerOptions {
                client_id: CLIENT_ID.into(),
                access_token_ttl: ACCESS_TOKEN_TTL,
                redirect_uris: REDIRECT_URIS.iter().map(|s| s.to_string()).collect(),
            },
            &env.logs_dir(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let issuer = server.issuer();
        let discovery = rt.block_on(server.discovery());
        println!("interop: oidc-provider {} at {issuer}", server.version());
        let config = format!(
            r#"preset = "generic"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
scopes = ["openid", "offline_access"]

[refresh]
backoff_initial_ms = 200
backoff_max_secs = 2
http_timeout_secs = 5
"#
        );
        let broker =
            BrokerProcess::start(BrokerSpec::new(brokerd(), &env, config)).expect("brokerd starts");
        Interop {
            broker,
            server,
            env,
            rt,
            issuer,
            discovery,
            refreshes_before_revocation: 0,
        }
    }

    /// A discovered endpoint.
    fn endpoint(&self, name: &str) -> String {
        self.discovery[name]
            .as_str()
            .unwrap_or_else(|| panic!("discovery has no {name}"))
            .to_string()
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        self.broker.brokerctl(&brokerctl(), args)
    }

    /// The HTTP status of the server's userinfo endpoint for `token`.
    fn userinfo(&self, token: &str) -> u16 {
        let endpoint = self.endpoint("userinfo_endpoint");
        self.rt
            .block_on(self.server.userinfo_status(&endpoint, token))
    }

    fn records(&self) -> Value {
        self.rt.block_on(self.server.records())
    }

    /// Both sides' logs, for failure messages.
    fn context(&self) -> String {
        format!(
            "\n--- oidc-provider events:\n{}\n--- oidc-provider stderr:\n{}\n--- brokerd log:\n{}",
            self.server.event_log(),
            self.server.stderr_text(),
            self.broker.logs()
        )
    }

    /// The end of both logins (`flow` is `device` or `browser`): the
    /// `logged_in` event, then brokerctl exits successfully.
    fn finish_login(&self, login: &mut LoginProcess, flow: &str, started: Instant) {
        let event = login.next_event(STEP_TIMEOUT);
        assert_eq!(
            event["event"],
            "logged_in",
            "final event: {event}{}",
            self.context()
        );
        let status = login.wait(STEP_TIMEOUT);
        assert!(
            status.success(),
            "brokerctl relogin --{flow}: {status}\n{}",
            login.stderr_text()
        );
        println!(
            "interop: {flow} login took {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    /// 1. `brokerctl relogin --device --json`, approved on the server's own
    ///    pages (code confirmation, login, consent).
    fn device_login(&self) {
        let t = Instant::now();
        let mut login = LoginProcess::start(
            self.broker
                .brokerctl_command(&brokerctl(), &["relogin", "--device", "--json"]),
        );
        let event = login.next_event(STEP_TIMEOUT);
        assert_eq!(
            event["event"],
            "device_code",
            "first event: {event}{}",
            self.context()
        );
        let verification = event["verification_uri"].as_str().unwrap_or_default();
        assert!(
            verification.starts_with(&self.issuer),
            "verification_uri {verification} is not the server's"
        );
        let user_code = event["user_code"].as_str().expect("user_code");
        // The complete URI when offered, else the page where the code is typed.
        let approval = match event["verification_uri_complete"].as_str() {
            Some(complete) => complete.to_string(),
            None => format!("{verification}?user_code={user_code}"),
        };
        let page = self
            .rt
            .block_on(Browser::new().complete_login(&approval, USER));
        assert!(
            page.body.contains("Sign-in Success"),
            "the device approval did not end on the success page: {} (HTTP {}):\n{}{}",
            page.url,
            page.status,
            excerpt(&page.body),
            self.context()
        );
        self.finish_login(&mut login, "device", t);
    }

    /// 2. Concurrent clients in several processes across several access-token
    ///    lifetimes, while `brokerctl token` runs too; every distinct token
    ///    brokerctl gets is checked at the server's userinfo endpoint. The
    ///    server's records must show every refresh succeeded, none a reuse,
    ///    and that the broker fetched the discovery document. Returns the
    ///    tokens seen.
    fn serve_concurrent_clients(&mut self) -> Vec<String> {
        let t = Instant::now();
        let run_for = ACCESS_TOKEN_TTL * LIFETIMES;
        let exe = std::env::current_exe().expect("test executable");
        let children: Vec<_> = (0..PROCESSES)
            .map(|_| {
                Command::new(&exe)
                    .args([
                        "interop_oidc_provider::interop_child_entry",
                        "--exact",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD_ENV, self.broker.socket_path())
                    .env("INTEROP_RUN_MS", run_for.as_millis().to_string())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn client process")
            })
            .collect();
        let mut seen_tokens: Vec<String> = Vec::new();
        let mut ctl_runs = 0;
        while t.elapsed() < run_for {
            let out = self.ctl(&["token"]);
            assert!(
                out.status.success(),
                "brokerctl token: {}{}",
                text(&out.stderr),
                self.context()
            );
            let token = text(&out.stdout).trim_end().to_string();
            if !seen_tokens.contains(&token) {
                assert_eq!(
                    self.userinfo(&token),
                    200,
                    "the server's userinfo refused a served token{}",
                    self.context()
                );
                seen_tokens.push(token);
            }
            ctl_runs += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut requests = 0u64;
        let mut token_ids = BTreeSet::new();
        for child in children {
            let out = child.wait_with_output().expect("client process");
            let stdout = text(&out.stdout);
            assert!(
                out.status.success(),
                "client process failed: {stdout}\n{}{}",
                text(&out.stderr),
                self.context()
            );
            let line = stdout
                .lines()
                .find_map(|l| l.split_once("INTEROP_RESULT ").map(|(_, rest)| rest))
                .expect("client process result");
            let (n, ids) = line.split_once(' ').expect("result line");
            requests += n.parse::<u64>().expect("request count");
            token_ids.extend(ids.split(',').map(str::to_string));
        }
        let records = self.records();
        let refresh = &records["refresh"];
        println!(
            "interop: {requests} client requests from {PROCESSES} processes + {ctl_runs} brokerctl runs \
             over {:.1} s ({LIFETIMES} lifetimes of {} s): {} distinct tokens; the server recorded \
             {} refreshes, {} succeeded, {} reuse",
            t.elapsed().as_secs_f64(),
            ACCESS_TOKEN_TTL.as_secs(),
            token_ids.len(),
            refresh["total"],
            refresh["succeeded"],
            refresh["reuse_detected"]
        );
        assert_eq!(
            refresh["reuse_detected"],
            0,
            "records: {records}{}",
            self.context()
        );
        assert_eq!(refresh["failed"], 0, "records: {records}{}", self.context());
        let succeeded = refresh["succeeded"].as_u64().unwrap_or(0);
        assert!(
            succeeded >= u64::from(LIFETIMES - 1),
            "too few refreshes for {LIFETIMES} lifetimes; records: {records}"
        );
        assert_eq!(
            records["revoked_grants"],
            Value::Array(vec![]),
            "records: {records}"
        );
        assert!(
            token_ids.len() >= LIFETIMES as usize,
            "tokens: {token_ids:?}"
        );
        let broker_discovery = records["discovery_requests"]
            .as_array()
            .expect("discovery_requests")
            .iter()
            .filter(|ua| *ua != TEST_USER_AGENT)
            .count();
        assert!(
            broker_discovery >= 1,
            "the broker never fetched the discovery document; records: {records}"
        );
        self.refreshes_before_revocation = succeeded;
        seen_tokens
    }

    /// 3. The administrator revokes the grant at the server. The client
    ///    (kept connected) sees its token refused by the API, tells the
    ///    broker, which refreshes at once and learns the grant is gone:
    ///    `relogin_required` with the reason and the hint, in the answer and
    ///    in `brokerctl status --json`. Returns the revoked access token.
    fn revoke_at_server(&self, keeper: &mut RawConnection) -> String {
        let before = token_grant(keeper.request(&Request::Token {
            min_valid_secs: 0,
            identity: false,
        }));
        let revoked = self.rt.block_on(self.server.revoke_account(USER));
        assert!(!revoked.is_empty(), "no grant of {USER} to revoke");
        assert_eq!(
            self.userinfo(before.access_token.expose_secret()),
            401,
            "a revoked grant's access token still works"
        );
        let answer = keeper.request(&Request::Unauthorized {
            token_id: before.token_id.clone(),
        });
        let Response::Error(frame) = answer else {
            panic!(
                "after revocation, unauthorized answered {answer:?}{}",
                self.context()
            );
        };
        assert_eq!(
            frame.code,
            ErrorCode::ReloginRequired,
            "{frame:?}{}",
            self.context()
        );
        assert!(
            frame
                .hint
                .as_deref()
                .unwrap_or_default()
                .contains("relogin"),
            "the hint names the command: {frame:?}"
        );
        let out = self.ctl(&["status", "--json"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "status exit code: {}",
            text(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).expect("status --json");
        assert_eq!(report["state"], "relogin_required", "{report}");
        assert_eq!(report["relogin_required"], true, "{report}");
        let reason = report["relogin_reason"].as_str().unwrap_or_default();
        assert_eq!(reason, "invalid_grant", "{report}");
        let hint = report["last_error"]["hint"].as_str().unwrap_or_default();
        assert!(
            hint.contains("brokerctl") && hint.contains("relogin"),
            "the status hint names the command: {report}"
        );
        println!("interop: after revocation: relogin_required, reason {reason:?}, hint {hint:?}");
        before.access_token.expose_secret().to_string()
    }

    /// 4. `brokerctl relogin --browser --json`: the server's login and consent
    ///    pages, then its redirect to the broker's loopback listener.
    fn browser_login(&self) {
        let t = Instant::now();
        let mut login = LoginProcess::start(
            self.broker
                .brokerctl_command(&brokerctl(), &["relogin", "--browser", "--json"]),
        );
        let event = login.next_event(STEP_TIMEOUT);
        assert_eq!(
            event["event"],
            "authorize_url",
            "first event: {event}{}",
            self.context()
        );
        let url = event["url"].as_str().expect("url").to_string();
        assert!(
            url.starts_with(&self.endpoint("authorization_endpoint")),
            "authorize URL {url} is not the discovered authorization_endpoint"
        );
        let page = self.rt.block_on(Browser::new().complete_login(&url, USER));
        let reached_broker = page.visited.iter().any(|u| {
            u.origin().ascii_serialization() != self.issuer
                && u.query_pairs().any(|(k, _)| k == "code")
        });
        assert!(
            reached_broker,
            "the browser never reached the broker's redirect with a code; last page {} (HTTP {}):\n{}{}",
            page.url,
            page.status,
            excerpt(&page.body),
            self.context()
        );
        self.finish_login(&mut login, "browser", t);
    }

    /// The kept connection gets the new login's token, then within the next
    /// lifetimes a refreshed one of the new grant; both work at the server.
    fn keeper_gets_new_grant(&self, keeper: &mut RawConnection, revoked: &str) -> Vec<String> {
        let after = token_grant(keeper.request(&Request::Token {
            min_valid_secs: 0,
            identity: false,
        }));
        assert_ne!(after.access_token.expose_secret(), revoked);
        assert_eq!(
            self.userinfo(after.access_token.expose_secret()),
            200,
            "the new login's token does not work at the server"
        );
        let deadline = Instant::now() + ACCESS_TOKEN_TTL * 3;
        let refreshed = loop {
            let grant = token_grant(keeper.request(&Request::Token {
                min_valid_secs: 0,
                identity: false,
            }));
            if grant.token_id != after.token_id {
                break grant;
            }
            assert!(
                Instant::now() < deadline,
                "no refresh of the new grant{}",
                self.context()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(
            self.userinfo(refreshed.access_token.expose_secret()),
            200,
            "the refreshed token does not work at the server"
        );
        vec![
            after.access_token.expose_secret().to_string(),
            refreshed.access_token.expose_secret().to_string(),
        ]
    }

    /// The server's records over the whole run: the only failed refresh is
    /// the one that found the revoked grant (invalid_grant, not a reuse), the
    /// server never revoked a grant on its own, and the new grant refreshed.
    fn check_final_records(&self) {
        let records = self.records();
        let refresh = &records["refresh"];
        assert_eq!(refresh["reuse_detected"], 0, "records: {records}");
        assert_eq!(refresh["failed"], 1, "records: {records}");
        assert!(
            refresh["succeeded"].as_u64().unwrap_or(0) > self.refreshes_before_revocation,
            "records: {records}"
        );
        let failed: Vec<&Value> = records["token_requests"]
            .as_array()
            .expect("token_requests")
            .iter()
            .filter(|r| r["grant_type"] == "refresh_token" && r["outcome"] != "success")
            .collect();
        assert_eq!(failed[0]["error"], "invalid_grant", "records: {records}");
        let revoked_by: Vec<&str> = records["revoked_grants"]
            .as_array()
            .expect("revoked_grants")
            .iter()
            .map(|r| r["by"].as_str().unwrap_or_default())
            .collect();
        assert!(
            revoked_by.iter().all(|by| *by == "admin"),
            "the server revoked a grant on its own (reuse?): {records}"
        );
        println!(
            "interop: the server recorded {} refreshes: {} succeeded, {} failed (the revoked grant), {} reuse",
            refresh["total"], refresh["succeeded"], refresh["failed"], refresh["reuse_detected"]
        );
    }

    /// 5. The zero above means something only if the server would have
    ///    caught a reuse: replay the refresh token the broker just rotated, as
    ///    a second client holding a copy would. The server detects the reuse
    ///    and revokes the whole grant; the broker reports `relogin_required`
    ///    at its next refresh. (The test reads the token from the broker's
    ///    state file, which nothing but a test may do.)
    fn reuse_detection_is_live(&self, keeper: &mut RawConnection) {
        let state = self.env.state_dir().join(self.broker.account());
        let refresh_token = || -> String {
            oauth_broker::store::read_state_dir(&state)
                .expect("read the broker's state")
                .and_then(|s| s.credentials())
                .expect("the state has a refresh token")
                .refresh_token
                .expose_secret()
                .to_string()
        };
        let spent = refresh_token();
        let current = token_grant(keeper.request(&Request::Token {
            min_valid_secs: 0,
            identity: false,
        }));
        let deadline = Instant::now() + ACCESS_TOKEN_TTL * 3;
        let rotated = loop {
            let grant = token_grant(keeper.request(&Request::Token {
                min_valid_secs: 0,
                identity: false,
            }));
            if grant.token_id != current.token_id {
                break grant;
            }
            assert!(Instant::now() < deadline, "no refresh{}", self.context());
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_ne!(
            refresh_token(),
            spent,
            "the broker did not rotate its refresh token"
        );

        let (status, body) = self.rt.block_on(self.server.refresh(
            &self.endpoint("token_endpoint"),
            CLIENT_ID,
            &spent,
        ));
        assert_eq!(status, 400, "replaying a rotated refresh token: {body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
        let records = self.records();
        assert_eq!(
            records["refresh"]["reuse_detected"], 1,
            "records: {records}"
        );
        assert!(
            records["revoked_grants"]
                .as_array()
                .expect("revoked_grants")
                .iter()
                .any(|r| r["by"] == "server"),
            "the server did not revoke the grant on reuse: {records}"
        );
        let answer = keeper.request(&Request::Unauthorized {
            token_id: rotated.token_id.clone(),
        });
        let Response::Error(frame) = answer else {
            panic!(
                "after the reuse, unauthorized answered {answer:?}{}",
                self.context()
            );
        };
        assert_eq!(frame.code, ErrorCode::ReloginRequired, "{frame:?}");
        println!(
            "interop: replaying a rotated refresh token: the server detected the reuse and revoked the grant; the broker says {:?}",
            frame.message
        );
    }

    /// No token the test saw ever reached a log of brokerd or brokerctl.
    fn check_no_token_in_logs<'a>(&self, tokens: impl Iterator<Item = &'a String>) {
        let logs = self.env.all_logs() + &self.broker.logs();
        for token in tokens {
            assert!(
                !logs.contains(token.as_str()),
                "an access token appears in a log"
            );
        }
    }
}

fn token_grant(answer: Response) -> TokenGrant {
    match answer {
        Response::Token(grant) => grant,
        other => panic!("expected a token, got {other:?}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
