//! The blocking client against a scripted fake broker.

use crate::support::{assert_timeout, error, grant, simple, FakeBroker, Step};
use oauth_broker_client::{Client, Error, ErrorCode, ExposeSecret, LoginEvent, LoginMethod};
use oauth_broker_proto::{ErrorFrame, ImportTokens, Request, Response, SecretString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn client(fake: &FakeBroker) -> Client {
    Client::builder()
        .socket(&fake.path)
        .client_name("test-agent")
        .connect()
        .unwrap()
}

fn import_tokens() -> ImportTokens {
    ImportTokens {
        refresh_token: SecretString::from("rt-SECRET"),
        access_token: None,
        expires_at: None,
        id_token: None,
        scope: None,
        token_type: None,
        account_id: None,
    }
}

#[test]
fn token_round_trip_with_handshake() {
    let fake = FakeBroker::start(simple("tok-SECRET-1"));
    let mut client = client(&fake);
    assert_eq!(client.welcome().account, "test");
    assert_eq!(client.welcome().broker_version, "9.9.9-fake");
    assert_eq!(client.socket_path(), fake.path);

    let token = client.token(Duration::from_secs(90)).unwrap();
    assert_eq!(token.expose_secret(), "tok-SECRET-1");
    assert_eq!(token.token_type(), "Bearer");
    assert_eq!(
        token.token_id(),
        oauth_broker_proto::token_fingerprint(&SecretString::from("tok-SECRET-1"))
    );
    assert_eq!(token.scopes(), ["openid", "offline_access"]);
    assert_eq!(token.metadata()["account_id"], "acct-42");
    assert!(token.remaining() > Duration::from_secs(3500));
    assert!(!format!("{token:?} {client:?}").contains("SECRET"));

    let log = fake.log.lock().unwrap();
    assert_eq!(log.hellos[0].client, "test-agent");
    assert_eq!(log.hellos[0].protocol, oauth_broker_proto::PROTOCOL_VERSION);
    assert_eq!(log.min_valid, vec![90]);
}

#[test]
fn requests_share_one_connection() {
    let fake = FakeBroker::start(simple("tok"));
    let mut client = client(&fake);
    for _ in 0..5 {
        client.token(Duration::ZERO).unwrap();
    }
    client.logout().unwrap();
    assert_eq!(fake.connections(), 1);
    assert_eq!(fake.requests().len(), 6);
}

#[test]
fn unauthorized_reports_the_token_id() {
    let fake = FakeBroker::start(simple("tok-2"));
    let mut client = client(&fake);
    let first = client.token(Duration::ZERO).unwrap();
    let second = client.unauthorized(&first).unwrap();
    assert_eq!(second.expose_secret(), "tok-2");
    assert_eq!(
        fake.log.lock().unwrap().token_ids,
        vec![first.token_id().to_string()]
    );
}

#[test]
fn status_import_logout_and_complete_login() {
    let fake = FakeBroker::start(|request| match request {
        Request::Status => vec![Step::Send(Response::Status(Box::new(
            serde_json::from_value(serde_json::json!({
                "broker_version": "9", "pid": 7, "account": "test",
                "provider": "generic", "state": "valid", "refresh_count": 3
            }))
            .unwrap(),
        )))],
        Request::Import { tokens } => {
            let expires_at = if tokens.access_token.is_some() {
                1_700_000_000
            } else {
                0
            };
            vec![Step::Send(Response::Imported { expires_at })]
        }
        Request::Logout => vec![Step::Send(Response::LoggedOut { revoked: false })],
        Request::CompleteLogin { .. } => vec![Step::Send(Response::Login(LoginEvent::LoggedIn {
            account: "test".into(),
            expires_at: 5,
            account_id: None,
        }))],
        _ => vec![Step::Close],
    });
    let mut client = client(&fake);
    let status = client.status().unwrap();
    assert_eq!((status.pid, status.refresh_count), (7, 3));

    assert_eq!(client.import(import_tokens()).unwrap(), None);
    let mut with_access = import_tokens();
    with_access.access_token = Some(SecretString::from("at"));
    assert_eq!(
        client.import(with_access).unwrap(),
        Some(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    );
    assert!(!client.logout().unwrap());
    assert!(matches!(
        client
            .complete_login("http://127.0.0.1/cb?code=c&state=s")
            .unwrap(),
        LoginEvent::LoggedIn { .. }
    ));
}

fn device_code() -> Response {
    Response::Login(LoginEvent::DeviceCode {
        verification_uri: "https://example.com/device".into(),
        verification_uri_complete: None,
        user_code: "ABCD-EFGH".into(),
        expires_in: 900,
    })
}

#[test]
fn relogin_streams_events_beyond_the_request_timeout() {
    let fake = FakeBroker::start(|request| match request {
        Request::Relogin {
            method: Some(LoginMethod::Device),
        } => vec![
            Step::Send(device_code()),
            Step::Sleep(Duration::from_millis(600)),
            Step::Send(Response::Login(LoginEvent::LoggedIn {
                account: "test".into(),
                expires_at: 99,
                account_id: Some("acct".into()),
            })),
        ],
        _ => vec![Step::Send(Response::Status(Box::new(
            serde_json::from_value(serde_json::json!({
                "broker_version": "9", "pid": 7, "account": "test",
                "provider": "generic", "state": "valid"
            }))
            .unwrap(),
        )))],
    });
    let mut client = Client::builder()
        .socket(&fake.path)
        .request_timeout(Duration::from_millis(200))
        .connect()
        .unwrap();
    let mut seen = Vec::new();
    let done = client
        .relogin(Some(LoginMethod::Device), |event| seen.push(event.clone()))
        .unwrap();
    assert!(matches!(done, LoginEvent::LoggedIn { expires_at: 99, .. }));
    assert_eq!(seen.len(), 2);
    assert!(matches!(seen[0], LoginEvent::DeviceCode { .. }));
    // The connection is still good.
    client.status().unwrap();
    assert_eq!(fake.connections(), 1);
}

#[test]
fn relogin_error_event_becomes_a_typed_error() {
    let fake = FakeBroker::start(|_| {
        vec![
            Step::Send(device_code()),
            Step::Send(Response::Login(LoginEvent::Error {
                code: "busy".into(),
                message: "a login is already running".into(),
                hint: Some("finish it first".into()),
            })),
        ]
    });
    let mut client = client(&fake);
    let mut seen = Vec::new();
    let err = client
        .relogin(None, |event| seen.push(event.clone()))
        .unwrap_err();
    assert!(matches!(err, Error::Busy { .. }));
    assert_eq!(err.hint(), Some("finish it first"));
    assert_eq!(seen.len(), 2, "the final error event is shown too");
}

#[test]
fn relogin_not_implemented_is_bad_request() {
    let fake = FakeBroker::start(|_| {
        error(ErrorFrame::new(
            ErrorCode::BadRequest,
            "relogin is not implemented yet",
        ))
    });
    let mut client = client(&fake);
    let err = client.relogin(None, |_| panic!("no events")).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
    assert_eq!(err.to_string(), "relogin is not implemented yet");
}

#[test]
fn relogin_is_bounded_by_the_login_timeout() {
    let fake = FakeBroker::start(|_| {
        vec![
            Step::Send(device_code()),
            Step::Sleep(Duration::from_secs(5)),
        ]
    });
    let mut client = Client::builder()
        .socket(&fake.path)
        .login_timeout(Duration::from_millis(300))
        .connect()
        .unwrap();
    let started = Instant::now();
    let err = client.relogin(None, |_| {}).unwrap_err();
    assert_timeout(&err, "login");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn every_error_code_maps_to_its_variant_and_keeps_the_connection() {
    let codes = [
        ErrorCode::NotLoggedIn,
        ErrorCode::ReloginRequired,
        ErrorCode::UpstreamUnavailable,
        ErrorCode::PermissionDenied,
        ErrorCode::BadRequest,
        ErrorCode::UnsupportedProtocol,
        ErrorCode::Busy,
        ErrorCode::Internal,
    ];
    let next = Arc::new(AtomicUsize::new(0));
    let counter = next.clone();
    let fake = FakeBroker::start(move |_| {
        let code = codes[counter.fetch_add(1, Ordering::SeqCst)];
        error(
            ErrorFrame::new(code, format!("{code} happened"))
                .with_hint("do something")
                .with_reason("refresh_token_reused")
                .with_retry_after(17),
        )
    });
    let mut client = client(&fake);
    for code in codes {
        let err = client.token(Duration::ZERO).unwrap_err();
        assert_eq!(err.code(), Some(code));
        assert_eq!(err.hint(), Some("do something"));
        assert!(err.to_string().starts_with(&format!("{code} happened")));
        match code {
            ErrorCode::ReloginRequired => {
                assert!(err.is_relogin_required() && err.needs_login());
                assert_eq!(err.reason(), Some("refresh_token_reused"));
            }
            ErrorCode::NotLoggedIn => assert!(err.is_not_logged_in() && err.needs_login()),
            ErrorCode::UpstreamUnavailable | ErrorCode::Busy => {
                assert!(err.is_retryable());
                assert_eq!(err.retry_after(), Some(Duration::from_secs(17)));
            }
            _ => assert!(!err.is_retryable() && !err.needs_login()),
        }
    }
    assert_eq!(fake.connections(), 1);
}

#[test]
fn unsupported_protocol_at_handshake() {
    let fake = FakeBroker::start_with_hello(
        Some(Response::Error(
            ErrorFrame::new(
                ErrorCode::UnsupportedProtocol,
                "protocol 1 is not supported",
            )
            .with_hint("upgrade oauth-broker-client"),
        )),
        simple("x"),
    );
    let err = Client::builder().socket(&fake.path).connect().unwrap_err();
    assert!(matches!(err, Error::UnsupportedProtocol { .. }), "{err:?}");
}

#[test]
fn no_broker_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing.sock");
    let err = Client::builder().socket(&missing).connect().unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    assert!(err.to_string().contains("missing.sock"));
    assert!(err.hint().unwrap().contains("brokerd"));

    // A socket file left behind by a dead broker.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let err = Client::builder().socket(&stale).connect().unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");

    // Not a socket at all.
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = Client::builder().socket(&file).connect().unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
}

#[test]
fn slow_answer_times_out_and_the_next_request_uses_a_new_connection() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let fake = FakeBroker::start(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            vec![
                Step::Sleep(Duration::from_secs(2)),
                Step::Send(grant("late")),
            ]
        } else {
            vec![Step::Send(grant("fresh"))]
        }
    });
    let mut client = Client::builder()
        .socket(&fake.path)
        .request_timeout(Duration::from_millis(300))
        .connect()
        .unwrap();
    let started = Instant::now();
    let err = client.token(Duration::ZERO).unwrap_err();
    assert_timeout(&err, "request");
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_millis(1500));

    // Not the late answer to the abandoned request: a new connection.
    assert_eq!(
        client.token(Duration::ZERO).unwrap().expose_secret(),
        "fresh"
    );
    assert_eq!(fake.connections(), 2);
}

#[test]
fn silent_broker_times_out_the_handshake() {
    let fake = FakeBroker::start_with_hello(None, simple("x"));
    let started = Instant::now();
    let err = Client::builder()
        .socket(&fake.path)
        .connect_timeout(Duration::from_millis(300))
        .connect()
        .unwrap_err();
    assert_timeout(&err, "handshake");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

/// A broker that stopped accepting with a full listen backlog: connect would
/// block forever without the connect timeout.
#[cfg(target_os = "linux")]
#[test]
fn full_backlog_times_out_the_connect() {
    let full = crate::support::FullBacklog::new();
    let started = Instant::now();
    let err = Client::builder()
        .socket(&full.path)
        .connect_timeout(Duration::from_millis(300))
        .connect()
        .unwrap_err();
    assert_timeout(&err, "connect");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn idempotent_requests_survive_a_broker_restart() {
    let fake = FakeBroker::start(simple("before"));
    let path = fake.path.clone();
    let mut client = client(&fake);
    assert_eq!(
        client.token(Duration::ZERO).unwrap().expose_secret(),
        "before"
    );

    fake.shutdown();
    let restarted = FakeBroker::start_at(&path, crate::support::welcome_reply(), simple("after"));
    assert_eq!(
        client.token(Duration::ZERO).unwrap().expose_secret(),
        "after"
    );
    assert_eq!(restarted.connections(), 1);
    drop(fake);
}

#[test]
fn idempotent_request_is_resent_when_the_connection_dies_mid_request() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let fake = FakeBroker::start(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            vec![Step::Close]
        } else {
            vec![Step::Send(grant("second"))]
        }
    });
    let mut client = client(&fake);
    assert_eq!(
        client.token(Duration::ZERO).unwrap().expose_secret(),
        "second"
    );
    assert_eq!(fake.requests(), vec!["token", "token"]);
}

#[test]
fn delivered_import_is_not_resent() {
    let fake = FakeBroker::start(|_| vec![Step::Close]);
    let mut client = client(&fake);
    let err = client.import(import_tokens()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(!err.to_string().contains("SECRET"));
    assert_eq!(fake.requests(), vec!["import"]);
}

#[test]
fn undelivered_logout_is_sent_to_the_restarted_broker() {
    let fake = FakeBroker::start(simple("x"));
    let path = fake.path.clone();
    let mut client = client(&fake);
    fake.shutdown();
    let restarted = FakeBroker::start_at(&path, crate::support::welcome_reply(), simple("x"));
    assert!(client.logout().unwrap());
    assert_eq!(restarted.requests(), vec!["logout"]);
    drop(fake);
}

#[test]
fn fresh_connection_failure_is_not_retried() {
    let fake = FakeBroker::start(|_| vec![Step::Close]);
    let mut client = client(&fake);
    // First request: reused connection (from connect) dies, retry on a new one,
    // which dies too: give up with the error.
    let err = client.token(Duration::ZERO).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert_eq!(fake.requests().len(), 2);
    // The next request starts on a fresh connection: no retry.
    let err = client.status().unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert_eq!(fake.requests().len(), 3);
}

#[test]
fn garbage_from_the_broker_is_a_protocol_error() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let fake = FakeBroker::start(move |_| match counter.fetch_add(1, Ordering::SeqCst) {
        0 => {
            let payload = br#"{"type":"hologram","access_token":"tok-SECRET"}"#;
            let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(payload);
            vec![Step::Raw(frame)]
        }
        1 => vec![Step::Raw(u32::MAX.to_be_bytes().to_vec())],
        2 => vec![Step::Send(Response::LoggedOut { revoked: true })],
        _ => vec![Step::Send(grant("ok"))],
    });
    let mut client = client(&fake);
    for _ in 0..3 {
        let err = client.token(Duration::ZERO).unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
        assert!(!err.to_string().contains("SECRET"));
    }
    assert_eq!(client.token(Duration::ZERO).unwrap().expose_secret(), "ok");
    assert_eq!(
        fake.connections(),
        4,
        "each protocol error drops the connection"
    );
}

/// Whether `debug` shows `secret`, as text or as the list of its bytes (how a
/// `Vec<u8>` buffer prints).
fn debug_shows(debug: &str, secret: &str) -> bool {
    let as_numbers = format!("{:?}", secret.as_bytes()).replace(' ', "");
    let as_numbers = as_numbers.trim_matches(['[', ']']);
    debug.contains(secret)
        || debug
            .split_whitespace()
            .collect::<String>()
            .contains(as_numbers)
}

#[test]
fn debug_of_a_client_never_shows_the_last_answer() {
    let fake = FakeBroker::start(simple("tok-SECRET-debug"));
    let mut client = client(&fake);
    let token = client.token(Duration::ZERO).unwrap();
    assert_eq!(token.expose_secret(), "tok-SECRET-debug");
    for debug in [format!("{client:?}"), format!("{client:#?}")] {
        assert!(!debug_shows(&debug, "tok-SECRET-debug"), "{debug}");
        assert!(debug.contains("buffered_bytes"), "{debug}");
    }
    // The check itself would notice a printed buffer.
    assert!(debug_shows(
        &format!("{:?}", b"x tok-SECRET-debug y".to_vec()),
        "tok-SECRET-debug"
    ));
}
