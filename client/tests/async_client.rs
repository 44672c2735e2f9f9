//! The async client (feature `tokio`) against the scripted fake broker.
#![cfg(feature = "tokio")]

use crate::support::{assert_timeout, error, grant, simple, FakeBroker, Step};
use oauth_broker_client::tokio::Client;
use oauth_broker_client::{Error, ErrorCode, ExposeSecret, LoginEvent};
use oauth_broker_proto::{ErrorFrame, Request, Response};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn client(fake: &FakeBroker) -> Client {
    Client::builder()
        .socket(&fake.path)
        .client_name("async-agent")
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn token_status_logout() {
    let fake = FakeBroker::start(|request| match request {
        Request::Status => error(ErrorFrame::new(ErrorCode::Internal, "no status here")),
        other => simple("tok-SECRET-a")(other),
    });
    let mut client = client(&fake).await;
    assert_eq!(client.welcome().account, "test");
    let token = client.token(Duration::from_secs(30)).await.unwrap();
    assert_eq!(token.expose_secret(), "tok-SECRET-a");
    assert!(!format!("{token:?}").contains("SECRET"));
    let again = client.unauthorized(&token).await.unwrap();
    assert_eq!(again.token_id(), token.token_id());
    assert!(matches!(client.status().await, Err(Error::Internal { .. })));
    assert!(client.logout().await.unwrap());
    assert_eq!(fake.connections(), 1);
    let log = fake.log.lock().unwrap();
    assert_eq!(log.hellos[0].client, "async-agent");
    assert_eq!(log.min_valid, vec![30]);
}

#[tokio::test]
async fn relogin_streams_events() {
    let fake = FakeBroker::start(|_| {
        vec![
            Step::Send(Response::Login(LoginEvent::AuthorizeUrl {
                url: "https://example.com/authorize".into(),
                redirect_uri: None,
            })),
            Step::Sleep(Duration::from_millis(400)),
            Step::Send(Response::Login(LoginEvent::LoggedIn {
                account: "test".into(),
                expires_at: 1,
                account_id: None,
            })),
        ]
    });
    let mut client = Client::builder()
        .socket(&fake.path)
        .request_timeout(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    let mut seen = 0;
    let done = client.relogin(None, |_| seen += 1).await.unwrap();
    assert!(matches!(done, LoginEvent::LoggedIn { .. }));
    assert_eq!(seen, 2);
}

#[tokio::test]
async fn errors_map_to_variants() {
    let fake = FakeBroker::start(|_| {
        error(
            ErrorFrame::new(ErrorCode::ReloginRequired, "refresh token was reused")
                .with_reason("refresh_token_reused")
                .with_hint("run `brokerctl relogin`"),
        )
    });
    let mut client = client(&fake).await;
    let err = client.token(Duration::ZERO).await.unwrap_err();
    assert!(err.is_relogin_required());
    assert_eq!(err.reason(), Some("refresh_token_reused"));
    assert_eq!(
        err.to_string(),
        "refresh token was reused (reason: refresh_token_reused) (hint: run `brokerctl relogin`)"
    );
}

#[tokio::test]
async fn unreachable_and_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let err = Client::builder()
        .socket(dir.path().join("none.sock"))
        .connect()
        .await
        .unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");

    let silent = FakeBroker::start_with_hello(None, simple("x"));
    let started = Instant::now();
    let err = Client::builder()
        .socket(&silent.path)
        .connect_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap_err();
    assert_timeout(&err, "handshake");
    assert!(started.elapsed() < Duration::from_secs(1));

    let slow = FakeBroker::start(|_| {
        vec![
            Step::Sleep(Duration::from_secs(2)),
            Step::Send(grant("late")),
        ]
    });
    let mut client = Client::builder()
        .socket(&slow.path)
        .request_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let err = client.token(Duration::ZERO).await.unwrap_err();
    assert_timeout(&err, "request");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn full_backlog_times_out_the_connect() {
    let full = crate::support::FullBacklog::new();
    let started = Instant::now();
    let err = Client::builder()
        .socket(&full.path)
        .connect_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err();
    assert_timeout(&err, "connect");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn survives_a_broker_restart() {
    let fake = FakeBroker::start(simple("before"));
    let path = fake.path.clone();
    let mut client = client(&fake).await;
    assert_eq!(
        client.token(Duration::ZERO).await.unwrap().expose_secret(),
        "before"
    );
    fake.shutdown();
    let _restarted = FakeBroker::start_at(&path, crate::support::welcome_reply(), simple("after"));
    assert_eq!(
        client.token(Duration::ZERO).await.unwrap().expose_secret(),
        "after"
    );
    drop(fake);
}

#[tokio::test]
async fn a_cancelled_call_never_leaks_its_answer_into_the_next() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let fake = FakeBroker::start(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            vec![
                Step::Sleep(Duration::from_millis(300)),
                Step::Send(grant("stale")),
            ]
        } else {
            vec![Step::Send(grant("current"))]
        }
    });
    let mut client = client(&fake).await;
    let cancelled =
        tokio::time::timeout(Duration::from_millis(50), client.token(Duration::ZERO)).await;
    assert!(cancelled.is_err(), "the call should have been cancelled");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        client.token(Duration::ZERO).await.unwrap().expose_secret(),
        "current"
    );
    assert_eq!(fake.connections(), 2);
}

/// Agents spawn these futures on multi-threaded runtimes.
#[allow(dead_code)]
fn futures_are_send(mut client: Client, token: oauth_broker_client::AccessToken) {
    fn send<T: Send>(_: T) {}
    send(Client::connect());
    send(client.token(Duration::ZERO));
    send(client.unauthorized(&token));
    send(client.status());
    send(client.logout());
    send(client.relogin(None, |_| {}));
}

#[tokio::test]
async fn debug_of_a_client_never_shows_the_last_answer() {
    let fake = FakeBroker::start(simple("tok-SECRET-debug"));
    let mut client = client(&fake).await;
    let token = client.token(Duration::ZERO).await.unwrap();
    assert_eq!(token.expose_secret(), "tok-SECRET-debug");
    let as_numbers = format!("{:?}", b"tok-SECRET-debug".as_slice()).replace(' ', "");
    let as_numbers = as_numbers.trim_matches(['[', ']']);
    for debug in [format!("{client:?}"), format!("{client:#?}")] {
        assert!(!debug.contains("SECRET"), "{debug}");
        let squeezed: String = debug.split_whitespace().collect();
        assert!(!squeezed.contains(as_numbers), "{debug}");
    }
}
