//! Discovery, userinfo, revocation, the Copilot exchange and shutdown.

use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig, Fault};

use super::common::{client, refresh_form, rotate, status_json};

#[tokio::test]
async fn discovery_lists_endpoints_and_can_lie() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let c = client();
    let (status, doc) = status_json(c.get(fake.discovery_url()).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(doc["issuer"], fake.issuer());
    assert_eq!(doc["token_endpoint"], fake.token_endpoint());
    assert_eq!(doc["authorization_endpoint"], fake.authorization_endpoint());
    assert_eq!(
        doc["device_authorization_endpoint"],
        fake.device_authorization_endpoint()
    );
    assert_eq!(doc["revocation_endpoint"], fake.revocation_endpoint());
    assert_eq!(doc["code_challenge_methods_supported"][0], "S256");

    fake.set_discovery_token_endpoint(Some("https://evil.example.com/token".into()));
    let (_, doc) = status_json(c.get(fake.discovery_url()).send().await.unwrap()).await;
    assert_eq!(doc["token_endpoint"], "https://evil.example.com/token");
    assert_eq!(fake.stats().discovery_requests, 2);
}

#[tokio::test]
async fn userinfo_accepts_only_current_access_tokens() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let c = client();
    let grant = fake.issue_grant();
    let get = |token: String| {
        let c = c.clone();
        let url = fake.userinfo_endpoint();
        async move { c.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let (status, body) = status_json(get(grant.access_token.clone()).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["chatgpt_account_id"], "acct-test");
    let r = c
        .get(format!("{}/api/me", fake.base_url()))
        .bearer_auth(&grant.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let r = get("fake-at-bogus".into()).await;
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    let r = c.get(fake.userinfo_endpoint()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Reuse kills the family's access tokens.
    rotate(&c, &fake, grant.refresh()).await;
    refresh_form(&c, &fake, grant.refresh()).await.unwrap();
    assert_eq!(get(grant.access_token.clone()).await.status().as_u16(), 401);
    let s = fake.stats();
    assert_eq!((s.resource_ok, s.resource_rejected), (2, 3));
}

#[tokio::test]
async fn revocation_of_refresh_token_revokes_family() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let c = client();
    let a = fake.issue_grant();
    let b = fake.issue_grant();
    let revoke = |token: String| {
        let c = c.clone();
        let url = fake.revocation_endpoint();
        async move {
            c.post(url)
                .form(&[("token", token.as_str()), ("client_id", "test-client")])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(revoke(a.refresh().to_owned()).await, 200);
    assert!(!fake.is_refresh_token_current(a.refresh()));
    assert!(!fake.is_access_token_valid(&a.access_token));

    assert_eq!(revoke(b.access_token.clone()).await, 200);
    assert!(!fake.is_access_token_valid(&b.access_token));
    assert!(
        fake.is_refresh_token_current(b.refresh()),
        "access revocation keeps the family"
    );

    assert_eq!(revoke("unknown-token".into()).await, 200, "RFC 7009 §2.2");
    assert_eq!(
        fake.revoked_tokens(),
        vec![
            a.refresh().to_owned(),
            b.access_token.clone(),
            "unknown-token".to_owned()
        ]
    );
    let s = fake.stats();
    assert_eq!((s.revocation_requests, s.families_revoked), (3, 1));
}

#[tokio::test]
async fn copilot_exchange_needs_a_known_github_token_with_token_scheme() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let c = client();
    let gh = fake.issue_github_token();
    let exchange = |auth: String| {
        let c = c.clone();
        let url = fake.copilot_token_url();
        async move {
            c.get(url)
                .header("authorization", auth)
                .header("editor-version", "vscode/1.104.1")
                .send()
                .await
                .unwrap()
        }
    };
    let (status, body) = status_json(exchange(format!("token {gh}")).await).await;
    assert_eq!(status, 200, "{body}");
    let session = body["token"].as_str().unwrap().to_owned();
    assert!(session.starts_with("tid="));
    assert!(body["expires_at"].as_u64().unwrap() > 0);
    assert_eq!(body["refresh_in"], 6);
    assert_eq!(body["endpoints"]["api"], fake.copilot_api_base());
    assert!(fake.is_copilot_token_valid(&session));

    let r = c
        .get(format!("{}/models", fake.copilot_api_base()))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    assert_eq!(
        exchange(format!("Bearer {gh}")).await.status().as_u16(),
        401
    );
    assert_eq!(
        exchange("token ghu_unknown".into()).await.status().as_u16(),
        401
    );

    // OAuth access tokens of a live family are GitHub tokens too.
    let grant = fake.issue_grant();
    assert_eq!(
        exchange(format!("token {}", grant.access_token))
            .await
            .status()
            .as_u16(),
        200
    );

    fake.push_copilot_fault(Fault::Status(502));
    assert_eq!(exchange(format!("token {gh}")).await.status().as_u16(), 502);
    fake.push_copilot_fault(Fault::DropConnection);
    assert!(c
        .get(fake.copilot_token_url())
        .header("authorization", format!("token {gh}"))
        .send()
        .await
        .is_err());

    fake.revoke_all();
    assert_eq!(exchange(format!("token {gh}")).await.status().as_u16(), 401);
    assert!(!fake.is_copilot_token_valid(&session));
    let s = fake.stats();
    assert_eq!(s.copilot_exchange_requests, 7);
    assert_eq!(s.copilot_exchanges, 2);
}

#[test]
fn dropping_the_last_handle_stops_the_server() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let addr = fake.addr();
    let clone = fake.clone();
    drop(fake);
    assert!(
        std::net::TcpStream::connect(addr).is_ok(),
        "a clone keeps it alive"
    );
    drop(clone);
    assert!(std::net::TcpStream::connect(addr).is_err());
}
