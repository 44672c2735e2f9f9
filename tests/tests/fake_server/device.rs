//! Device authorization grant (RFC 8628) end to end over HTTP.

use std::time::Duration;

use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig};
use serde_json::Value;

use super::common::{client, status_json};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn start(c: &reqwest::Client, fake: &FakeAuthServer) -> Value {
    let r = c
        .post(fake.device_authorization_endpoint())
        .form(&[
            ("client_id", "test-client"),
            ("scope", "openid offline_access"),
        ])
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(r).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn poll(c: &reqwest::Client, fake: &FakeAuthServer, device_code: &str) -> (u16, Value) {
    let r = c
        .post(fake.token_endpoint())
        .form(&[
            ("grant_type", GRANT),
            ("device_code", device_code),
            ("client_id", "test-client"),
        ])
        .send()
        .await
        .unwrap();
    status_json(r).await
}

#[tokio::test]
async fn pending_slow_down_approve_and_spent() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let c = client();
    let d = start(&c, &fake).await;
    let device_code = d["device_code"].as_str().unwrap();
    let user_code = d["user_code"].as_str().unwrap();
    assert_eq!(d["verification_uri"], format!("{}/device", fake.base_url()));
    assert!(d["verification_uri_complete"]
        .as_str()
        .unwrap()
        .ends_with(&format!("user_code={user_code}")));
    assert_eq!(d["interval"], 1);
    assert_eq!(d["expires_in"], 600);
    assert_eq!(fake.last_device_code().unwrap().user_code, user_code);

    let (status, body) = poll(&c, &fake, device_code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("authorization_pending"))
    );

    fake.set_device_slow_down(2);
    for _ in 0..2 {
        let (status, body) = poll(&c, &fake, device_code).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("slow_down")));
    }

    assert!(fake.approve_device(user_code));
    let (status, body) = poll(&c, &fake, device_code).await;
    assert_eq!(status, 200, "{body}");
    assert!(fake.is_refresh_token_current(body["refresh_token"].as_str().unwrap()));
    assert_eq!(body["scope"], "openid offline_access");

    let (status, body) = poll(&c, &fake, device_code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let polls = fake.device_polls();
    assert_eq!(polls.len(), 5);
    assert!(polls.windows(2).all(|w| w[0] <= w[1]));
    let s = fake.stats();
    assert_eq!(s.device_polls, 5);
    assert_eq!(s.device_code_requests, 1);
    assert_eq!(s.grants_issued, 1);
    assert_eq!(s.token_requests_by_grant.get(GRANT), Some(&5));
}

#[tokio::test]
async fn denied_and_expired_are_final_answers() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let c = client();
    let a = start(&c, &fake).await;
    assert!(fake.deny_device(a["user_code"].as_str().unwrap()));
    let (status, body) = poll(&c, &fake, a["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("access_denied"))
    );

    let b = start(&c, &fake).await;
    assert!(fake.expire_device(b["user_code"].as_str().unwrap()));
    let (status, body) = poll(&c, &fake, b["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("expired_token"))
    );
    assert!(!fake.approve_device("NOPE-NOPE"));
}

#[tokio::test]
async fn short_device_code_ttl_expires_by_itself() {
    let fake = FakeAuthServer::start(FakeConfig {
        device_code_ttl: Duration::ZERO,
        ..FakeConfig::default()
    });
    let c = client();
    let d = start(&c, &fake).await;
    let (status, body) = poll(&c, &fake, d["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("expired_token"))
    );
}

#[tokio::test]
async fn github_style_answers_errors_with_200() {
    let fake = FakeAuthServer::start(FakeConfig {
        device_error_status: 200,
        issue_refresh_tokens: false,
        ..FakeConfig::default()
    });
    let c = client();
    let d = start(&c, &fake).await;
    let (status, body) = poll(&c, &fake, d["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (200, Some("authorization_pending"))
    );
    fake.approve_device(d["user_code"].as_str().unwrap());
    let (status, body) = poll(&c, &fake, d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert!(body.get("refresh_token").is_none());
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn unknown_client_cannot_start_a_device_flow() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let r = client()
        .post(fake.device_authorization_endpoint())
        .form(&[("client_id", "other")])
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}
