//! A failing token endpoint does not disturb clients while the cached token is
//! valid; after expiry they get `upstream_unavailable` with `retry_after_secs`;
//! service resumes by itself when the endpoint recovers.

use crate::common::{fake_with_ttl, token_unexpired_when_asked, Broker};
use oauth_broker_client::ExposeSecret;
use oauth_broker_tests::fake_server::Fault;
use std::time::{Duration, Instant};

#[test]
fn endpoint_outage_is_invisible_until_expiry_then_reported_then_healed() {
    let setup = Broker::logged_in(fake_with_ttl(Duration::from_secs(3)));
    let mut client = setup.client();
    let valid = client.token(Duration::ZERO).unwrap();

    setup.fake.set_persistent_fault(Some(Fault::Status(500)));
    // While the token is valid, clients get it as if nothing happened, even
    // though the broker's refreshes fail (500s, then a captive-portal page).
    let mut served_during_outage = 0;
    let mut html = false;
    let unavailable = loop {
        // Served only while unexpired (judged against the moment of asking:
        // a token with milliseconds left may rightly be served and be read
        // after it ran out).
        match token_unexpired_when_asked(&mut client, Duration::ZERO) {
            Ok(token) => {
                assert_eq!(token.token_id(), valid.token_id());
                served_during_outage += 1;
            }
            Err(err) => break err,
        }
        if !html && setup.fake.stats().refresh_requests >= 2 {
            setup
                .fake
                .set_persistent_fault(Some(Fault::Html { status: 200 }));
            html = true;
        }
        assert!(
            Instant::now() < valid.expires_at().into_deadline(),
            "no error after expiry"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(served_during_outage > 0);
    assert!(unavailable.is_retryable(), "{unavailable:?}");
    assert_eq!(
        unavailable.code(),
        Some(oauth_broker_client::proto::ErrorCode::UpstreamUnavailable)
    );
    assert!(unavailable.retry_after().is_some(), "{unavailable:?}");
    assert!(
        setup.fake.stats().refresh_requests >= 2,
        "the broker kept trying"
    );

    let out = setup.ctl(&["token"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "exit code for upstream unavailable"
    );

    let status = client.status().unwrap();
    assert_eq!(status.state.as_str(), "expired");
    assert!(
        !status.relogin_required,
        "a transient outage is never terminal"
    );

    // Recovery without a restart.
    setup.fake.clear_faults();
    setup.fake.set_persistent_fault(None);
    let deadline = Instant::now() + Duration::from_secs(15);
    let healed = loop {
        match client.token(Duration::ZERO) {
            Ok(token) => break token,
            Err(err) => assert!(err.is_retryable(), "{err:?}"),
        }
        assert!(Instant::now() < deadline, "service did not resume");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(setup.fake.is_access_token_valid(healed.expose_secret()));
    assert_eq!(setup.fake.stats().reuse_detections, 0);
}

trait IntoDeadline {
    fn into_deadline(self) -> Instant;
}

impl IntoDeadline for std::time::SystemTime {
    /// The expiry plus generous slack for the error to show up.
    fn into_deadline(self) -> Instant {
        let left = self
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        Instant::now() + left + Duration::from_secs(10)
    }
}
