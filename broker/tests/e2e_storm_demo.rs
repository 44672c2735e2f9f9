//! Keeps the storm demo (`--bin storm-demo`) honest: its logic with a tiny N
//! against the real brokerd. What it asserts are the facts the demo exists to
//! show, not timings: programs refreshing on their own get the login revoked,
//! the broker never does.

use crate::common::brokerd;
use oauth_broker_tests::storm_demo::{brokered, status_quo, table, DemoConfig};
use std::time::Duration;

#[test]
fn status_quo_gets_everyone_logged_out_and_the_broker_does_not() {
    let config = DemoConfig {
        processes: 3,
        lifetimes: 2,
        // The broker keeps expiry in whole seconds (what clients see), so a
        // 1 s token can reach it with a few milliseconds left and be dead by
        // the time a waiting request is answered on a loaded machine (seen:
        // "no valid access token" with every refresh successful). 3 s leaves
        // each token at least 2 s, which no scheduling delay eats.
        token_lifetime: Duration::from_secs(3),
        request_interval: Duration::from_millis(50),
    };

    let before = status_quo::run(&config).expect("status quo runs");
    assert!(before.family_revoked, "{before:?}");
    assert!(before.reuse_detections >= 1, "{before:?}");
    assert!(before.refused_refreshes >= 1, "{before:?}");
    assert!(before.failed_requests > 0, "{before:?}");

    let after = brokered::run(&config, &brokerd()).expect("broker side runs");
    assert!(!after.family_revoked, "{after:?}");
    assert_eq!(after.reuse_detections, 0, "{after:?}");
    assert_eq!(after.refused_refreshes, 0, "{after:?}");
    assert_eq!(after.failed_requests, 0, "{after:?}");
    assert!(
        after.requests > 0 && after.successful_refreshes >= 1,
        "{after:?}"
    );

    let text = table::render(&config, &before, &after);
    for row in [
        "refresh attempts",
        "reuse detected",
        "family revoked",
        "API requests",
        "failed",
    ] {
        assert!(text.contains(row), "{row} missing from:\n{text}");
    }
}
