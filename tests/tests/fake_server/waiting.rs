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

/// A client that wrote a whole refresh request and died at once (as
/// `brokerd` under SIGKILL): its bytes may still be unread, or its connection
/// not yet accepted, when the test looks. `wait_until_settled` returns only
/// once the server is done with that connection, so its verdict is final: the
/// request was processed (the token rotated) or it never will be (the server
/// read EOF first and dropped it). A judge that merely compared
/// `token_requests` with `token_requests_received` could look before the
/// request even arrived.
#[test]
fn settled_means_a_dead_clients_connection_is_done_with() {
    use std::io::Write;
    let fake = FakeAuthServer::start(FakeConfig::default());
    let mut processed_count = 0;
    let mut old_judge_too_early = 0;
    for i in 0..50u64 {
        let before = fake.stats();
        let rt = fake.issue_grant().refresh().to_owned();
        let body = format!("grant_type=refresh_token&refresh_token={rt}&client_id=test-client");
        let mut stream = std::net::TcpStream::connect(fake.addr()).unwrap();
        write!(
            stream,
            "POST /oauth/token HTTP/1.1\r\nHost: {}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            fake.addr(),
            body.len()
        )
        .unwrap();
        drop(stream);
        // What the old judge (`token_requests == token_requests_received`)
        // would have seen now: an idle server that had not seen the request.
        let early = fake.stats();
        let old_judge_idle = early.token_requests == early.token_requests_received
            && early.token_requests_received == before.token_requests_received;
        let stats = fake
            .wait_until_settled(Duration::from_secs(10))
            .expect("the server settles");
        // The dead client's connection and the barrier's: both accepted and
        // finished, every time.
        assert_eq!(stats.connections_accepted, 2 * (i + 1), "{stats:#?}");
        assert_eq!(stats.connections_finished, stats.connections_accepted);
        assert_eq!(stats.token_requests, stats.token_requests_received);
        let processed = stats.token_requests_received - before.token_requests_received;
        assert!(processed <= 1, "{stats:#?}");
        assert_eq!(
            stats.successful_refreshes - before.successful_refreshes,
            processed
        );
        assert_eq!(
            fake.is_refresh_token_current(&rt),
            processed == 0,
            "the token's state disagrees with the counters"
        );
        processed_count += processed;
        if old_judge_idle && processed == 1 {
            old_judge_too_early += 1;
        }
    }
    println!(
        "fake server: {processed_count} of 50 dead clients' requests were processed, \
         {old_judge_too_early} of them after an idle-looking server would have been judged"
    );
}
