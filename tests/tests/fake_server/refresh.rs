//! Rotation, reuse detection, error shapes, encodings, exact counters.

use std::time::Duration;

use oauth_broker_tests::fake_server::{
    BodyEncoding, ErrorShape, FakeAuthServer, FakeConfig, TokenOutcome,
};

use super::common::{client, refresh_form, refresh_json, rotate, status_json};

#[tokio::test]
async fn refresh_rotates_single_use_tokens() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let c = client();
    let grant = fake.issue_grant();
    let rt0 = grant.refresh().to_owned();

    let (status, body) = status_json(refresh_form(&c, &fake, &rt0).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 4);
    assert_eq!(body["scope"], "openid offline_access");
    let rt1 = body["refresh_token"].as_str().unwrap();
    let at1 = body["access_token"].as_str().unwrap();
    assert_ne!(rt1, rt0);
    assert_ne!(at1, grant.access_token);
    assert!(fake.is_access_token_valid(at1));
    assert!(
        fake.is_access_token_valid(&grant.access_token),
        "old access tokens live until expiry"
    );
    assert!(!fake.is_refresh_token_current(&rt0));
    assert!(fake.is_refresh_token_current(rt1));
    assert_eq!(fake.current_refresh_token_of(&rt0).as_deref(), Some(rt1));
    assert_eq!(fake.family_refresh_count(&rt0), Some(1));
    assert_eq!(fake.current_refresh_token_count(), 1);

    let s = fake.stats();
    assert_eq!(s.refresh_requests, 1);
    assert_eq!(s.successful_refreshes, 1);
    assert_eq!(s.reuse_detections, 0);
    assert_eq!(s.grants_issued, 1);
    assert_eq!(s.form_bodies, 1);
    assert_eq!(s.token_requests_by_grant.get("refresh_token"), Some(&1));
}

#[tokio::test]
async fn reuse_revokes_the_whole_family_flat_shape() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let c = client();
    let other = fake.issue_grant();
    let rt0 = fake.issue_grant().refresh().to_owned();
    let rt1 = rotate(&c, &fake, &rt0).await;
    let (_, body) = status_json(refresh_form(&c, &fake, &rt1).await.unwrap()).await;
    let rt2 = body["refresh_token"].as_str().unwrap().to_owned();
    let at2 = body["access_token"].as_str().unwrap().to_owned();

    // Replaying rt0 is reuse: 400 invalid_grant, family revoked.
    let (status, body) = status_json(refresh_form(&c, &fake, &rt0).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"].is_string());

    // The newest refresh token and its access token are dead too.
    let (status, body) = status_json(refresh_form(&c, &fake, &rt2).await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(!fake.is_access_token_valid(&at2));
    assert!(fake.family_of(&rt0).unwrap().revoked);

    // Other families are untouched.
    assert!(fake.is_refresh_token_current(other.refresh()));
    assert_eq!(fake.current_refresh_token_count(), 1);

    let s = fake.stats();
    assert_eq!(s.reuse_detections, 1);
    assert_eq!(s.families_revoked, 1);
    assert_eq!(s.successful_refreshes, 2);
    assert_eq!(s.invalid_refresh_attempts, 1);
    assert_eq!(s.refresh_requests, 4);
}

#[tokio::test]
async fn nested_shape_uses_openai_codes_and_401() {
    let fake = FakeAuthServer::start(FakeConfig {
        error_shape: ErrorShape::Nested,
        ..FakeConfig::default()
    });
    let c = client();
    let rt0 = fake.issue_grant().refresh().to_owned();
    let rt1 = rotate(&c, &fake, &rt0).await;

    let (status, body) = status_json(refresh_json(&c, &fake, &rt0).await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "refresh_token_reused");
    assert!(body["error"]["message"].is_string());

    let (status, body) = status_json(refresh_json(&c, &fake, &rt1).await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "refresh_token_invalidated");

    let (status, body) =
        status_json(refresh_json(&c, &fake, "fake-rt-unknown").await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "refresh_token_invalidated");

    let rt = fake.issue_grant().refresh().to_owned();
    assert!(fake.expire_family_of(&rt));
    let (status, body) = status_json(refresh_json(&c, &fake, &rt).await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "refresh_token_expired");

    // The shape can be switched at run time.
    fake.set_error_shape(ErrorShape::Flat);
    let (status, body) = status_json(refresh_json(&c, &fake, &rt).await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(fake.stats().json_bodies, 5);
}

#[tokio::test]
async fn json_and_form_bodies_are_recorded() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let c = client();
    let rt0 = fake.issue_grant().refresh().to_owned();
    let (status, body) = status_json(refresh_json(&c, &fake, &rt0).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let rt1 = body["refresh_token"].as_str().unwrap();
    rotate(&c, &fake, rt1).await;
    let log = fake.token_requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].encoding, BodyEncoding::Json);
    assert_eq!(log[1].encoding, BodyEncoding::Form);
    assert_eq!(log[0].grant_type.as_deref(), Some("refresh_token"));
    assert_eq!(log[0].client_id.as_deref(), Some("test-client"));
    assert_eq!(log[0].outcome, TokenOutcome::Issued);
    let s = fake.stats();
    assert_eq!((s.json_bodies, s.form_bodies), (1, 1));

    // Other content types are rejected and counted.
    let r = c
        .post(fake.token_endpoint())
        .header("content-type", "text/plain")
        .body("grant_type=refresh_token")
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert_eq!(fake.stats().other_bodies, 1);
    assert_eq!(
        fake.stats().token_requests_by_grant.get("<unparsable>"),
        Some(&1)
    );
}

#[tokio::test]
async fn wrong_client_is_invalid_client_and_consumes_nothing() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let c = client();
    let rt0 = fake.issue_grant().refresh().to_owned();
    let r = c
        .post(fake.token_endpoint())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt0.as_str()),
            ("client_id", "someone-else"),
        ])
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(fake.is_refresh_token_current(&rt0));
    assert_eq!(fake.stats().invalid_client, 1);

    // Missing grant type / unsupported grant type.
    let r = c
        .post(fake.token_endpoint())
        .form(&[("client_id", "test-client"), ("grant_type", "password")])
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(r).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
}

#[tokio::test]
async fn reuse_grace_accepts_one_replay() {
    let fake = FakeAuthServer::start(FakeConfig {
        reuse_grace: Duration::from_secs(30),
        ..FakeConfig::default()
    });
    let c = client();
    let rt0 = fake.issue_grant().refresh().to_owned();
    let lost = rotate(&c, &fake, &rt0).await; // the answer "got lost"
    let rt1 = rotate(&c, &fake, &rt0).await; // replay inside the grace window
    assert_ne!(rt1, lost);
    assert!(fake.is_refresh_token_current(&rt1));
    assert!(!fake.is_refresh_token_current(&lost));
    // A second replay is reuse.
    let (status, _) = status_json(refresh_form(&c, &fake, &rt0).await.unwrap()).await;
    assert_eq!(status, 400);
    let s = fake.stats();
    assert_eq!(s.grace_replays, 1);
    assert_eq!(s.successful_refreshes, 2);
    assert_eq!(s.reuse_detections, 1);
}

#[tokio::test]
async fn non_rotating_server_keeps_the_refresh_token() {
    let fake = FakeAuthServer::start(FakeConfig {
        rotate_refresh_tokens: false,
        ..FakeConfig::default()
    });
    let c = client();
    let rt = fake.issue_grant().refresh().to_owned();
    for _ in 0..2 {
        let (status, body) = status_json(refresh_form(&c, &fake, &rt).await.unwrap()).await;
        assert_eq!(status, 200);
        assert!(body.get("refresh_token").is_none());
    }
    assert!(fake.is_refresh_token_current(&rt));
    assert_eq!(fake.family_refresh_count(&rt), Some(2));
}

#[tokio::test]
async fn concurrent_replays_of_one_token_count_exactly() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let c = client();
    let rt = fake.issue_grant().refresh().to_owned();
    let n = 20;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (c, fake, rt) = (c.clone(), fake.clone(), rt.clone());
            tokio::spawn(async move {
                refresh_form(&c, &fake, &rt)
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
    let s = fake.stats();
    assert_eq!(s.refresh_requests, n);
    assert_eq!(s.successful_refreshes, 1);
    assert_eq!(
        s.reuse_detections, 1,
        "the first replay revokes, the rest find a revoked family"
    );
    assert_eq!(s.invalid_refresh_attempts, n - 2);
    assert_eq!(fake.current_refresh_token_count(), 0);
}

#[tokio::test]
async fn jwt_tokens_carry_exp_sub_and_account_claim() {
    use base64::Engine as _;
    let fake = FakeAuthServer::start(FakeConfig {
        jwt_access_tokens: true,
        ..FakeConfig::default()
    });
    let grant = fake.issue_grant();
    let id_token = grant.id_token.clone().expect("id_token with JWT tokens");
    for jwt in [&grant.access_token, &id_token] {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let payload: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .unwrap(),
        )
        .unwrap();
        assert!(payload["exp"].as_u64().is_some());
        assert_eq!(payload["sub"], "user-test");
        assert_eq!(
            payload["https://api.openai.com/auth"]["chatgpt_account_id"],
            "acct-test"
        );
    }
    let c = client();
    let (_, body) = status_json(refresh_form(&c, &fake, grant.refresh()).await.unwrap()).await;
    assert!(body["id_token"].is_string());
    assert_eq!(body["access_token"].as_str().unwrap().split('.').count(), 3);
    // An import document carries everything.
    let import: serde_json::Value = serde_json::from_str(&grant.to_import_json()).unwrap();
    assert_eq!(import["refresh_token"], grant.refresh());
    assert_eq!(import["id_token"], id_token);
}

#[tokio::test]
async fn access_ttl_can_change_at_run_time() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    fake.set_access_ttl(Duration::from_secs(90));
    let grant = fake.issue_grant();
    assert_eq!(grant.expires_in, 90);
    // A zero TTL makes tokens that are expired at once: no sleeping needed.
    fake.set_access_ttl(Duration::ZERO);
    let c = client();
    let (_, body) = status_json(refresh_form(&c, &fake, grant.refresh()).await.unwrap()).await;
    assert_eq!(body["expires_in"], 0);
    assert!(!fake.is_access_token_valid(body["access_token"].as_str().unwrap()));
    assert!(fake.is_access_token_valid(&grant.access_token));
}

#[test]
fn revoke_all_and_families_from_plain_test() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let a = fake.issue_grant();
    let b = fake.issue_grant();
    assert_eq!(fake.families().len(), 2);
    assert!(fake.revoke_family_of(a.refresh()));
    assert!(!fake.revoke_family_of("nope"));
    assert!(!fake.is_access_token_valid(&a.access_token));
    assert!(fake.is_access_token_valid(&b.access_token));
    assert_eq!(fake.revoke_all(), 1);
    assert_eq!(fake.current_refresh_token_count(), 0);
    assert_eq!(fake.stats().families_revoked, 2);
}
