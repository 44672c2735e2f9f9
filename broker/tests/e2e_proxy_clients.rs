//! Real clients through the header-injecting proxy: openai-python (pinned,
//! `tools::ensure_openai_python`) with `base_url` = the proxy and the proxy
//! key as its `api_key`, across several token lifetimes, plain and streamed.
//! The SDK only talks to its `base_url` (a loopback port), so it needs no
//! namespace; the upstream is the fake upstream on loopback. Codex CLI with a
//! custom provider, and Claude Code with `ANTHROPIC_BASE_URL`, run offline in
//! private namespaces (see each test).

use crate::common::{fake_with_ttl, fingerprint, stderr, stdout, Broker};
use oauth_broker_tests::fake_upstream::FakeUpstream;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// One plain and one streamed chat completion per line read on stdin;
/// prints what the model said.
const SCRIPT: &str = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key=sys.argv[2], max_retries=0)
for _ in sys.stdin:
    r = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    s = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}], stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in s if c.choices)
    print(r.choices[0].message.content + "|" + streamed, flush=True)
"#;

#[test]
fn openai_python_through_the_proxy_across_token_lifetimes() {
    let python = oauth_broker_tests::tools::ensure_openai_python();
    let fake = oauth_broker_tests::fake_server::FakeAuthServer::start(fake_with_ttl(
        Duration::from_secs(2),
    ));
    let check = fake.clone();
    let upstream = FakeUpstream::start(Arc::new(move |t| check.is_access_token_valid(t)));
    let broker = Broker::builder()
        .fake_server(fake.clone())
        .fast_refresh()
        .extra_toml(&format!(
            "[[proxy]]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n",
            upstream.origin()
        ))
        .logged_in();
    let out = broker.ctl(&["proxy", "key", "--name", "openai-python"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    let url = broker.status().proxies[0].listen.clone();
    let mut child = Command::new(python)
        .args(["-c", SCRIPT, &url, &key])
        .env_clear()
        .env("HOME", broker.env.root())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut bearers = std::collections::BTreeSet::new();
    for n in 0..3u64 {
        if n > 0 {
            // The next lifetime.
            fake.wait_for_refresh_requests(n, Duration::from_secs(20))
                .expect("the broker refreshes");
            let seen = bearers.clone();
            crate::common::eventually("a new token", Duration::from_secs(20), || {
                let id = broker.current_token_id();
                (!seen
                    .iter()
                    .any(|b: &String| crate::common::fingerprint(b) == id))
                .then_some(())
            });
        }
        writeln!(stdin).unwrap();
        let line = lines
            .next()
            .expect("a line from python")
            .unwrap_or_default();
        assert_eq!(line, "through the proxy|through the proxy");
        for req in upstream.requests().iter().rev().take(2) {
            assert_eq!(req.status, 200);
            assert_eq!(req.path, "/v1/chat/completions");
            bearers.insert(req.bearer.clone().unwrap());
        }
    }
    drop(stdin);
    let status = child.wait().unwrap();
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
    assert!(status.success(), "{err}");
    assert!(
        bearers.len() >= 3,
        "tokens of three lifetimes: {}",
        bearers.len()
    );
    for req in upstream.requests() {
        assert!(
            req.headers.iter().all(|(_, v)| !v.contains(&key)),
            "the key reached the upstream"
        );
    }
    let keys = broker.status().proxy_keys;
    assert_eq!(keys[0].requests, 6);
    broker.assert_no_token_in_logs();
}

/// The real Codex CLI (0.169.0, `tools::ensure_codex_cli`) with a custom model
/// provider whose `base_url` is the proxy and whose `env_key` holds the proxy
/// key; the proxy's upstream is the fake upstream, which answers Codex's
/// WebSocket attempt with 426 (as ChatGPT's backend does in the Codex tests)
/// and its SSE turn with "pong". Three runs over three token lifetimes, with
/// `supports_websockets = true` so that each run tries the WebSocket first.
#[test]
fn codex_cli_custom_provider_through_the_proxy() {
    use crate::e2e_codex_cli::{
        assert_every_refresh_was_the_brokers, broker_toml, chatgpt_auth_server, codex_toml, Codex,
        ACCOUNT,
    };
    let bin = oauth_broker_tests::tools::ensure_codex_cli();
    let env = oauth_broker_tests::harness::TestEnv::new();
    let fake = chatgpt_auth_server();
    let backend =
        oauth_broker_tests::fake_chatgpt::FakeChatGpt::start(fake.clone(), ACCOUNT, env.root());
    let check = fake.clone();
    let upstream = FakeUpstream::start(Arc::new(move |t| check.is_access_token_valid(t)));
    let table = format!(
        "[[proxy]]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n",
        upstream.origin()
    );
    let p = Broker::builder()
        .fake_server(fake.clone())
        .test_env(env)
        .config(move |fake| broker_toml(fake, &table))
        .logged_in();
    let out = p.ctl(&["proxy", "key", "--name", "codex"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    let url = p.status().proxies[0].listen.clone();
    let mut codex = Codex::new(bin, &p.env, &fake, &backend);
    codex
        .env
        .push(("OAUTH_BROKER_PROXY_KEY".to_string(), key.clone()));
    let provider = format!(
        r#"model_provider = "broker-proxy"

[model_providers.broker-proxy]
name = "ChatGPT via oauth-broker's proxy"
base_url = "{url}"
wire_api = "responses"
env_key = "OAUTH_BROKER_PROXY_KEY"
supports_websockets = true
"#
    );
    codex.write_config(&codex_toml(&backend, &provider));
    let workdir = p.env.path("work").display().to_string();
    let mut bearers = std::collections::BTreeSet::new();
    for n in 0..3u64 {
        if n > 0 {
            fake.wait_for_refresh_requests(n, Duration::from_secs(30))
                .expect("the broker refreshes");
        }
        let out = codex.run(&["exec", "--skip-git-repo-check", "-C", &workdir, "say pong"]);
        assert!(
            out.status.success() && stdout(&out).contains("pong"),
            "codex exec failed ({}):\nstdout:\n{}\nstderr:\n{}\nupstream saw: {:#?}",
            out.status,
            stdout(&out),
            stderr(&out),
            upstream.requests()
        );
        let requests = upstream.requests();
        let turn = requests
            .iter()
            .rev()
            .find(|r| r.method == "POST" && r.path.ends_with("/responses"))
            .expect("a turn through the proxy");
        assert_eq!(turn.status, 200, "{requests:#?}");
        bearers.insert(turn.bearer.clone().unwrap());
    }
    let requests = upstream.requests();
    for req in &requests {
        let bearer = req.bearer.as_deref().expect("every request got the token");
        assert!(
            p.issue_position(bearer).is_some(),
            "a token the broker held"
        );
        assert!(
            req.headers
                .iter()
                .any(|(n, v)| n == "chatgpt-account-id" && v == ACCOUNT),
            "the preset's ChatGPT-Account-ID: {req:?}"
        );
        assert!(
            req.headers.iter().all(|(_, v)| !v.contains(&key)),
            "the key reached the upstream"
        );
    }
    let websocket_attempts = requests.iter().filter(|r| r.status == 426).count();
    println!(
        "codex through the proxy: {} upstream requests, {} WebSocket attempts (426), {} distinct tokens",
        requests.len(),
        websocket_attempts,
        bearers.len()
    );
    assert!(
        bearers.len() >= 2,
        "runs in later lifetimes used newer tokens"
    );
    assert!(
        backend.requests().iter().all(|r| !r.is_turn()),
        "no turn bypassed the proxy"
    );
    assert_every_refresh_was_the_brokers(&p);
    p.assert_no_token_in_logs();
    assert!(!p.logs().contains(&key));
}

/// The real Codex CLI (0.169.0) holding one conversation through the proxy
/// over Codex's Responses-over-WebSocket protocol: the same custom provider
/// as above (`supports_websockets = true`), but the fake upstream accepts the
/// upgrade and speaks the protocol (`UpstreamOptions::responses_websocket`).
/// A `codex exec` and then `codex exec resume --last` turns, each in a later
/// token lifetime than the one before: every turn reaches the upstream over a
/// WebSocket whose upgrade carried the broker's current token (no request
/// falls back to SSE), the key never reaches the upstream, Codex never sees a
/// token and never calls the token endpoint, and the authorization server
/// sees one refresh per lifetime and no reuse.
#[test]
fn codex_cli_conversation_over_the_proxys_websocket_across_token_lifetimes() {
    use crate::e2e_codex_cli::{
        assert_every_refresh_was_the_brokers, broker_toml, chatgpt_auth_server, codex_toml, Codex,
        ACCOUNT,
    };
    use oauth_broker_tests::fake_upstream::UpstreamOptions;
    const TURNS: usize = 4;
    let bin = oauth_broker_tests::tools::ensure_codex_cli();
    let env = oauth_broker_tests::harness::TestEnv::new();
    let fake = chatgpt_auth_server();
    let backend =
        oauth_broker_tests::fake_chatgpt::FakeChatGpt::start(fake.clone(), ACCOUNT, env.root());
    let check = fake.clone();
    let upstream = FakeUpstream::start_with(
        Arc::new(move |t| check.is_access_token_valid(t)),
        UpstreamOptions {
            responses_websocket: true,
        },
    );
    let table = format!(
        "[[proxy]]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n",
        upstream.origin()
    );
    let p = Broker::builder()
        .fake_server(fake.clone())
        .test_env(env)
        .config(move |fake| broker_toml(fake, &table))
        .logged_in();
    let out = p.ctl(&["proxy", "key", "--name", "codex"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    let url = p.status().proxies[0].listen.clone();
    let mut codex = Codex::new(bin, &p.env, &fake, &backend);
    codex
        .env
        .push(("OAUTH_BROKER_PROXY_KEY".to_string(), key.clone()));
    codex.write_config(&codex_toml(&backend, &websocket_provider(&url)));
    let workdir = p.env.path("work").display().to_string();
    let mut turn_tokens: Vec<String> = Vec::new();
    let mut seen_requests = 0;
    let mut seen_messages = 0;
    let mut history = 0;
    for n in 0..TURNS {
        if n > 0 {
            // The next lifetime: the broker refreshed and serves a new token.
            fake.wait_for_refresh_requests(n as u64, Duration::from_secs(30))
                .expect("the broker refreshes");
            let previous: Vec<String> = turn_tokens.iter().map(|t| fingerprint(t)).collect();
            p.wait_token_not_in(&previous);
        }
        let since = p.current_token_id();
        let args: Vec<&str> = if n == 0 {
            vec!["exec", "--skip-git-repo-check", "-C", &workdir, "say pong"]
        } else {
            vec![
                "exec",
                "--skip-git-repo-check",
                "-C",
                &workdir,
                "resume",
                "--last",
                "say pong again",
            ]
        };
        let out = codex.run(&args);
        assert!(
            out.status.success() && stdout(&out).contains("pong"),
            "codex turn {n} failed ({}):\nstdout:\n{}\nstderr:\n{}\nupstream saw: {:#?}\n{:#?}",
            out.status,
            stdout(&out),
            stderr(&out),
            upstream.requests(),
            upstream.websocket_messages()
        );
        for token in fake.all_issued_tokens() {
            assert!(
                !stdout(&out).contains(&token) && !stderr(&out).contains(&token),
                "Codex printed a token"
            );
        }
        let requests = upstream.requests();
        let new = &requests[seen_requests..];
        seen_requests = requests.len();
        let upgrades: Vec<_> = new.iter().filter(|r| is_upgrade(r)).collect();
        assert_eq!(upgrades.len(), 1, "turn {n} opened one WebSocket: {new:#?}");
        for r in new {
            assert!(
                !(r.method == "POST" && r.path.ends_with("/responses")),
                "turn {n} fell back to SSE: {new:#?}"
            );
        }
        for r in &upgrades {
            assert_eq!(r.status, 101, "the upgrade was accepted: {r:#?}");
            assert!(r.path.ends_with("/responses"), "{r:#?}");
            p.assert_current_since(
                r.bearer.as_deref().expect("the upgrade got the token"),
                &since,
                "the upgrade",
            );
        }
        let messages = upstream.websocket_messages();
        let new = &messages[seen_messages..];
        seen_messages = messages.len();
        let turns: Vec<_> = new
            .iter()
            .filter(|m| m.kind == "response.create" && m.generate != Some(false))
            .collect();
        assert!(
            !turns.is_empty(),
            "turn {n} sent no response.create: {new:#?}"
        );
        for m in new {
            let upgrade = m.bearer.as_deref().expect("the upgrade got the token");
            p.assert_current_since(upgrade, &since, "the turn's WebSocket");
        }
        let input = turns.iter().map(|m| m.input_items).max().unwrap_or(0);
        assert!(
            input > history,
            "turn {n} carried the conversation so far ({input} input items after {history})"
        );
        history = input;
        turn_tokens.push(upgrades[0].bearer.clone().unwrap());
    }
    let mut distinct = turn_tokens.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), TURNS, "each turn in its own lifetime");
    let requests = upstream.requests();
    for req in &requests {
        assert!(
            req.headers.iter().all(|(_, v)| !v.contains(&key)),
            "the key reached the upstream"
        );
        assert!(
            req.headers
                .iter()
                .any(|(n, v)| n == "chatgpt-account-id" && v == ACCOUNT),
            "the preset's ChatGPT-Account-ID: {req:?}"
        );
    }
    assert!(
        requests.iter().all(|r| r.status != 426),
        "no WebSocket was refused"
    );
    assert!(
        backend.requests().iter().all(|r| !r.is_turn()),
        "no turn bypassed the proxy"
    );
    assert!(
        backend.requests().iter().all(|r| !r.is_auth_request()),
        "Codex called no token endpoint"
    );
    // Nothing Codex wrote holds a token; the key is all it ever had.
    let secrets = fake.all_issued_tokens();
    for entry in walk(&codex.home) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap_or_default()).into_owned();
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{} holds a token",
                entry.display()
            );
        }
    }
    assert_every_refresh_was_the_brokers(&p);
    let stats = fake.stats();
    assert_eq!(stats.invalid_refresh_attempts, 0);
    assert_eq!(stats.reuse_detections, 0);
    assert_eq!(
        fake.access_tokens_in_issue_order().len() as u64,
        stats.refresh_requests + 1,
        "one token per refresh: {stats:#?}"
    );
    let messages = upstream.websocket_messages();
    println!(
        "codex over the proxy's WebSocket: {TURNS} turns, {} upgrades, {} messages ({:?}), {} tokens, {} refreshes",
        requests.iter().filter(|r| is_upgrade(r)).count(),
        messages.len(),
        messages.iter().map(|m| (m.connection, m.kind.as_str(), m.generate, m.input_items)).collect::<Vec<_>>(),
        distinct.len(),
        stats.refresh_requests
    );
    p.assert_no_token_in_logs();
    assert!(!p.logs().contains(&key));
}

/// What happens when the token rotates under a WebSocket Codex keeps open.
/// A WebSocket presents its credential once, in the upgrade, so the proxy can
/// inject only the token current at the upgrade; this test shows what Codex
/// 0.169.0 does with the socket within one turn. The fake upstream answers the
/// turn's first request with a call of Codex's built-in `update_plan` tool and
/// holds that answer until the broker has refreshed and the upgrade's token
/// has ended; then Codex sends the tool's output in the turn's second request.
#[test]
fn codex_cli_websocket_kept_open_while_the_token_rotates() {
    use crate::e2e_codex_cli::{broker_toml, chatgpt_auth_server, codex_toml, Codex, ACCOUNT};
    use oauth_broker_tests::fake_upstream::{UpstreamOptions, TOOL_TURN};
    let bin = oauth_broker_tests::tools::ensure_codex_cli();
    let env = oauth_broker_tests::harness::TestEnv::new();
    let fake = chatgpt_auth_server();
    let backend =
        oauth_broker_tests::fake_chatgpt::FakeChatGpt::start(fake.clone(), ACCOUNT, env.root());
    let check = fake.clone();
    let upstream = FakeUpstream::start_with(
        Arc::new(move |t| check.is_access_token_valid(t)),
        UpstreamOptions {
            responses_websocket: true,
        },
    );
    upstream.hold_websocket_answers();
    let table = format!(
        "[[proxy]]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n",
        upstream.origin()
    );
    let p = Broker::builder()
        .fake_server(fake.clone())
        .test_env(env)
        .config(move |fake| broker_toml(fake, &table))
        .logged_in();
    let out = p.ctl(&["proxy", "key", "--name", "codex"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    let url = p.status().proxies[0].listen.clone();
    let mut codex = Codex::new(bin, &p.env, &fake, &backend);
    codex.env.push(("OAUTH_BROKER_PROXY_KEY".to_string(), key));
    codex.write_config(&codex_toml(&backend, &websocket_provider(&url)));
    let workdir = p.env.path("work").display().to_string();
    let prompt = format!("{TOOL_TURN}: plan, then say pong");
    let out = std::thread::scope(|s| {
        let run =
            s.spawn(|| codex.run(&["exec", "--skip-git-repo-check", "-C", &workdir, &prompt]));
        // The turn's first request, answered up to `response.created`.
        let first = upstream
            .wait_for_websocket_message(Duration::from_secs(60), |m| {
                m.kind == "response.create" && m.generate != Some(false)
            })
            .expect("the turn's first request");
        let old = first.bearer.clone().expect("the upgrade got the token");
        p.wait_token_not_in(&[fingerprint(&old)]);
        crate::common::eventually("the upgrade's token ends", Duration::from_secs(30), || {
            (!fake.is_access_token_valid(&old)).then_some(())
        });
        upstream.release_streams();
        (run.join().expect("codex thread"), first, old)
    });
    let (out, first, old) = out;
    let messages = upstream.websocket_messages();
    assert!(
        out.status.success() && stdout(&out).contains("pong"),
        "codex exec failed ({}):\nstdout:\n{}\nstderr:\n{}\nupstream saw: {:#?}\n{messages:#?}",
        out.status,
        stdout(&out),
        stderr(&out),
        upstream.requests(),
    );
    let turns: Vec<_> = messages
        .iter()
        .filter(|m| m.kind == "response.create" && m.generate != Some(false))
        .collect();
    println!(
        "codex, token rotated under its WebSocket: {} upgrades, messages {:?}",
        upstream.requests().iter().filter(|r| is_upgrade(r)).count(),
        messages
            .iter()
            .map(|m| (
                m.connection,
                m.kind.as_str(),
                m.generate,
                m.previous_response_id.as_deref(),
                m.bearer.as_deref() == Some(old.as_str())
            ))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        turns.len(),
        2,
        "the tool's output came in a second request: {messages:#?}"
    );
    let second = turns[1];
    assert_eq!(
        second.connection, first.connection,
        "on the same socket: {messages:#?}"
    );
    assert_eq!(second.bearer.as_deref(), Some(old.as_str()));
    assert!(!fake.is_access_token_valid(&old));
    assert!(
        upstream
            .requests()
            .iter()
            .all(|r| r.status != 426 && !(r.method == "POST" && r.path.ends_with("/responses"))),
        "no SSE fallback"
    );
    p.assert_no_token_in_logs();
}

/// Codex's custom provider: the proxy as `base_url`, the key in `env_key`,
/// WebSockets on.
fn websocket_provider(url: &str) -> String {
    format!(
        r#"model_provider = "broker-proxy"

[model_providers.broker-proxy]
name = "ChatGPT via oauth-broker's proxy"
base_url = "{url}"
wire_api = "responses"
env_key = "OAUTH_BROKER_PROXY_KEY"
supports_websockets = true
"#
    )
}

/// Whether the upstream saw a WebSocket upgrade.
fn is_upgrade(r: &oauth_broker_tests::fake_upstream::UpstreamRequest) -> bool {
    r.headers
        .iter()
        .any(|(n, v)| n == "upgrade" && v.eq_ignore_ascii_case("websocket"))
}

/// The real Claude Code (2.1.332, `tools::ensure_claude_code`) with
/// `ANTHROPIC_BASE_URL` = the proxy and the proxy key as its API credential,
/// in the fake Anthropic's offline namespace whose `127.0.0.1:443` is relayed
/// to the proxy (plain HTTP); the proxy's upstream is the fake Anthropic
/// Messages API, served plain on a loopback port. `claude -p` sessions back to
/// back until their requests have carried three tokens (three lifetimes),
/// alternating the key in `ANTHROPIC_AUTH_TOKEN` (sent as `Authorization:
/// Bearer`) and in `ANTHROPIC_API_KEY` (sent as `x-api-key`): every Messages
/// request reaches the upstream with the broker's current token and the OAuth
/// beta, never the key; Claude Code's files and output hold no token; no
/// request to a token endpoint.
#[test]
fn claude_code_through_the_proxy_across_token_lifetimes() {
    use crate::e2e_claude_code::Setup;
    use oauth_broker_tests::harness::run_with_timeout;
    const LIFETIME: Duration = Duration::from_secs(12);
    const TOKENS: usize = 3;
    let s = Setup::start_with(LIFETIME, String::new(), |anthropic| {
        format!(
            "[[proxy]]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n",
            anthropic.serve_plain_on_loopback()
        )
    });
    let out = s.p.ctl(&["proxy", "key", "--name", "claude-code"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    let listen = s.p.status().proxies[0].listen.clone();
    let proxy: std::net::SocketAddr = listen
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("the proxy listens on {listen}: {e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    let mut sessions = 0usize;
    let distinct = || {
        let mut used: Vec<String> = s
            .anthropic
            .messages()
            .into_iter()
            .filter_map(|m| m.bearer)
            .collect();
        used.sort();
        used.dedup();
        used
    };
    while distinct().len() < TOKENS {
        assert!(
            std::time::Instant::now() < deadline,
            "{sessions} sessions carried only {} tokens",
            distinct().len()
        );
        let variable = if sessions % 2 == 0 {
            "ANTHROPIC_AUTH_TOKEN"
        } else {
            "ANTHROPIC_API_KEY"
        };
        let mut cmd = s
            .anthropic
            .command_relayed(&s.claude, proxy)
            .expect("isolate claude");
        cmd.args(["-p", "say pong"])
            .env_clear()
            .envs(s.env.iter().map(|(k, v)| (k, v)))
            .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:443")
            .env(variable, &key)
            .current_dir(&s.workdir);
        let out = run_with_timeout(cmd, None, Duration::from_secs(90)).expect("claude runs");
        assert!(
            out.status.success() && stdout(&out).contains("pong"),
            "claude -p with {variable} failed ({}):\nstdout:\n{}\nstderr:\n{}\nthe fake saw: {:#?}",
            out.status,
            stdout(&out),
            stderr(&out),
            s.anthropic.requests()
        );
        for token in s.p.fake.all_issued_tokens() {
            assert!(
                !stdout(&out).contains(&token) && !stderr(&out).contains(&token),
                "Claude Code printed a token"
            );
        }
        sessions += 1;
    }
    let messages = s.anthropic.messages();
    assert!(!messages.is_empty());
    for m in &messages {
        assert_eq!(m.status, 200, "answered: {m:#?}");
        assert_eq!(m.api_key, None, "the proxy strips x-api-key: {m:#?}");
        s.assert_carried_current(m);
    }
    assert!(s.anthropic.token_requests().is_empty(), "a token request");
    let stats = s.p.fake.stats();
    assert_eq!(stats.refresh_requests, s.p.status().refresh_count);
    assert_eq!(stats.invalid_refresh_attempts, 0);
    assert_eq!(stats.reuse_detections, 0);
    // Nothing Claude Code wrote holds a token.
    let secrets = s.p.fake.all_issued_tokens();
    for dir in ["claude", "claude-home", "work", "claude-tmp"] {
        for entry in walk(&s.p.env.path(dir)) {
            let data = std::fs::read(&entry).unwrap_or_default();
            let text = String::from_utf8_lossy(&data);
            for secret in &secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{} holds a token",
                    entry.display()
                );
            }
        }
    }
    let keys = s.p.status().proxy_keys;
    assert!(keys[0].requests as usize >= messages.len(), "{keys:?}");
    println!(
        "claude code through the proxy: {sessions} sessions, {} Messages requests, {} tokens",
        messages.len(),
        distinct().len()
    );
    s.p.assert_no_token_in_logs();
    assert!(!s.p.logs().contains(&key));
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
