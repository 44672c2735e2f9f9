//! A restart of brokerd keeps the login: no new login, and the next refresh
//! spends the refresh token the previous broker persisted.

use crate::common::{fake_with_ttl, Broker};
use oauth_broker_client::ExposeSecret;
use std::time::Duration;

#[test]
fn restart_keeps_the_login_and_the_next_refresh_works() {
    let mut setup = Broker::logged_in(fake_with_ttl(Duration::from_secs(60)));
    let first = setup
        .client()
        .token(Duration::ZERO)
        .expect("token before restart");

    // Force one rotation so the state file holds a refresh token that only the
    // broker knows (not the imported one).
    let rotated = setup.client().unauthorized(&first).expect("forced refresh");
    assert_ne!(rotated.token_id(), first.token_id());
    assert_eq!(setup.fake.stats().successful_refreshes, 1);

    setup.restart();
    let grants_before = setup.fake.stats().grants_issued;

    // The cached token survives the restart without any call to the server.
    let after = setup
        .client()
        .token(Duration::ZERO)
        .expect("token after restart");
    assert_eq!(after.token_id(), rotated.token_id());
    assert_eq!(setup.fake.stats().successful_refreshes, 1);

    // And the persisted refresh token is the current one at the server.
    let renewed = setup
        .client()
        .unauthorized(&after)
        .expect("refresh after restart");
    assert_ne!(renewed.token_id(), after.token_id());
    assert!(setup.fake.is_access_token_valid(renewed.expose_secret()));
    let stats = setup.fake.stats();
    assert_eq!(stats.successful_refreshes, 2);
    assert_eq!(stats.reuse_detections, 0);
    assert_eq!(stats.grants_issued, grants_before, "no new login happened");

    let status = setup.client().status().unwrap();
    assert_eq!(status.refresh_count, 2);
}
