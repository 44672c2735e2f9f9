//! A grant revoked at the server becomes `relogin_required` with a reason and a
//! hint: in the client error, in `brokerctl token`'s stderr and exit code, and in
//! `brokerctl status --json`. The broker then stops calling the token endpoint.

use crate::common::{fake_with_ttl, stderr, stdout, Broker};
use std::time::Duration;

#[test]
fn revoked_grant_turns_into_relogin_required_everywhere() {
    let setup = Broker::logged_in(fake_with_ttl(Duration::from_secs(60)));
    let mut client = setup.client();
    let token = client.token(Duration::ZERO).unwrap();
    assert!(setup.fake.revoke_all() > 0);

    // The agent's API call got a 401; the broker's refresh is refused.
    let err = client.unauthorized(&token).unwrap_err();
    assert!(err.is_relogin_required(), "{err:?}");
    assert!(err.needs_login());
    assert_eq!(err.reason(), Some("invalid_grant"));
    assert!(err.hint().unwrap().contains("brokerctl relogin"), "{err}");

    let out = setup.ctl(&["token"]);
    assert_eq!(out.status.code(), Some(2), "exit code for relogin required");
    assert!(out.stdout.is_empty(), "no token on stdout");
    let err_line = stderr(&out);
    assert_eq!(
        err_line.trim_end().lines().count(),
        1,
        "one line: {err_line}"
    );
    assert!(err_line.contains("brokerctl relogin"), "{err_line}");

    let out = setup.ctl(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(status["state"], "relogin_required");
    assert_eq!(status["relogin_required"], true);
    assert_eq!(status["relogin_reason"], "invalid_grant");
    assert!(status["last_error"]["hint"]
        .as_str()
        .unwrap()
        .contains("relogin"));

    // Terminal: no further refresh attempts, whatever the clients do.
    let before = setup.fake.stats().refresh_requests;
    for _ in 0..5 {
        assert!(client
            .token(Duration::ZERO)
            .unwrap_err()
            .is_relogin_required());
    }
    assert_eq!(setup.fake.stats().refresh_requests, before);
}

#[test]
fn nested_error_shape_is_understood() {
    let mut config = fake_with_ttl(Duration::from_secs(60));
    config.error_shape = oauth_broker_tests::fake_server::ErrorShape::Nested;
    let setup = Broker::logged_in(config);
    let mut client = setup.client();
    let token = client.token(Duration::ZERO).unwrap();
    setup.fake.revoke_all();
    let err = client.unauthorized(&token).unwrap_err();
    assert!(err.is_relogin_required(), "{err:?}");
    assert_eq!(err.reason(), Some("refresh_token_invalidated"));
}
