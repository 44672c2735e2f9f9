//! Both clients against the scripted fake broker: a `busy` broker is waited
//! out within the budget (honouring `retry_after`), a new connection carries
//! its first request in the hello's write, and both clients have the same
//! calls (`project_restore` included).

use crate::support::{simple, welcome_reply, FakeBroker, Step};
use oauth_broker_client::{Client, Error, ErrorCode, ExposeSecret};
use oauth_broker_proto::{ErrorFrame, ProjectionRestored, Request, Response, RestoreOutcome};
use std::time::{Duration, Instant};

fn busy(retry_after: Option<u64>) -> Option<Response> {
    let frame = ErrorFrame::new(ErrorCode::Busy, "the broker is at its connection limit");
    Some(Response::Error(match retry_after {
        Some(secs) => frame.with_retry_after(secs),
        None => frame,
    }))
}

/// Busy for the first `n` connections, then a welcome.
fn busy_first(n: usize, retry_after: Option<u64>) -> impl Fn(usize) -> Option<Response> {
    move |i| {
        if i < n {
            busy(retry_after)
        } else {
            welcome_reply()
        }
    }
}

#[test]
fn connect_waits_out_a_busy_broker() {
    let fake = FakeBroker::start_with_hellos(busy_first(2, None), simple("tok-after-busy"));
    let mut client = Client::builder().socket(&fake.path).connect().unwrap();
    assert_eq!(fake.connections(), 3);
    assert_eq!(
        client.token(Duration::ZERO).unwrap().expose_secret(),
        "tok-after-busy"
    );
}

#[test]
fn retry_after_is_honoured() {
    let fake = FakeBroker::start_with_hellos(busy_first(1, Some(1)), simple("tok"));
    let started = Instant::now();
    let (_client, token) = Client::builder()
        .socket(&fake.path)
        .connect_and_token(Duration::ZERO)
        .unwrap();
    assert_eq!(token.expose_secret(), "tok");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried too early"
    );
    assert_eq!(fake.connections(), 2);
}

#[test]
fn a_broker_that_stays_busy_is_reported_once_the_budget_is_spent() {
    let fake = FakeBroker::start_with_hellos(|_| busy(None), simple("never"));
    let started = Instant::now();
    let err = Client::builder()
        .socket(&fake.path)
        .busy_retry_budget(Duration::from_millis(300))
        .connect()
        .unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    let elapsed = started.elapsed();
    // 50 + 100 ms of waiting fit the budget, another 200 ms would not.
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(fake.connections(), 3);
}

#[test]
fn a_retry_after_beyond_the_budget_is_not_waited_for() {
    let fake = FakeBroker::start_with_hellos(|_| busy(Some(30)), simple("never"));
    let started = Instant::now();
    let err = Client::builder().socket(&fake.path).connect().unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(fake.connections(), 1);
}

#[test]
fn a_reconnect_after_a_busy_answer_resends_the_request() {
    // The first connection works, then the broker restarts and is busy once.
    let fake = FakeBroker::start_with_hellos(
        |i| if i == 1 { busy(None) } else { welcome_reply() },
        |request| match request {
            Request::Token { .. } => vec![
                Step::Send(crate::support::grant("tok")),
                // Drop the connection after each answer, like an evicted one.
                Step::Close,
            ],
            _ => vec![Step::Close],
        },
    );
    let mut client = Client::builder().socket(&fake.path).connect().unwrap();
    client.token(Duration::ZERO).unwrap();
    // The next call needs a new connection; the first attempt is busy.
    assert_eq!(client.token(Duration::ZERO).unwrap().expose_secret(), "tok");
    assert_eq!(fake.connections(), 3);
    assert_eq!(fake.requests(), ["token", "token"]);
}

#[test]
fn connect_and_token_sends_the_request_with_the_hello_on_one_connection() {
    let fake = FakeBroker::start(simple("tok-pipelined"));
    let (mut client, token) = Client::builder()
        .socket(&fake.path)
        .client_name("one-shot")
        .connect_and_token(Duration::from_secs(90))
        .unwrap();
    assert_eq!(token.expose_secret(), "tok-pipelined");
    assert_eq!(client.welcome().account, "test");
    {
        let log = fake.log.lock().unwrap();
        assert_eq!(log.hellos.len(), 1);
        assert_eq!(log.hellos[0].client, "one-shot");
        assert_eq!(log.min_valid, [90]);
    }
    // The connection stays usable.
    client.token(Duration::ZERO).unwrap();
    assert_eq!(fake.connections(), 1);
}

fn restore_answer() -> Response {
    Response::ProjectRestored(ProjectionRestored {
        kind: "codex".into(),
        path: "/home/u/.codex/auth.json".into(),
        outcome: RestoreOutcome::Removed,
    })
}

#[test]
fn project_restore_in_both_clients() {
    let fake = FakeBroker::start(|request| match request {
        Request::ProjectRestore { target } if target == "codex" => {
            vec![Step::Send(restore_answer())]
        }
        _ => vec![Step::Close],
    });
    let mut blocking = Client::builder().socket(&fake.path).connect().unwrap();
    assert_eq!(
        blocking.project_restore("codex").unwrap().outcome,
        RestoreOutcome::Removed
    );

    #[cfg(feature = "tokio")]
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut client = oauth_broker_client::tokio::Client::builder()
                .socket(&fake.path)
                .connect()
                .await
                .unwrap();
            let restored = client.project_restore("codex").await.unwrap();
            assert_eq!(restored.outcome, RestoreOutcome::Removed);
        });
    }
    let clients = if cfg!(feature = "tokio") { 2 } else { 1 };
    assert_eq!(fake.requests(), vec!["project_restore"; clients]);
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn the_async_client_waits_out_busy_and_pipelines_too() {
    use oauth_broker_client::tokio::Client;
    let fake = FakeBroker::start_with_hellos(busy_first(2, None), simple("tok-async"));
    let (mut client, token) = Client::builder()
        .socket(&fake.path)
        .connect_and_token(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(token.expose_secret(), "tok-async");
    assert_eq!(fake.connections(), 3);
    client.token(Duration::ZERO).await.unwrap();
    assert_eq!(fake.connections(), 3);

    let fake = FakeBroker::start_with_hellos(|_| busy(None), simple("never"));
    let err = Client::builder()
        .socket(&fake.path)
        .busy_retry_budget(Duration::ZERO)
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    assert_eq!(fake.connections(), 1);
}
