//! A client that finds the real brokerd at its connection limit, with every
//! connection serving a request (so no idle one can be evicted to make room),
//! waits out the `busy` answer (honouring `retry_after_secs`) and gets in once
//! a slot frees within its budget; with no budget it reports `busy` at once,
//! typed, with the broker's retry hint. (The retry rules themselves — budget,
//! backoff, reconnecting — are tested against a scripted broker in
//! client/tests/busy_and_pipelining.rs.)

use crate::common::Broker;
use oauth_broker_client::proto::{
    encode_frame, frame_len, Hello, LoginEvent, LoginMethod, Request, Response, FRAME_HEADER_LEN,
};
use oauth_broker_client::{Client, Error, ExposeSecret};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn read_frame(s: &mut UnixStream) -> Response {
    let mut header = [0u8; FRAME_HEADER_LEN];
    s.read_exact(&mut header).expect("frame header");
    let mut payload = vec![0u8; frame_len(header).expect("frame length")];
    s.read_exact(&mut payload).expect("frame payload");
    serde_json::from_slice(&payload).expect("a well-formed frame")
}

/// Long enough for the device login to finish under load (its poll interval
/// is the fake server's); the client gives up after it.
const BUDGET: Duration = Duration::from_secs(15);

#[test]
fn a_client_gets_in_when_a_slot_frees_within_its_budget() {
    // One slot, held by a device login that waits for the user: the only
    // connection is in the middle of a request, so nothing can make room.
    let rig = Broker::builder()
        .fast_refresh()
        .ttl(Duration::from_secs(600))
        .server_toml("max_connections = 1\nidle_timeout_secs = 300\n")
        .logged_in();
    let socket = rig.broker.socket_path().to_path_buf();
    let mut login = UnixStream::connect(&socket).expect("connect");
    login
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    login
        .write_all(&encode_frame(&Hello::new("login")).unwrap())
        .unwrap();
    assert!(matches!(read_frame(&mut login), Response::Welcome(_)));
    login
        .write_all(
            &encode_frame(&Request::Relogin {
                method: Some(LoginMethod::Device),
            })
            .unwrap(),
        )
        .unwrap();
    let user_code = match read_frame(&mut login) {
        Response::Login(LoginEvent::DeviceCode { user_code, .. }) => user_code,
        other => panic!("expected a device code, got {other:?}"),
    };

    // Full: without a budget the answer is `busy` at once, with the hint.
    let err = Client::builder()
        .socket(&socket)
        .busy_retry_budget(Duration::ZERO)
        .connect()
        .unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));

    // The login ends while another program waits: the waiting one gets in
    // (on its first attempt or after the one-second retry), within budget.
    let waiting = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let result = Client::builder()
                .socket(&socket)
                .busy_retry_budget(BUDGET)
                .connect_and_token(Duration::from_secs(60));
            (result, started.elapsed())
        })
    };
    assert!(rig.fake.approve_device(&user_code));
    loop {
        match read_frame(&mut login) {
            Response::Login(LoginEvent::LoggedIn { .. }) => break,
            Response::Login(LoginEvent::Error { message, .. }) => panic!("login failed: {message}"),
            Response::Login(_) => {}
            other => panic!("expected login events, got {other:?}"),
        }
    }
    let (result, elapsed) = waiting.join().unwrap();
    let (_client, token) = result.expect("the waiting client got in");
    assert!(!token.expose_secret().is_empty());
    assert!(elapsed < BUDGET, "{elapsed:?}");
}
