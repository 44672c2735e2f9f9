//! Browser logins (authorization code + PKCE S256, loopback redirect, RFC
//! 8252) run by the real brokerd against the fake authorization server, with
//! the test acting as the browser: the loopback redirect, a forged `state`, a
//! denial, the paste fallback (`brokerctl complete-login`), and the timeout.

use crate::common::{query_param, stderr, stdout, Broker};
use oauth_broker_client::ExposeSecret;
use oauth_broker_tests::fake_server::{AuthorizeBehavior, FakeConfig};
use std::time::Duration;

fn start_browser_login(setup: &Broker) -> (crate::common::LoginChild, String) {
    let mut child = setup.relogin_json(&["--browser"]);
    let event = child.expect_event("authorize_url");
    (child, event["url"].as_str().unwrap().to_string())
}

#[test]
fn browser_login_through_the_loopback_redirect() {
    let setup = Broker::logged_out(FakeConfig::default());
    let mut child = setup.relogin_json(&["--browser"]);
    let event = child.expect_event("authorize_url");
    let url = event["url"].as_str().unwrap();
    let redirect_uri = event["redirect_uri"].as_str().unwrap();

    // The listener is on 127.0.0.1 (an OS-chosen port for generic), and the
    // URL carries PKCE S256, a random state and prompt=consent.
    assert!(
        redirect_uri.starts_with("http://127.0.0.1:"),
        "{redirect_uri}"
    );
    assert!(redirect_uri.ends_with("/callback"), "{redirect_uri}");
    assert_eq!(
        query_param(url, "redirect_uri").as_deref(),
        Some(redirect_uri)
    );
    assert_eq!(query_param(url, "response_type").as_deref(), Some("code"));
    assert_eq!(
        query_param(url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(query_param(url, "code_challenge").unwrap().len(), 43);
    assert!(query_param(url, "state").unwrap().len() >= 32);
    assert_eq!(query_param(url, "prompt").as_deref(), Some("consent"));
    assert_eq!(
        query_param(url, "scope").as_deref(),
        Some("openid offline_access")
    );

    let browser = setup.fake.browser_login(url).unwrap();
    assert_eq!(browser.callback_status, 200, "{}", browser.callback_body);
    assert!(browser.callback_body.contains("Authorization received"));

    child.expect_event("logged_in");
    assert_eq!(child.finish().0, Some(0));
    assert_eq!(setup.fake.stats().code_exchanges, 1);
    let token = setup.client().token(Duration::ZERO).unwrap();
    assert!(setup.fake.is_access_token_valid(token.expose_secret()));
    setup.assert_no_token_in_logs();
}

#[test]
fn a_redirect_with_a_foreign_state_is_refused_and_the_login_keeps_waiting() {
    let setup = Broker::logged_in(FakeConfig {
        access_ttl: Duration::from_secs(300),
        ..FakeConfig::default()
    });
    let before = setup.client().token(Duration::ZERO).unwrap();
    setup
        .fake
        .set_authorize_behavior(AuthorizeBehavior::WrongState);
    let (mut child, url) = start_browser_login(&setup);

    // Anything on this machine can hit the loopback port: a forged redirect
    // gets a 400, its code is never exchanged, and the login goes on.
    let forged = setup.fake.browser_login(&url).unwrap();
    assert_eq!(forged.callback_status, 400);
    assert!(
        forged.callback_body.contains("state did not match"),
        "{}",
        forged.callback_body
    );
    assert_eq!(
        setup.fake.stats().code_exchanges,
        0,
        "the code was not used"
    );
    let after_forgery = setup.client().token(Duration::ZERO).unwrap();
    assert_eq!(
        after_forgery.token_id(),
        before.token_id(),
        "the old login is untouched"
    );

    // The user's own redirect still completes the same login.
    setup
        .fake
        .set_authorize_behavior(AuthorizeBehavior::Approve);
    let real = setup.fake.browser_login(&url).unwrap();
    assert_eq!(real.callback_status, 200, "{}", real.callback_body);
    child.expect_event("logged_in");
    assert_eq!(child.finish().0, Some(0));
    assert_eq!(
        setup.fake.stats().code_exchanges,
        1,
        "only the real code was exchanged"
    );
    let code_requests = setup
        .fake
        .token_requests()
        .iter()
        .filter(|r| r.grant_type.as_deref() == Some("authorization_code"))
        .count();
    assert_eq!(code_requests, 1, "the forged code was never even tried");
    let after = setup.client().token(Duration::ZERO).unwrap();
    assert_ne!(
        after.token_id(),
        before.token_id(),
        "the new login is served"
    );
    assert!(setup.fake.is_access_token_valid(after.expose_secret()));
}

#[test]
fn a_denial_in_the_browser_ends_the_login() {
    let setup = Broker::logged_out(FakeConfig::default());
    setup.fake.set_authorize_behavior(AuthorizeBehavior::Deny);
    let (mut child, url) = start_browser_login(&setup);
    let browser = setup.fake.browser_login(&url).unwrap();
    assert_eq!(browser.callback_status, 400);
    let error = child.expect_event("error");
    assert_eq!(error["code"], "relogin_required");
    assert!(error["message"].as_str().unwrap().contains("access_denied"));
    assert_eq!(child.finish().0, Some(2));
    assert_eq!(setup.status_json()["state"], "logged_out");
}

#[test]
fn a_pasted_redirect_completes_the_login() {
    let setup = Broker::logged_out(FakeConfig::default());
    let (mut child, url) = start_browser_login(&setup);
    // The browser is on another machine: it cannot reach the listener, the
    // user copies the address it ended on.
    let location = setup.fake.authorize(&url).unwrap();

    let garbage = setup.ctl(&["complete-login", "not a redirect"]);
    assert_eq!(garbage.status.code(), Some(1));
    assert!(
        stderr(&garbage).contains("paste the whole address"),
        "{}",
        stderr(&garbage)
    );

    let out = setup.broker.brokerctl_with_stdin(
        &crate::common::brokerctl(),
        &["complete-login", "-"],
        Some(format!("{location}\n").as_bytes()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("Logged in: account default"),
        "{}",
        stdout(&out)
    );
    child.expect_event("logged_in");
    assert_eq!(child.finish().0, Some(0));
    assert_eq!(setup.fake.stats().code_exchanges, 1);
}

#[test]
fn the_browser_login_times_out_and_complete_login_needs_a_waiting_login() {
    let setup = Broker::builder()
        .extra_toml("[login]\nbrowser_timeout_secs = 1\n")
        .start();
    let (mut child, _url) = start_browser_login(&setup);
    let error = child.expect_event("error");
    assert_eq!(error["code"], "relogin_required");
    assert!(error["message"].as_str().unwrap().contains("timed out"));
    assert_eq!(child.finish().0, Some(2));

    let out = setup.ctl(&[
        "complete-login",
        "http://127.0.0.1:1/callback?code=c&state=s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no login is waiting"),
        "{}",
        stderr(&out)
    );
}
