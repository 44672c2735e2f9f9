//! Credential projection end to end: the real brokerd keeps Codex CLI's and
//! Claude Code's credential files fed with its current access token and a
//! placeholder refresh token, backs up and restores the tool's own login,
//! refuses another account's file, and never lets a failing target disturb
//! token service.

use crate::common::*;
use oauth_broker_client::proto::ProjectionStatus;
use oauth_broker_tests::fake_server::IssuedTokens;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CODEX_ACCESS: &[&str] = &["tokens", "access_token"];
const CLAUDE_ACCESS: &[&str] = &["claudeAiOauth", "accessToken"];

fn codex_toml() -> &'static str {
    // Test tokens live seconds, far less than Codex's 5-minute window: these tests
    // are about following refreshes, so the margin is zero.
    "[[project]]\nkind = \"codex\"\npath = \"{root}/codex-home/auth.json\"\nrefresh_margin_secs = 0\n"
}

fn codex_path(p: &Broker) -> PathBuf {
    p.env.path("codex-home/auth.json")
}

/// A Codex `auth.json` of account `account` with its own refresh token.
fn codex_login(account: &str, refresh_token: &str, grant_id_token: &str) -> String {
    serde_json::json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {"id_token": grant_id_token, "access_token": "codex-own-access",
                   "refresh_token": refresh_token, "account_id": account},
        "last_refresh": "2026-01-01T00:00:00Z",
    })
    .to_string()
}

/// Starts brokerd with the Codex target of [`codex_toml`] and `ttl` tokens,
/// after placing the tool's own login there: `login(grant)` is the
/// `auth.json` text (see [`codex_login`]).
fn start_with_codex_login(
    ttl: Duration,
    login: impl FnOnce(&IssuedTokens) -> String + 'static,
) -> Broker {
    Broker::builder()
        .fake(jwt_fake(ttl))
        .extra_toml(codex_toml())
        .before_start(|env, grant| {
            let dir = env.path("codex-home");
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join("auth.json"), login(grant.unwrap())).unwrap();
        })
        .logged_in()
}

/// Waits (up to 10 s) until the target at `path` reports an error, and
/// returns its status; panics with `what` if it never does.
fn wait_target_error(p: &Broker, path: &Path, what: &str) -> ProjectionStatus {
    oauth_broker_tests::harness::Backoff::new(Duration::from_secs(10))
        .until(|| {
            let s = p.target_status(path);
            s.last_error.is_some().then_some(s)
        })
        .expect(what)
}

#[test]
fn codex_file_follows_every_refresh_and_never_holds_a_real_refresh_token() {
    let p = start_with_codex_login(Duration::from_secs(3), |grant| {
        let id_token = grant.id_token.clone().unwrap();
        codex_login("acct-test", "codex-own-refresh", &id_token)
    });
    let path = codex_path(&p);
    // Each round waits until the file holds the broker's current token, and a
    // new one: the broker has refreshed and the file followed. (A poller may
    // miss a write between two rounds on a loaded machine; what it cannot miss
    // is the file catching up with the broker's current token every time.)
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..3 {
        let token = p.wait_projected_after(&path, CODEX_ACCESS, seen.last().map(String::as_str));
        seen.push(token);
        let file = fs::read_to_string(&path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&file).unwrap();
        assert_eq!(json["auth_mode"], "chatgpt");
        assert_eq!(json["tokens"]["refresh_token"], PLACEHOLDER);
        assert_eq!(json["tokens"]["account_id"], "acct-test");
        assert!(json["tokens"]["id_token"].as_str().is_some());
        assert!(json["last_refresh"].as_str().unwrap().ends_with('Z'));
        for real in p.real_refresh_tokens() {
            assert!(
                !file.contains(&real),
                "a real refresh token reached the file"
            );
        }
        assert_eq!(mode(&path), 0o600);
    }
    // The file only ever moved forward: each token it held was issued after
    // the one before.
    let issued = p.fake.access_tokens_in_issue_order();
    let positions: Vec<Option<usize>> = seen
        .iter()
        .map(|t| issued.iter().position(|i| i == t))
        .collect();
    assert!(
        positions.iter().all(Option::is_some) && positions.windows(2).all(|w| w[0] < w[1]),
        "the file followed the refreshes in order: issue positions {positions:?}"
    );
    assert!(
        p.fake.stats().successful_refreshes >= 2,
        "the broker refreshed"
    );

    // The tool's own login was kept, once, and untouched by later writes.
    let backup = fs::read_to_string(p.env.path("codex-home/auth.json.oauth-broker-backup"))
        .expect("backup of the tool's own login");
    assert!(backup.contains("codex-own-refresh"));
    assert_eq!(
        mode(&p.env.path("codex-home/auth.json.oauth-broker-backup")),
        0o600
    );

    let status = p.target_status(&path);
    assert_eq!(status.kind, "codex");
    assert!(status.last_write_at.is_some());
    assert_eq!(status.last_error, None);
    let human = stdout(&p.ctl(&["status"]));
    assert!(
        human.contains(&format!("codex -> {}, written", path.display())),
        "{human}"
    );
    let stats = p.fake.stats();
    assert_eq!(stats.reuse_detections, 0);
    assert_eq!(stats.invalid_refresh_attempts, 0);
    p.assert_no_token_in_logs();
}

#[test]
fn claude_code_file_keeps_other_entries_and_is_rewritten_after_a_wipe() {
    let started = now_unix();
    let p = Broker::builder()
        .fake(jwt_fake(Duration::from_secs(30)))
        .extra_toml("[[project]]\nkind = \"claude-code\"\npath = \"{root}/claude/.credentials.json\"\n")
        .before_start(|env, _| {
            let dir = env.path("claude");
            fs::create_dir(&dir).unwrap();
            let existing = serde_json::json!({
                "claudeAiOauth": {"accessToken": "sk-ant-oat01-own", "refreshToken": "sk-ant-ort01-own",
                                  "expiresAt": 1, "scopes": ["user:inference"], "subscriptionType": "max"},
                "mcpOAuth": {"srv": {"accessToken": "mcp-token"}},
            });
            fs::write(dir.join(".credentials.json"), existing.to_string()).unwrap();
        })
        .logged_in();
    let path = p.env.path("claude/.credentials.json");
    p.wait_projected(&path, CLAUDE_ACCESS);
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let login = &json["claudeAiOauth"];
    assert_eq!(login["refreshToken"], PLACEHOLDER);
    assert_eq!(login["subscriptionType"], "max");
    assert_eq!(json["mcpOAuth"]["srv"]["accessToken"], "mcp-token");
    // The 30-second token is shown to Claude Code as living at least
    // LEAST_CLAIMED_LIFETIME (15 minutes) from when the broker got it, so that
    // Claude Code never finds it within its 5-minute refresh window.
    let expires_secs = login["expiresAt"].as_u64().unwrap() / 1000;
    let least = 15 * 60;
    assert!(expires_secs > p.status().access_token_expires_at.unwrap());
    assert!(
        (started + least..=now_unix() + least).contains(&expires_secs),
        "expiresAt is 15 minutes after the broker got the token, in milliseconds"
    );
    assert!(
        fs::read_to_string(p.env.path("claude/.credentials.json.oauth-broker-backup"))
            .unwrap()
            .contains("sk-ant-ort01-own")
    );

    // Claude Code wipes the file when its own refresh fails: rewritten at once
    // (within the broker's periodic check), with no token change needed.
    let wiped = serde_json::json!({"claudeAiOauth": {"accessToken": "", "refreshToken": "", "expiresAt": 0}});
    fs::write(&path, wiped.to_string()).unwrap();
    p.wait_projected(&path, CLAUDE_ACCESS);
    assert_eq!(p.fake.stats().refresh_requests, 0, "no refresh was needed");
    // The backup is still the tool's own login, not the wiped file.
    assert!(
        fs::read_to_string(p.env.path("claude/.credentials.json.oauth-broker-backup"))
            .unwrap()
            .contains("sk-ant-ort01-own")
    );
    p.assert_no_token_in_logs();
}

#[test]
fn another_accounts_file_is_left_alone_until_moved_aside() {
    let p = start_with_codex_login(Duration::from_secs(30), |_| {
        codex_login("acct-someone-else", "their-refresh", "not-a-jwt")
    });
    let path = codex_path(&p);
    let foreign = fs::read(&path).unwrap();
    let status = wait_target_error(&p, &path, "the refusal is reported");
    let why = status.last_error.unwrap();
    assert!(
        why.contains("acct-someone-else") && why.contains("acct-test"),
        "{why}"
    );
    assert!(why.contains("move the file aside"), "{why}");
    assert_eq!(
        fs::read(&path).unwrap(),
        foreign,
        "another account's file is untouched"
    );
    assert!(!p
        .env
        .path("codex-home/auth.json.oauth-broker-backup")
        .exists());

    // Token service is not affected.
    let out = p.ctl(&["token"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = p.ctl(&["status"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("acct-someone-else"),
        "{}",
        stdout(&out)
    );

    // The user follows the advice: the broker writes the file.
    fs::rename(&path, p.env.path("codex-home/auth.json.theirs")).unwrap();
    p.wait_projected(&path, CODEX_ACCESS);
    assert_eq!(p.target_status(&path).last_error, None);
}

#[test]
fn restore_gives_the_tools_own_login_back_and_stops_writing() {
    let p = start_with_codex_login(Duration::from_secs(3), |grant| {
        codex_login(
            "acct-test",
            "codex-own-refresh",
            grant.id_token.as_deref().unwrap(),
        )
    });
    let path = codex_path(&p);
    p.wait_projected(&path, CODEX_ACCESS);
    let original =
        fs::read(p.env.path("codex-home/auth.json.oauth-broker-backup")).expect("backup");
    assert!(String::from_utf8_lossy(&original).contains("codex-own-refresh"));

    let out = p.ctl(&["project", "--restore", "vim"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("codex"),
        "names the targets: {}",
        stderr(&out)
    );

    let out = p.ctl(&["project", "--restore", "codex"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("from its backup"), "{}", stdout(&out));
    assert_eq!(fs::read(&path).unwrap(), original);
    assert!(!p
        .env
        .path("codex-home/auth.json.oauth-broker-backup")
        .exists());

    // Later refreshes no longer touch the file.
    let before = p.fake.stats().refresh_requests;
    p.fake
        .wait_for_refresh_requests(before + 1, Duration::from_secs(10))
        .expect("the broker keeps refreshing");
    assert_eq!(fs::read(&path).unwrap(), original);
    let listed = stdout(&p.ctl(&["project"]));
    assert!(
        listed.contains("stopped by `brokerctl project --restore`"),
        "{listed}"
    );
    let out = p.ctl(&["token"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_failing_target_never_disturbs_token_service() {
    // The target's directory cannot exist: its parent is a regular file.
    let p = Broker::builder()
        .fake(jwt_fake(Duration::from_secs(2)))
        .extra_toml("[[project]]\nkind = \"codex\"\npath = \"{root}/blocker/codex/auth.json\"\n\n[[project]]\nkind = \"claude-code\"\npath = \"{root}/claude/.credentials.json\"\n")
        .before_start(|env, _| fs::write(env.path("blocker"), b"a file, not a directory").unwrap())
        .logged_in();
    let bad = p.env.path("blocker/codex/auth.json");
    let good = p.env.path("claude/.credentials.json");
    let status = wait_target_error(&p, &bad, "the failure is reported");
    let why = status.last_error.unwrap();
    assert!(why.contains(&bad.display().to_string()), "{why}");
    assert!(why.contains("Not a directory"), "{why}");
    assert_eq!(status.last_write_at, None);

    // Tokens keep flowing across refreshes, and the healthy target keeps up.
    let mut client = p.client();
    for n in 1..=2 {
        p.fake
            .wait_for_refresh_requests(n, Duration::from_secs(10))
            .expect("refreshes go on");
        token_unexpired_when_asked(&mut client, Duration::ZERO).expect("token service works");
        p.wait_projected(&good, CLAUDE_ACCESS);
    }
    let out = p.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(0), "healthy despite the target");
    assert!(stdout(&out).contains("failing: cannot"), "{}", stdout(&out));
}

#[test]
fn a_margin_the_tokens_cannot_meet_is_reported_not_turned_into_a_refresh_loop() {
    // 4 s tokens, 3 s margin: the manager honours min_valid only up to a fifth
    // of the lifetime, so no token can stay 3 s ahead for long.
    let p = Broker::builder().fake(jwt_fake(Duration::from_secs(4))).extra_toml("[[project]]\nkind = \"codex\"\npath = \"{root}/codex-home/auth.json\"\nrefresh_margin_secs = 3\n").logged_in();
    let path = codex_path(&p);
    let warning = oauth_broker_tests::harness::Backoff::new(Duration::from_secs(15))
        .until(|| p.target_status(&path).last_error)
        .expect("the short lifetime is reported");
    assert!(warning.contains("too short"), "{warning}");
    assert!(warning.contains("refresh_margin_secs"), "{warning}");
    // About one refresh per lifetime, not one per check.
    p.fake
        .wait_for_refresh_requests(2, Duration::from_secs(15))
        .expect("refreshes go on");
    let refreshes = p.fake.stats().refresh_requests;
    let out = p.ctl(&["token"]);
    assert!(out.status.success());
    assert!(refreshes <= 3, "no refresh loop: {refreshes} refreshes");
    p.wait_projected(&path, CODEX_ACCESS);
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
