//! Forced refreshes are bounded: a token that a 401 report just had refreshed
//! and that is reported again is served, not refreshed again (at most one
//! forced refresh per token id, and a floor interval between them); the
//! suppressed reports are counted in `status` and logged once.

use crate::common::{fake_with_ttl, stdout, Broker, DEFAULT_REFRESH};
use oauth_broker_client::ExposeSecret;
use std::time::Duration;

/// Tokens that live long enough that no proactive refresh interferes.
const LIFETIME: Duration = Duration::from_secs(600);

fn setup_with_floor(floor_secs: u64) -> Broker {
    Broker::builder()
        .fake(fake_with_ttl(LIFETIME))
        .refresh_toml(&format!(
            "{DEFAULT_REFRESH}forced_refresh_floor_secs = {floor_secs}\n"
        ))
        .logged_in()
}

#[test]
fn a_hundred_reports_each_about_the_newest_token_cause_one_refresh() {
    // A floor far longer than the test: nothing here depends on timing.
    let setup = setup_with_floor(3600);
    let mut client = setup.client();
    let mut newest = client.token(Duration::ZERO).expect("token");
    let first = newest.clone();
    for i in 0..100 {
        newest = client
            .unauthorized(&newest)
            .unwrap_or_else(|e| panic!("report {i}: {e}"));
    }

    let stats = setup.fake.stats();
    assert_eq!(stats.refresh_requests, 1, "one forced refresh: {stats:#?}");
    assert_eq!(stats.reuse_detections, 0);
    assert_ne!(newest.token_id(), first.token_id());
    assert!(setup.fake.is_access_token_valid(newest.expose_secret()));

    let status = client.status().expect("status");
    assert_eq!(status.forced_refresh.suppressed, 99);
    assert_eq!(status.token_id.as_deref(), Some(newest.token_id()));
    let allowed_at = status
        .forced_refresh
        .next_allowed_at
        .expect("status says when the next forced refresh is allowed");
    assert!(
        allowed_at > status.last_refresh_at.unwrap(),
        "{allowed_at} vs {:?}",
        status.last_refresh_at
    );
    let text = stdout(&setup.ctl(&["status"]));
    // Labels are aligned to the longest one present, so compare the value.
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("401 reports:"))
        .unwrap_or_else(|| panic!("no 401 reports line:\n{text}"));
    assert!(
        line.trim_start()
            .starts_with("99 answered with the current token instead of a refresh"),
        "{text}"
    );
    let json = setup.status_json();
    assert_eq!(json["forced_refresh"]["suppressed"], 99);

    let logs = setup.logs();
    assert_eq!(
        logs.matches("was reported again").count(),
        1,
        "the condition is logged once:\n{logs}"
    );
    setup.assert_no_token_in_logs();
}

#[test]
fn after_the_floor_one_more_forced_refresh_is_allowed() {
    let setup = setup_with_floor(1);
    let mut client = setup.client();
    let first = client.token(Duration::ZERO).expect("token");
    let second = client.unauthorized(&first).expect("forced refresh");
    assert_ne!(second.token_id(), first.token_id());
    // Within the floor: the same token back, no refresh.
    let again = client.unauthorized(&second).expect("current token");
    assert_eq!(again.token_id(), second.token_id());
    assert_eq!(setup.fake.stats().refresh_requests, 1);

    // The broker says when the floor ends; once it has, a report forces a
    // refresh again.
    oauth_broker_tests::harness::Backoff::new(Duration::from_secs(20))
        .until(|| {
            let status = client.status().expect("status");
            status
                .forced_refresh
                .next_allowed_at
                .is_none()
                .then_some(())
        })
        .expect("the floor ends");
    let third = client.unauthorized(&second).expect("forced refresh");
    assert_ne!(third.token_id(), second.token_id());
    let stats = setup.fake.stats();
    assert_eq!(stats.refresh_requests, 2, "{stats:#?}");
    assert_eq!(stats.reuse_detections, 0);
    assert!(setup.fake.is_access_token_valid(third.expose_secret()));
}
