//! `CachingClient` against the real brokerd: a valid cached token is served
//! with no IPC at all (provably: the broker is gone), `min_valid` beyond it
//! asks the broker, `unauthorized` drops it, and a broker error forgets it.

use crate::common::{fake_with_ttl, Broker};
use oauth_broker_client::{CachingClient, ExposeSecret};
use std::time::Duration;

/// Long enough that no token expires or is refreshed during a test.
const LIFETIME: Duration = Duration::from_secs(60);

#[test]
fn a_valid_cached_token_is_served_without_asking_the_broker() {
    let mut setup = Broker::logged_in(fake_with_ttl(LIFETIME));
    let mut client = CachingClient::new(setup.client());
    let first = client.token(Duration::from_secs(5)).expect("token");
    assert!(setup.fake.is_access_token_valid(first.expose_secret()));

    // No broker any more: only the cache can answer.
    setup.broker.kill().expect("brokerd killed");
    for _ in 0..3 {
        let again = client
            .token(Duration::from_secs(5))
            .expect("served from the cache");
        assert_eq!(again.token_id(), first.token_id());
        assert_eq!(again.expose_secret(), first.expose_secret());
    }
    assert_eq!(
        client.cached().map(|t| t.token_id().to_owned()),
        Some(first.token_id().to_owned())
    );

    // A `min_valid` the cached token cannot meet goes to the broker — which is
    // gone — and the failure forgets the cached token.
    let err = client
        .token(LIFETIME * 2)
        .expect_err("the broker is unreachable");
    assert!(err.is_unreachable(), "{err:?}");
    assert!(client.cached().is_none());
    assert!(
        client.token(Duration::ZERO).is_err(),
        "nothing cached any more"
    );
}

#[test]
fn min_valid_beyond_the_cached_token_asks_the_broker_each_time() {
    let setup = Broker::logged_in(fake_with_ttl(LIFETIME));
    let mut client = CachingClient::new(setup.client());
    let first = client.token(Duration::ZERO).expect("token");
    // The broker caps min_valid at a fifth of the lifetime and answers with the
    // same token without refreshing; the cache cannot honour 10 minutes and
    // keeps asking (every answer is correct, none is stale).
    for _ in 0..3 {
        let token = client.token(Duration::from_secs(600)).expect("token");
        assert_eq!(token.token_id(), first.token_id());
    }
    assert_eq!(setup.fake.stats().successful_refreshes, 0);
}

#[test]
fn unauthorized_drops_the_cached_token_and_caches_the_replacement() {
    let mut setup = Broker::logged_in(fake_with_ttl(LIFETIME));
    let mut client = CachingClient::new(setup.client());
    let first = client.token(Duration::from_secs(5)).expect("token");

    let replacement = client.unauthorized(&first).expect("replacement");
    assert_ne!(replacement.token_id(), first.token_id());
    assert!(setup
        .fake
        .is_access_token_valid(replacement.expose_secret()));
    assert_eq!(setup.fake.stats().successful_refreshes, 1);

    // The replacement is what the cache serves now, without IPC.
    setup.broker.kill().expect("brokerd killed");
    let cached = client
        .token(Duration::from_secs(5))
        .expect("from the cache");
    assert_eq!(cached.token_id(), replacement.token_id());
}

#[test]
fn an_error_from_the_broker_forgets_the_cached_token() {
    let setup = Broker::logged_in(fake_with_ttl(LIFETIME));
    let mut client = CachingClient::new(setup.client());
    client.token(Duration::from_secs(5)).expect("token");

    // Logged out elsewhere: the next request that reaches the broker learns it,
    // and from then on the stale token is not served even for a small min_valid.
    let out = setup.ctl(&["logout"]);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let err = client.token(LIFETIME * 2).expect_err("logged out");
    assert!(err.needs_login(), "{err:?}");
    assert!(client.cached().is_none());
    let err = client.token(Duration::ZERO).expect_err("still logged out");
    assert!(err.needs_login(), "{err:?}");
}

#[tokio::test]
async fn the_async_caching_client_serves_from_its_cache_too() {
    let mut setup = Broker::logged_in(fake_with_ttl(LIFETIME));
    let socket = setup.broker.socket_path().to_path_buf();
    let inner = oauth_broker_client::tokio::Client::builder()
        .socket(&socket)
        .client_name("e2e-async-cache")
        .connect()
        .await
        .expect("connects");
    let mut client = oauth_broker_client::tokio::CachingClient::new(inner);
    let first = client.token(Duration::from_secs(5)).await.expect("token");
    setup.broker.kill().expect("brokerd killed");
    let again = client
        .token(Duration::from_secs(5))
        .await
        .expect("served from the cache");
    assert_eq!(again.token_id(), first.token_id());
    assert!(client.token(LIFETIME * 2).await.is_err());
    assert!(client.cached().is_none());
}
