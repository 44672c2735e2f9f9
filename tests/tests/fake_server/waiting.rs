//! Waiting for the server to see requests, without sleeping.

use std::time::Duration;

use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig, Fault};

use super::common::{client, refresh_form};

#[test]
fn blocking_wait_from_a_plain_test() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let rt = fake.issue_grant().refresh().to_owned();
    let f2 = fake.clone();
    let worker = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let c = client();
                refresh_form(&c, &f2, &rt).await.unwrap().status().as_u16()
            })
    });
    let stats = fake
        .wait_for_refresh_requests(1, Duration::from_secs(10))
        .expect("one refresh");
    assert_eq!(
        stats.successful_refreshes, 1,
        "counters are final when the wait returns"
    );
    assert_eq!(worker.join().unwrap(), 200);
}

#[test]
fn blocking_wait_times_out_with_stats() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let err = fake
        .wait_for_refresh_requests(1, Duration::from_millis(20))
        .unwrap_err();
    assert_eq!(err.last.refresh_requests, 0);
    assert!(err.to_string().contains("refresh_requests"));
}

#[tokio::test]
async fn async_wait_sees_a_delayed_request_arrive_before_it_is_handled() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let rt = fake.issue_grant().refresh().to_owned();
    fake.push_fault(Fault::Delay(Duration::from_millis(300)));
    let f2 = fake.clone();
    let request =
        tokio::spawn(async move { refresh_form(&client(), &f2, &rt).await.unwrap().status() });
    let arrived = fake
        .wait_until_async(Duration::from_secs(10), |s| s.token_requests_received >= 1)
        .await
        .unwrap();
    assert_eq!(arrived.refresh_requests, 0, "still being delayed");
    let handled = fake
        .wait_for_refresh_requests_async(1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(handled.successful_refreshes, 1);
    assert_eq!(request.await.unwrap().as_u16(), 200);
}

#[tokio::test]
async fn async_wait_for_device_polls() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let f2 = fake.clone();
    tokio::spawn(async move {
        let c = client();
        for _ in 0..3 {
            let _ = c
                .post(f2.token_endpoint())
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", "x"),
                    ("client_id", "test-client"),
                ])
                .send()
                .await;
        }
    });
    let s = fake
        .wait_for_device_polls_async(3, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(s.device_polls, 3);
    assert_eq!(fake.device_polls().len(), 3);
}
