//! Every fault kind, observed through a real HTTP client.

use std::time::{Duration, Instant};

use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig, Fault, TokenOutcome};

use super::common::{client, refresh_form, rotate, status_json};

fn setup() -> (FakeAuthServer, reqwest::Client, String) {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let rt = fake.issue_grant().refresh().to_owned();
    (fake, client(), rt)
}

#[tokio::test]
async fn status_faults_do_not_consume_the_token() {
    let (fake, c, rt) = setup();
    for code in [500, 502, 503] {
        fake.push_fault(Fault::Status(code));
        let r = refresh_form(&c, &fake, &rt).await.unwrap();
        assert_eq!(r.status().as_u16(), code);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "server_error");
    }
    fake.push_fault(Fault::Custom {
        status: 502,
        content_type: "text/plain".into(),
        body: "Bad Gateway".into(),
    });
    let r = refresh_form(&c, &fake, &rt).await.unwrap();
    assert_eq!(r.status().as_u16(), 502);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().await.unwrap(), "Bad Gateway");
    assert!(fake.is_refresh_token_current(&rt));
    rotate(&c, &fake, &rt).await;
    let s = fake.stats();
    assert_eq!(s.faults_injected, 4);
    assert_eq!(s.refresh_requests, 5);
    assert_eq!(s.successful_refreshes, 1);
    assert_eq!(
        fake.token_requests()[0].outcome,
        TokenOutcome::Fault(Fault::Status(500))
    );
}

#[tokio::test]
async fn one_shot_faults_are_fifo_and_persistent_ones_stay() {
    let (fake, c, rt) = setup();
    fake.push_fault(Fault::Status(500));
    fake.push_fault(Fault::Status(502));
    fake.set_persistent_fault(Some(Fault::Status(503)));
    assert_eq!(fake.pending_faults(), 2);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(
            refresh_form(&c, &fake, &rt)
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(seen, [500, 502, 503, 503]);
    fake.set_persistent_fault(None);
    rotate(&c, &fake, &rt).await;
}

#[tokio::test]
async fn too_many_requests_has_retry_after() {
    let (fake, c, rt) = setup();
    fake.push_fault(Fault::TooManyRequests {
        retry_after_secs: 7,
    });
    let r = refresh_form(&c, &fake, &rt).await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
}

#[tokio::test]
async fn html_truncated_json_missing_token_and_redirect() {
    let (fake, c, rt) = setup();

    fake.push_fault(Fault::Html { status: 200 });
    let r = refresh_form(&c, &fake, &rt).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("<html>"));

    fake.push_fault(Fault::Html { status: 503 });
    assert_eq!(
        refresh_form(&c, &fake, &rt)
            .await
            .unwrap()
            .status()
            .as_u16(),
        503
    );

    fake.push_fault(Fault::TruncatedJson);
    let r = refresh_form(&c, &fake, &rt).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.json::<serde_json::Value>().await.is_err());

    fake.push_fault(Fault::NoAccessToken);
    let (status, body) = status_json(refresh_form(&c, &fake, &rt).await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(body.get("access_token").is_none());

    fake.push_fault(Fault::Redirect);
    let r = refresh_form(&c, &fake, &rt).await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("{}/captive", fake.base_url()));
    // The redirect target is a captive-portal page.
    let page = c.get(&location).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("Wi-Fi"));

    assert!(fake.is_refresh_token_current(&rt));
    assert_eq!(fake.stats().successful_refreshes, 0);
}

#[tokio::test]
async fn delay_then_normal_processing() {
    let (fake, c, rt) = setup();
    fake.push_fault(Fault::Delay(Duration::from_millis(300)));
    let start = Instant::now();
    let (status, _) = status_json(refresh_form(&c, &fake, &rt).await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(fake.stats().successful_refreshes, 1);
}

#[tokio::test]
async fn drop_connection_is_a_transport_error_and_consumes_nothing() {
    let (fake, c, rt) = setup();
    // Warm up a keep-alive connection so the drop has to kill a pooled one.
    let warm = fake.issue_grant();
    rotate(&c, &fake, warm.refresh()).await;

    fake.push_fault(Fault::DropConnection);
    let err = refresh_form(&c, &fake, &rt)
        .await
        .expect_err("no HTTP response");
    assert!(!err.is_status(), "{err:?}");
    assert!(
        err.is_request() || err.is_connect() || err.is_body(),
        "{err:?}"
    );

    // Not consumed: the same token still works, on the same client.
    assert!(fake.is_refresh_token_current(&rt));
    rotate(&c, &fake, &rt).await;
    let s = fake.stats();
    assert_eq!(s.connections_dropped, 1);
    assert_eq!(s.refresh_requests, 3);
    assert_eq!(s.successful_refreshes, 2);
    assert_eq!(s.reuse_detections, 0);
}

#[tokio::test]
async fn rotate_then_drop_burns_the_token_without_telling_the_client() {
    let (fake, c, rt) = setup();
    rotate(&c, &fake, fake.issue_grant().refresh()).await; // keep-alive

    fake.push_fault(Fault::RotateThenDrop);
    let err = refresh_form(&c, &fake, &rt)
        .await
        .expect_err("no HTTP response");
    assert!(!err.is_status(), "{err:?}");
    assert!(!fake.is_refresh_token_current(&rt), "the server rotated");
    let successor = fake
        .current_refresh_token_of(&rt)
        .expect("a successor exists");
    assert_ne!(successor, rt);
    assert_eq!(
        fake.token_requests().last().unwrap().outcome,
        TokenOutcome::IssuedThenDropped
    );

    // The client retries with the only token it knows: reuse, family dead.
    let (status, body) = status_json(refresh_form(&c, &fake, &rt).await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(!fake.is_refresh_token_current(&successor));
    let s = fake.stats();
    assert_eq!(s.successful_refreshes, 2);
    assert_eq!(s.reuse_detections, 1);
    assert_eq!(s.connections_dropped, 1);
}

#[tokio::test]
async fn rotate_then_drop_with_grace_lets_a_prompt_retry_succeed() {
    let fake = FakeAuthServer::start(FakeConfig {
        reuse_grace: Duration::from_secs(30),
        ..FakeConfig::default()
    });
    let c = client();
    let rt = fake.issue_grant().refresh().to_owned();
    fake.push_fault(Fault::RotateThenDrop);
    assert!(refresh_form(&c, &fake, &rt).await.is_err());
    let new = rotate(&c, &fake, &rt).await;
    assert!(fake.is_refresh_token_current(&new));
    assert_eq!(fake.stats().grace_replays, 1);
    assert_eq!(fake.stats().reuse_detections, 0);
}

#[tokio::test]
async fn delayed_rotation_happens_even_if_the_client_gives_up() {
    let (fake, _, rt) = setup();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    fake.push_fault(Fault::DelayThenRotateThenDrop(Duration::from_millis(400)));
    let err = refresh_form(&impatient, &fake, &rt)
        .await
        .expect_err("timeout");
    assert!(err.is_timeout(), "{err:?}");
    // The server still processes the request it received.
    let s = fake
        .wait_for_refresh_requests_async(1, Duration::from_secs(5))
        .await
        .expect("the delayed request is handled");
    assert_eq!(s.successful_refreshes, 1);
    assert!(!fake.is_refresh_token_current(&rt));
}
