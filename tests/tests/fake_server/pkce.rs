//! Authorization code + PKCE S256, state and redirect_uri checks.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::mpsc;

use base64::Engine as _;
use oauth_broker_tests::fake_server::{AuthorizeBehavior, FakeAuthServer, FakeConfig};
use sha2::Digest as _;

use super::common::{client, status_json};

const VERIFIER: &str = "a-very-long-code-verifier-that-is-at-least-43-characters";
const REDIRECT: &str = "http://127.0.0.1:1455/auth/callback";

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

fn authorize_url(fake: &FakeAuthServer, redirect: &str, method: &str) -> String {
    let mut u = url::Url::parse(&fake.authorization_endpoint()).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "test-client")
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid offline_access")
        .append_pair("state", "st-123")
        .append_pair("prompt", "consent")
        .append_pair("code_challenge", &challenge(VERIFIER))
        .append_pair("code_challenge_method", method);
    u.to_string()
}

fn query(location: &str, key: &str) -> Option<String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn exchange(
    c: &reqwest::Client,
    fake: &FakeAuthServer,
    code: &str,
    redirect: &str,
    verifier: &str,
) -> (u16, serde_json::Value) {
    let r = c
        .post(fake.token_endpoint())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
            ("client_id", "test-client"),
        ])
        .send()
        .await
        .unwrap();
    status_json(r).await
}

#[tokio::test]
async fn authorize_over_http_then_exchange_with_the_verifier() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let c = client();
    let r = c
        .get(authorize_url(&fake, REDIRECT, "S256"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT));
    assert_eq!(query(&location, "state").as_deref(), Some("st-123"));
    let code = query(&location, "code").unwrap();

    let (status, body) = exchange(&c, &fake, &code, REDIRECT, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    assert!(fake.is_refresh_token_current(body["refresh_token"].as_str().unwrap()));
    assert_eq!(body["scope"], "openid offline_access");

    // Codes are single-use.
    let (status, body) = exchange(&c, &fake, &code, REDIRECT, VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let log = fake.authorize_requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["prompt"], "consent");
    assert_eq!(fake.stats().code_exchanges, 1);
}

#[tokio::test]
async fn wrong_verifier_or_redirect_uri_is_invalid_grant() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let c = client();
    let code = query(
        &fake
            .authorize(&authorize_url(&fake, REDIRECT, "S256"))
            .unwrap(),
        "code",
    )
    .unwrap();
    let wrong = "b".repeat(50);
    let (status, body) = exchange(&c, &fake, &code, REDIRECT, &wrong).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let code = query(
        &fake
            .authorize(&authorize_url(&fake, REDIRECT, "S256"))
            .unwrap(),
        "code",
    )
    .unwrap();
    let (status, body) = exchange(
        &c,
        &fake,
        &code,
        "http://127.0.0.1:1457/auth/callback",
        VERIFIER,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(fake.stats().grants_issued, 0);
}

#[test]
fn plain_method_deny_and_wrong_state() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let plain = fake
        .authorize(&authorize_url(&fake, REDIRECT, "plain"))
        .unwrap();
    assert_eq!(query(&plain, "error").as_deref(), Some("invalid_request"));

    fake.set_authorize_behavior(AuthorizeBehavior::Deny);
    let denied = fake
        .authorize(&authorize_url(&fake, REDIRECT, "S256"))
        .unwrap();
    assert_eq!(query(&denied, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&denied, "state").as_deref(), Some("st-123"));

    fake.set_authorize_behavior(AuthorizeBehavior::WrongState);
    let forged = fake
        .authorize(&authorize_url(&fake, REDIRECT, "S256"))
        .unwrap();
    assert!(query(&forged, "code").is_some());
    assert_ne!(query(&forged, "state").as_deref(), Some("st-123"));

    // Not this server's endpoint, or an unknown client: no redirect at all.
    assert!(fake
        .authorize("http://127.0.0.1:1/oauth/authorize?x=1")
        .is_err());
    let foreign_client = authorize_url(&fake, REDIRECT, "S256").replace("test-client", "other");
    assert!(fake.authorize(&foreign_client).is_err());
}

#[test]
fn browser_login_visits_the_loopback_callback() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let redirect = format!("http://{}/auth/callback", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 1024];
        while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "request ended early");
            raw.extend_from_slice(&buf[..n]);
        }
        let request = String::from_utf8_lossy(&raw).into_owned();
        tx.send(request.lines().next().unwrap_or_default().to_owned())
            .unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nlogged in")
            .unwrap();
    });
    let outcome = fake
        .browser_login(&authorize_url(&fake, &redirect, "S256"))
        .unwrap();
    server.join().unwrap();
    assert_eq!(outcome.callback_status, 200);
    assert_eq!(outcome.callback_body, "logged in");
    let request_line = rx.recv().unwrap();
    assert!(
        request_line.starts_with("GET /auth/callback?code="),
        "{request_line}"
    );
    assert!(request_line.contains("state=st-123"));
    assert!(outcome.redirect.starts_with(&redirect));
}
