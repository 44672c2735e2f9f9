//! SIGTERM during a refresh: the broker stops accepting, removes its socket, lets
//! the refresh finish and persists the rotated token, so the next broker uses the
//! new refresh token (no reuse at the server).

use crate::common::{fake_with_ttl, Broker};
use nix::sys::signal::Signal;
use oauth_broker_tests::fake_server::Fault;
use std::time::Duration;

#[test]
fn sigterm_mid_refresh_finishes_and_persists_the_rotation() {
    let mut setup = Broker::logged_in(fake_with_ttl(Duration::from_secs(300)));
    let token = setup.client().token(Duration::ZERO).unwrap();
    setup
        .fake
        .push_fault(Fault::Delay(Duration::from_millis(700)));

    // A client reports a 401 and so starts a refresh; it is then abandoned.
    let socket = setup.broker.socket_path().to_path_buf();
    let reporter = std::thread::spawn(move || {
        let mut client = oauth_broker_client::Client::builder()
            .socket(socket)
            .connect()
            .unwrap();
        let _ = client.unauthorized(&token);
    });
    setup
        .fake
        .wait_for_token_requests_received(1, Duration::from_secs(10))
        .expect("the refresh reached the server");
    setup.broker.signal(Signal::SIGTERM).unwrap();
    let status = setup
        .broker
        .wait_exit(Duration::from_secs(15))
        .expect("brokerd exits");
    assert!(status.success(), "{status:?}");
    reporter.join().unwrap();
    assert!(
        !setup.broker.socket_path().exists(),
        "socket removed at shutdown"
    );
    assert_eq!(setup.fake.stats().successful_refreshes, 1);
    assert!(setup.logs().contains("SIGTERM"));

    // The rotated token was persisted: the next broker refreshes without reuse.
    setup.restart();
    let t = setup.client().token(Duration::ZERO).unwrap();
    setup.client().unauthorized(&t).unwrap();
    let stats = setup.fake.stats();
    assert_eq!(stats.successful_refreshes, 2);
    assert_eq!(stats.reuse_detections, 0);
}
