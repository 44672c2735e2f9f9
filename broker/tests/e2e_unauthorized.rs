//! Fifty clients reporting `Unauthorized` for the same token cause one refresh.

use crate::common::{fake_with_ttl, Broker};
use oauth_broker_client::ExposeSecret;
use oauth_broker_tests::fake_server::Fault;
use std::sync::{Arc, Barrier};
use std::time::Duration;

#[test]
fn fifty_unauthorized_reports_cause_one_refresh() {
    let setup = Broker::logged_in(fake_with_ttl(Duration::from_secs(300)));
    let rejected = setup.client().token(Duration::ZERO).unwrap();
    // Slow the refresh down so that most reports arrive while it is in flight.
    setup
        .fake
        .push_fault(Fault::Delay(Duration::from_millis(300)));

    let barrier = Arc::new(Barrier::new(50));
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let mut client = setup.client();
            let rejected = rejected.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                client.unauthorized(&rejected).expect("replacement token")
            })
        })
        .collect();
    let replacements: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    let stats = setup.fake.stats();
    assert_eq!(stats.refresh_requests, 1, "one coalesced refresh");
    assert_eq!(stats.reuse_detections, 0);
    for token in &replacements {
        assert_ne!(token.token_id(), rejected.token_id());
        assert_eq!(token.token_id(), replacements[0].token_id());
    }
    assert!(setup
        .fake
        .is_access_token_valid(replacements[0].expose_secret()));
}
