//! A client that finds the real brokerd at its connection limit waits out the
//! `busy` answer (honouring `retry_after_secs`) and gets in once a slot frees
//! within its budget; with no budget it reports `busy` at once, typed, with
//! the broker's retry hint. (The retry rules themselves — budget, backoff,
//! reconnecting — are tested against a scripted broker in
//! client/tests/busy_and_pipelining.rs.)

use crate::common::Broker;
use oauth_broker_client::{Client, Error, ExposeSecret};
use std::time::{Duration, Instant};

const LIMIT: usize = 4;

#[test]
fn a_client_gets_in_when_a_slot_frees_within_its_budget() {
    let rig = Broker::builder()
        .fast_refresh()
        .ttl(Duration::from_secs(600))
        .server_toml(&format!(
            "max_connections = {LIMIT}\nidle_timeout_secs = 300\n"
        ))
        .logged_in();
    let socket = rig.broker.socket_path().to_path_buf();
    let mut held: Vec<Client> = (0..LIMIT)
        .map(|_| Client::builder().socket(&socket).connect().unwrap())
        .collect();

    // Full: without a budget the answer is `busy` at once, with the hint.
    let err = Client::builder()
        .socket(&socket)
        .busy_retry_budget(Duration::ZERO)
        .connect()
        .unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));

    // One program goes away while another waits: the waiting one gets in
    // (on its first attempt or after the one-second retry), within budget.
    let waiting = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let result = Client::builder()
                .socket(&socket)
                .connect_and_token(Duration::from_secs(60));
            (result, started.elapsed())
        })
    };
    drop(held.pop());
    let (result, elapsed) = waiting.join().unwrap();
    let (_client, token) = result.expect("the waiting client got in");
    assert!(!token.expose_secret().is_empty());
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    // The others were never disturbed.
    for client in &mut held {
        client.token(Duration::from_secs(60)).unwrap();
    }
}
