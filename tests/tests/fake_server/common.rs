//! Shared helpers: an HTTP client and token-endpoint calls.

use oauth_broker_tests::fake_server::FakeAuthServer;
use serde_json::Value;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// A form-encoded refresh request.
pub async fn refresh_form(
    c: &reqwest::Client,
    fake: &FakeAuthServer,
    refresh_token: &str,
) -> reqwest::Result<reqwest::Response> {
    c.post(fake.token_endpoint())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "test-client"),
        ])
        .send()
        .await
}

/// A JSON refresh request.
pub async fn refresh_json(
    c: &reqwest::Client,
    fake: &FakeAuthServer,
    refresh_token: &str,
) -> reqwest::Result<reqwest::Response> {
    c.post(fake.token_endpoint())
        .json(&serde_json::json!({
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": "test-client",
        }))
        .send()
        .await
}

/// Status and JSON body of a response.
pub async fn status_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let body = r.json::<Value>().await.expect("JSON body");
    (status, body)
}

/// Refreshes successfully and returns the new refresh token.
pub async fn rotate(c: &reqwest::Client, fake: &FakeAuthServer, rt: &str) -> String {
    let (status, body) = status_json(refresh_form(c, fake, rt).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body["refresh_token"].as_str().unwrap().to_owned()
}
