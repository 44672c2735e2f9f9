//! Each provider preset, pointed at the fake authorization server through
//! config overrides (every preset endpoint can be overridden; loopback
//! endpoints are always allowed), goes from nothing to a working login with
//! one command: openai-codex (browser PKCE and OpenAI's own device scheme, JSON
//! refresh, account id in status, `import --codex`), github-copilot (device
//! flow, then the session-token exchange is the refresh, with a coalesced
//! re-exchange on 401), xai (discovery re-checked against the allow-list, PKCE
//! with `plan=generic` and the challenge echo, 403 as its own reason),
//! github (device flow, rotating user tokens, GitHub's HTTP-200 errors) and
//! anthropic (paste of `code#state`, JSON bodies).

use crate::common::{query_param, stderr, stdout, Broker, STEP};
use oauth_broker_client::ExposeSecret;
use oauth_broker_tests::fake_server::{ErrorShape, FakeAuthServer, FakeConfig, Fault};
use std::sync::{Arc, Barrier};
use std::time::Duration;

const FAST_RETRY: &str =
    "[refresh]\nbackoff_initial_ms = 200\nbackoff_max_secs = 2\nhttp_timeout_secs = 5\n";

// ----- openai-codex -----------------------------------------------------------

fn openai_fake() -> FakeConfig {
    FakeConfig {
        jwt_access_tokens: true,
        error_shape: ErrorShape::Nested,
        access_ttl: Duration::from_secs(300),
        ..FakeConfig::default()
    }
}

fn openai_config(fake: &FakeAuthServer) -> String {
    format!(
        "preset = \"openai-codex\"\nissuer = \"{issuer}\"\ntoken_endpoint = \"{token}\"\n\
         authorization_endpoint = \"{authorize}\"\nrevocation_endpoint = \"{revoke}\"\n\
         client_id = \"test-client\"\nredirect_port = 0\n{FAST_RETRY}",
        issuer = fake.issuer(),
        token = fake.token_endpoint(),
        authorize = fake.authorization_endpoint(),
        revoke = fake.revocation_endpoint(),
    )
}

#[test]
fn openai_codex_browser_login() {
    let setup = Broker::builder()
        .fake(openai_fake())
        .config(openai_config)
        .start();
    // The preset's default login is the browser one.
    let mut child = setup.relogin_json(&[]);
    let event = child.expect_event("authorize_url");
    let url = event["url"].as_str().unwrap();
    let redirect = event["redirect_uri"].as_str().unwrap();
    assert!(redirect.starts_with("http://localhost:"), "{redirect}");
    assert!(redirect.ends_with("/auth/callback"), "{redirect}");
    for (key, value) in [
        ("id_token_add_organizations", "true"),
        ("codex_cli_simplified_flow", "true"),
        ("originator", "codex_cli_rs"),
        ("scope", "openid profile email offline_access"),
    ] {
        assert_eq!(query_param(url, key).as_deref(), Some(value), "{key}");
    }
    assert_eq!(query_param(url, "prompt"), None);

    let browser = setup.fake.browser_login(url).unwrap();
    assert_eq!(browser.callback_status, 200);
    let done = child.expect_event("logged_in");
    assert_eq!(done["account_id"], "acct-test");
    assert_eq!(child.finish().0, Some(0));

    // The code exchange is a form POST; refreshes are JSON.
    assert_eq!(setup.fake.stats().form_bodies, 1);
    let mut client = setup.client();
    let token = client.token(Duration::ZERO).unwrap();
    let fresh = client.unauthorized(&token).unwrap();
    assert_ne!(fresh.token_id(), token.token_id());
    assert_eq!(setup.fake.stats().json_bodies, 1);
    assert_eq!(fresh.metadata()["account_id"], "acct-test");

    let out = setup.ctl(&["status"]);
    let text = stdout(&out);
    assert!(text.contains("(account id acct-test)"), "{text}");
    assert!(text.contains("openai-codex"), "{text}");
    assert!(text.contains(&setup.fake.token_endpoint()), "{text}");
}

#[test]
fn openai_codex_device_login_uses_openais_scheme() {
    let setup = Broker::builder()
        .fake(openai_fake())
        .config(openai_config)
        .start();
    let mut child = setup.relogin_json(&["--device"]);
    let event = child.expect_event("device_code");
    assert_eq!(
        event["verification_uri"],
        format!("{}/codex/device", setup.fake.base_url())
    );
    assert_eq!(event["expires_in"], 900);
    let user_code = setup.fake.last_openai_device_user_code().unwrap();
    assert_eq!(event["user_code"], user_code.as_str());

    // Pending polls are answered 403 and 404 in turn; both mean "not yet".
    setup
        .fake
        .wait_until(STEP, |s| s.openai_device_polls >= 2)
        .unwrap();
    assert!(setup.fake.approve_openai_device(&user_code));
    let done = child.expect_event("logged_in");
    assert_eq!(done["account_id"], "acct-test");
    assert_eq!(child.finish().0, Some(0));

    let exchange = setup
        .fake
        .token_request_params()
        .into_iter()
        .find(|p| p.get("grant_type").map(String::as_str) == Some("authorization_code"))
        .expect("a code exchange");
    assert_eq!(
        exchange["redirect_uri"],
        format!("{}/deviceauth/callback", setup.fake.base_url())
    );
    let polls = setup.fake.openai_device_polls();
    for pair in polls.windows(2) {
        assert!(pair[1].duration_since(pair[0]) >= Duration::from_millis(990));
    }
    assert_eq!(setup.status_json()["account_id"], "acct-test");
}

#[test]
fn openai_codex_device_login_denied() {
    let setup = Broker::builder()
        .fake(openai_fake())
        .config(openai_config)
        .start();
    let mut child = setup.relogin_json(&["--device"]);
    child.expect_event("device_code");
    let user_code = setup.fake.last_openai_device_user_code().unwrap();
    assert!(setup.fake.deny_openai_device(&user_code));
    let error = child.expect_event("error");
    assert_eq!(error["code"], "relogin_required");
    assert!(error["message"].as_str().unwrap().contains("access_denied"));
    assert_eq!(child.finish().0, Some(2));
}

#[test]
fn import_codex_reads_codex_clis_auth_json_and_says_what_to_do() {
    let setup = Broker::builder()
        .fake(openai_fake())
        .config(openai_config)
        .start();
    let grant = setup.fake.issue_grant();
    let codex_home = setup.env.path("codex-home");
    std::fs::create_dir_all(&codex_home).unwrap();
    let auth = serde_json::json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": grant.id_token,
            "access_token": grant.access_token,
            "refresh_token": grant.refresh(),
            "account_id": "acct-test",
        },
        "last_refresh": "2026-01-01T00:00:00Z",
    });
    std::fs::write(codex_home.join("auth.json"), auth.to_string()).unwrap();

    // The default path comes from $CODEX_HOME.
    let mut cmd = setup
        .broker
        .brokerctl_command(&crate::common::brokerctl(), &["import", "--codex"]);
    cmd.env("CODEX_HOME", &codex_home);
    let out = oauth_broker_tests::harness::run_with_timeout(cmd, None, STEP).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let warning = stderr(&out);
    assert!(
        warning.contains("Codex CLI still has the same refresh token"),
        "{warning}"
    );
    assert!(warning.contains("Do NOT run `codex logout`"), "{warning}");
    assert!(warning.contains(&codex_home.join("auth.json").display().to_string()));
    assert!(!warning.contains(grant.refresh()));
    assert!(stdout(&out).starts_with("imported;"));

    let status = setup.status_json();
    assert_eq!(status["state"], "valid");
    assert_eq!(status["account_id"], "acct-test");

    let api_key = setup.env.path("apikey.json");
    std::fs::write(
        &api_key,
        r#"{"auth_mode":"apikey","OPENAI_API_KEY":"sk-x"}"#,
    )
    .unwrap();
    let out = setup.ctl(&["import", "--codex", api_key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("API key"), "{}", stderr(&out));
}

// ----- github-copilot -----------------------------------------------------------

fn copilot_setup() -> Broker {
    let fake = FakeConfig {
        // GitHub: non-expiring user tokens without refresh tokens, polling
        // errors with HTTP 200.
        issue_refresh_tokens: false,
        device_error_status: 200,
        copilot_session_ttl: Duration::from_secs(30),
        // Re-exchange about every 2 s (half of a short refresh_in).
        copilot_refresh_in_secs: 4,
        ..FakeConfig::default()
    };
    Broker::builder()
        .fake(fake)
        .config(|fake| {
            format!(
                "preset = \"github-copilot\"\ndevice_authorization_endpoint = \"{device}\"\n\
             token_endpoint = \"{token}\"\nexchange_endpoint = \"{exchange}\"\n\
             client_id = \"test-client\"\n{FAST_RETRY}",
                device = fake.device_authorization_endpoint(),
                token = fake.token_endpoint(),
                exchange = fake.copilot_token_url(),
            )
        })
        .start()
}

fn copilot_login(setup: &Broker) {
    let mut child = setup.relogin_json(&[]);
    let event = child.expect_event("device_code");
    setup.fake.wait_for_device_polls(1, STEP).unwrap();
    assert!(setup
        .fake
        .approve_device(event["user_code"].as_str().unwrap()));
    let done = child.expect_event("logged_in");
    assert!(done["expires_at"].as_u64().unwrap() > 0);
    assert_eq!(child.finish().0, Some(0));
}

#[test]
fn github_copilot_device_login_then_session_token_exchange() {
    let setup = copilot_setup();
    copilot_login(&setup);
    assert_eq!(
        setup.fake.stats().copilot_exchanges,
        1,
        "exchanged at login"
    );

    let mut client = setup.client();
    let token = client.token(Duration::ZERO).unwrap();
    assert!(setup.fake.is_copilot_token_valid(token.expose_secret()));
    assert_eq!(token.metadata()["api_base"], setup.fake.copilot_api_base());
    let headers = &setup.fake.copilot_exchange_headers()[0];
    assert_eq!(headers["authorization-scheme"], "token");
    assert_eq!(headers["editor-version"], "vscode/1.104.1");
    assert_eq!(headers["user-agent"], "GitHubCopilotChat/0.26.7");

    // An API call got 401: eight clients report the same token at once; one
    // re-exchange serves them all.
    let before = setup.fake.stats().copilot_exchange_requests;
    let barrier = Arc::new(Barrier::new(8));
    let ids: Vec<String> = (0..8)
        .map(|_| {
            let mut client = setup.client();
            let token = token.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                client.unauthorized(&token).unwrap().token_id().to_string()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let after = setup.fake.stats().copilot_exchange_requests;
    assert!(ids
        .iter()
        .all(|id| *id == ids[0] && *id != token.token_id()));
    // A scheduled re-exchange may add one more meanwhile.
    assert!(
        (1..=2).contains(&(after - before)),
        "{} exchanges for eight 401 reports",
        after - before
    );

    // Re-exchanged before refresh_in without anyone asking.
    let now = setup.fake.stats().copilot_exchanges;
    setup
        .fake
        .wait_until(STEP, |s| s.copilot_exchanges > now)
        .unwrap();

    let text = stdout(&setup.ctl(&["status"]));
    assert!(text.contains("github-copilot"), "{text}");
    assert!(text.contains(&setup.fake.copilot_token_url()), "{text}");
    setup.assert_no_token_in_logs();
}

#[test]
fn github_copilot_revoked_token_needs_a_relogin() {
    let setup = copilot_setup();
    copilot_login(&setup);
    let mut client = setup.client();
    let token = client.token(Duration::ZERO).unwrap();
    setup.fake.revoke_all();
    let err = client.unauthorized(&token).unwrap_err();
    assert!(err.is_relogin_required(), "{err:?}");
    assert_eq!(err.reason(), Some("copilot_http_401"));
    // A new login replaces the dead one.
    copilot_login(&setup);
    let token = client.token(Duration::ZERO).unwrap();
    assert!(setup.fake.is_copilot_token_valid(token.expose_secret()));
}

/// The broker half of the IronClaw recipe (README "IronClaw"): one `exec`
/// hands a tool the current Copilot session token *and* the API base the
/// exchange returned, from the same answer, so the tool talks to the right
/// Copilot API with a token the broker exchanged, and never exchanges itself.
#[test]
fn github_copilot_exec_hands_a_tool_the_session_token_and_its_api_base() {
    let setup = copilot_setup();
    copilot_login(&setup);
    let exchanges = setup.fake.stats().copilot_exchange_requests;
    let out = setup.ctl(&[
        "exec",
        "--env",
        "LLM_API_KEY",
        "--env-metadata",
        "LLM_BASE_URL=api_base",
        "--",
        "sh",
        "-c",
        "printf '%s\\n%s\\n' \"$LLM_API_KEY\" \"$LLM_BASE_URL\"",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text:?}");
    assert!(
        setup.fake.is_copilot_token_valid(lines[0]),
        "LLM_API_KEY is a live Copilot session token"
    );
    assert_eq!(lines[1], setup.fake.copilot_api_base());
    // Only the broker exchanges: at most its own scheduled re-exchange ran.
    assert!(setup.fake.stats().copilot_exchange_requests <= exchanges + 1);

    // A key the token does not carry: the command is not run, and the error
    // names the key and the keys there are.
    let out = setup.ctl(&[
        "exec",
        "--env-metadata",
        "ACCOUNT=account_id",
        "--",
        "sh",
        "-c",
        "echo ran",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "the command did not run");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no metadata \"account_id\" for ACCOUNT (it has: api_base)"),
        "{err}"
    );
    assert!(!err.contains(lines[0]), "no token in the error");
    setup.assert_no_token_in_logs();
}

// ----- github ---------------------------------------------------------------------

#[test]
fn github_device_login_refreshes_rotating_user_tokens_and_a_refused_one_needs_a_relogin() {
    // A GitHub App with expiring user tokens: `ghu_…` access tokens, rotating
    // refresh tokens, every error answered with HTTP 200.
    let setup = Broker::builder()
        .fake(FakeConfig {
            device_error_status: 200,
            error_shape: ErrorShape::Github,
            access_token_prefix: "ghu_".to_string(),
            access_ttl: Duration::from_secs(4),
            ..FakeConfig::default()
        })
        .config(|fake| {
            format!(
                "preset = \"github\"\ndevice_authorization_endpoint = \"{device}\"\n\
                 token_endpoint = \"{token}\"\nclient_id = \"test-client\"\n{FAST_RETRY}",
                device = fake.device_authorization_endpoint(),
                token = fake.token_endpoint(),
            )
        })
        .start();
    copilot_login(&setup);
    let mut client = setup.client();
    let first = client.token(Duration::ZERO).unwrap();
    assert!(first.expose_secret().starts_with("ghu_"));
    assert!(setup.fake.is_access_token_valid(first.expose_secret()));
    // The broker refreshes on its own before the 4-second token ends.
    setup.wait_token_not_in(&[first.token_id().to_string()]);
    let second = client.token(Duration::ZERO).unwrap();
    assert!(setup.fake.stats().refresh_requests >= 1);
    assert_ne!(second.token_id(), first.token_id());
    assert!(setup.fake.is_access_token_valid(second.expose_secret()));

    // GitHub refuses the refresh token (HTTP 200, `bad_refresh_token`): a
    // relogin, not a transient failure retried forever.
    setup.fake.revoke_all();
    let err = client.unauthorized(&second).unwrap_err();
    assert!(err.is_relogin_required(), "{err:?}");
    assert_eq!(err.reason(), Some("bad_refresh_token"));
    let text = stdout(&setup.ctl(&["status"]));
    assert!(text.contains("github"), "{text}");
    setup.assert_no_token_in_logs();
}

// ----- xai ------------------------------------------------------------------------

fn xai_config(fake: &FakeAuthServer) -> String {
    // Only the issuer and the device endpoint are set; the token and
    // authorization endpoints come from discovery.
    format!(
        "preset = \"xai\"\nissuer = \"{issuer}\"\ndevice_authorization_endpoint = \"{device}\"\n\
         client_id = \"test-client\"\nredirect_port = 0\n{FAST_RETRY}",
        issuer = fake.issuer(),
        device = fake.device_authorization_endpoint(),
    )
}

#[test]
fn xai_device_login_through_discovery() {
    let setup = Broker::builder()
        .fake(FakeConfig::default())
        .config(xai_config)
        .start();
    let mut child = setup.relogin_json(&[]);
    let event = child.expect_event("device_code");
    assert!(setup
        .fake
        .approve_device(event["user_code"].as_str().unwrap()));
    child.expect_event("logged_in");
    assert_eq!(child.finish().0, Some(0));
    assert!(setup.fake.stats().discovery_requests >= 1);
    let token = setup.client().token(Duration::ZERO).unwrap();
    assert!(setup.fake.is_access_token_valid(token.expose_secret()));

    // Logout revokes at the revocation endpoint discovery lists.
    let out = setup.ctl(&["logout"]);
    assert!(
        stdout(&out).contains("server confirmed"),
        "{}",
        stdout(&out)
    );
    assert_eq!(setup.fake.stats().revocation_requests, 1);
}

#[test]
fn xai_browser_login_sends_plan_generic_and_echoes_the_challenge() {
    let setup = Broker::builder()
        .fake(FakeConfig::default())
        .config(xai_config)
        .start();
    let mut child = setup.relogin_json(&["--browser"]);
    let event = child.expect_event("authorize_url");
    let url = event["url"].as_str().unwrap();
    assert!(
        url.starts_with(&setup.fake.authorization_endpoint()),
        "{url}"
    );
    assert_eq!(query_param(url, "plan").as_deref(), Some("generic"));
    assert_eq!(query_param(url, "prompt").as_deref(), Some("consent"));
    let challenge = query_param(url, "code_challenge").unwrap();
    assert_eq!(setup.fake.browser_login(url).unwrap().callback_status, 200);
    child.expect_event("logged_in");
    assert_eq!(child.finish().0, Some(0));

    let exchange = setup
        .fake
        .token_request_params()
        .into_iter()
        .find(|p| p.get("grant_type").map(String::as_str) == Some("authorization_code"))
        .unwrap();
    assert_eq!(exchange["code_challenge"], challenge);
    assert_eq!(exchange["code_challenge_method"], "S256");
}

#[test]
fn xai_refuses_a_discovered_token_endpoint_on_a_foreign_host() {
    let setup = Broker::builder()
        .fake(FakeConfig::default())
        .config(xai_config)
        .start();
    setup
        .fake
        .set_discovery_token_endpoint(Some("https://evil.example.com/oauth/token".into()));

    let mut child = setup.relogin_json(&["--device"]);
    let error = child.expect_event("error");
    assert_eq!(error["code"], "bad_request");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("evil.example.com"), "{message}");
    assert!(message.contains("x.ai"), "{message}");
    assert_eq!(child.finish().0, Some(1));
    // Refused before any device code was even asked for.
    assert_eq!(setup.fake.stats().device_code_requests, 0);

    // Refreshes re-check it too: an imported login is never sent there.
    let grant = setup.fake.issue_grant();
    let out = setup.ctl_stdin(&["import", "-"], grant.to_import_json().as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let mut client = setup.client();
    let token = client.token(Duration::ZERO).unwrap();
    let err = client.unauthorized(&token).unwrap_err();
    assert!(!err.needs_login(), "{err:?}");
    let status = setup.status_json();
    assert_eq!(status["last_error"]["code"], "endpoint_refused");
    assert_eq!(setup.fake.stats().refresh_requests, 0);
}

#[test]
fn xai_403_is_no_api_access_not_a_relogin() {
    let setup = Broker::builder()
        .fake(FakeConfig::default())
        .config(xai_config)
        .start();
    let grant = setup.fake.issue_grant();
    let out = setup.ctl_stdin(&["import", "-"], grant.to_import_json().as_bytes());
    assert!(out.status.success());
    setup.fake.push_fault(Fault::Status(403));
    let mut client = setup.client();
    let token = client.token(Duration::ZERO).unwrap();
    let err = client.unauthorized(&token).unwrap_err();
    assert!(!err.is_relogin_required(), "{err:?}");

    let status = setup.status_json();
    assert_eq!(status["relogin_required"], false);
    assert_eq!(status["last_error"]["code"], "no_api_access");
    assert!(status["last_error"]["hint"]
        .as_str()
        .unwrap()
        .contains("API access"));
    assert!(setup.fake.is_refresh_token_current(grant.refresh()));
}

// ----- anthropic --------------------------------------------------------------------

#[test]
fn anthropic_login_by_pasting_code_and_state() {
    let setup = Broker::builder()
        .ttl(Duration::from_secs(300))
        .config(|fake| {
            format!(
                "preset = \"anthropic\"\nauthorization_endpoint = \"{authorize}\"\n\
                 token_endpoint = \"{token}\"\nclient_id = \"test-client\"\n{FAST_RETRY}",
                authorize = fake.authorization_endpoint(),
                token = fake.token_endpoint(),
            )
        })
        .start();
    let mut child = setup.relogin_json(&[]);
    let event = child.expect_event("authorize_url");
    // No listener: Anthropic shows the code on its own page.
    assert!(event.get("redirect_uri").is_none(), "{event}");
    let url = event["url"].as_str().unwrap();
    assert_eq!(query_param(url, "code").as_deref(), Some("true"));
    assert_eq!(
        query_param(url, "redirect_uri").as_deref(),
        Some("https://console.anthropic.com/oauth/code/callback")
    );
    assert_eq!(
        query_param(url, "scope").as_deref(),
        Some("org:create_api_key user:profile user:inference")
    );

    // The page shows `code#state`; the user pastes it.
    let location = setup.fake.authorize(url).unwrap();
    let pasted = format!(
        "{}#{}",
        query_param(&location, "code").unwrap(),
        query_param(&location, "state").unwrap()
    );
    let out = setup.ctl(&["complete-login", &pasted]);
    assert!(out.status.success(), "{}", stderr(&out));
    child.expect_event("logged_in");
    assert_eq!(child.finish().0, Some(0));

    // JSON code exchange carrying state, and never a claude-code User-Agent.
    let exchange = setup
        .fake
        .token_request_params()
        .into_iter()
        .find(|p| p.get("grant_type").map(String::as_str) == Some("authorization_code"))
        .unwrap();
    assert_eq!(exchange["state"], query_param(&location, "state").unwrap());
    assert_eq!(setup.fake.stats().json_bodies, 1);
    let mut client = setup.client();
    let token = client.token(Duration::ZERO).unwrap();
    client.unauthorized(&token).unwrap();
    assert_eq!(setup.fake.stats().json_bodies, 2, "refresh is JSON too");
    for params in setup.fake.token_request_params() {
        let ua = &params["header:user-agent"];
        assert!(ua.starts_with("oauth-broker/"), "{ua}");
    }
    let text = stdout(&setup.ctl(&["status"]));
    assert!(text.contains("anthropic"), "{text}");
}
