//! The README's "Use with …" recipes that do not need a tool binary, each run
//! the way the recipe says against the real brokerd (the Codex CLI recipes run
//! the real Codex in `e2e_codex_cli.rs`):
//!
//! * Hermes Agent's `key_cmd`: `brokerctl token --json` prints an OAuth token
//!   response with an honest `expires_in`;
//! * openai-python's callable `api_key`: every request carries the broker's
//!   current token, across a refresh (the real `openai` package, installed on
//!   first use into a venv outside the clone by
//!   `oauth_broker_tests::tools::ensure_openai_python`);
//! * Claude Code's `CLAUDE_CODE_OAUTH_TOKEN` and Copilot tools'
//!   `COPILOT_GITHUB_TOKEN` through `brokerctl exec --env`.

use crate::common::*;
use oauth_broker_tests::fake_chatgpt::FakeChatGpt;
use oauth_broker_tests::fake_server::FakeAuthServer;
use oauth_broker_tests::harness::TestEnv;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn hermes_key_cmd_reads_an_oauth_token_response_with_an_honest_expires_in() {
    let p = Broker::builder()
        .fake(jwt_fake(Duration::from_secs(30)))
        .logged_in();
    let before = p.current_token_id();
    let out = p.ctl(&["token", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "one JSON object on one line");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    // What Hermes Agent reads: `access_token` and `expires_in`.
    let token = json["access_token"].as_str().unwrap();
    p.assert_current_since(token, &before, "brokerctl token --json");
    let expires_in = json["expires_in"].as_u64().unwrap();
    let expires_at = p.status().access_token_expires_at.unwrap();
    let left = expires_at.saturating_sub(now_unix());
    assert!(
        expires_in <= 30 && expires_in + 2 >= left,
        "expires_in {expires_in} is what is left ({left}), not the issued lifetime"
    );
    assert_eq!(json["token_type"], "Bearer");
}

#[test]
fn claude_code_and_copilot_variables_get_the_current_token_through_exec() {
    let p = Broker::builder()
        .fake(jwt_fake(Duration::from_secs(30)))
        .logged_in();
    let before = p.current_token_id();
    let out = p.ctl(&[
        "exec",
        "--env",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "--env",
        "COPILOT_GITHUB_TOKEN",
        "--",
        "sh",
        "-c",
        "printf '%s\\n%s\\n' \"$CLAUDE_CODE_OAUTH_TOKEN\" \"$COPILOT_GITHUB_TOKEN\"",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text:?}");
    assert_eq!(lines[0], lines[1], "both variables carry the same token");
    p.assert_current_since(lines[0], &before, "the exec'd program's variables");
}

#[test]
fn openai_python_callable_api_key_sends_the_current_token_on_every_request() {
    let python = oauth_broker_tests::tools::ensure_openai_python();
    let env = TestEnv::new();
    let fake = FakeAuthServer::start(jwt_fake(Duration::from_secs(3)));
    let api = FakeChatGpt::start(fake.clone(), "acct-test", env.root());
    let p = Broker::builder()
        .fake_server(fake.clone())
        .test_env(env)
        .logged_in();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/recipes/openai_callable_api_key.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(brokerctl())
        .arg(api.api_base_url())
        .arg(api.ca_path())
        .arg("2")
        .env_clear()
        .envs(p.broker.client_env().iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    // The token the broker held before each request was made.
    let mut before = fingerprint(&p.grant().access_token);
    for n in 0..2u64 {
        if n > 0 {
            // Let the broker refresh before the next request.
            fake.wait_for_refresh_requests(n, Duration::from_secs(10))
                .expect("the broker refreshes");
            before = p.wait_token_not_in(&seen);
            writeln!(stdin).unwrap();
        }
        let line = lines.next().expect("a line from python").unwrap();
        assert_eq!(line, "ok");
        let request = api.requests().pop().expect("the request reached the API");
        assert_eq!(request.path, "/v1/models");
        assert_eq!(request.status, 200);
        let bearer = request.bearer.unwrap();
        // The broker's current token when the request was made (a refresh
        // landing before this check must not fail it).
        p.assert_current_since(&bearer, &before, &format!("request {n}"));
        seen.push(fingerprint(&bearer));
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_ne!(
        seen[0], seen[1],
        "the second request carried the refreshed token"
    );
}
