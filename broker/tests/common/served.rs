//! Judging whether the broker served an expired token.
//!
//! The broker decides between the moment a client asks and the moment the
//! answer is read; with `min_valid` 0 it may rightly serve a token with a few
//! milliseconds left, and on a loaded machine the client reads the answer
//! later than that. So a served token is judged against the moment of asking
//! — the latest moment the judge can vouch was before the broker's decision.

use oauth_broker_client::{AccessToken, Client, Error};
use std::time::{Duration, SystemTime};

/// `client.token(min_valid)`; a token it returns must not have expired when it
/// was asked for (panics otherwise).
pub fn token_unexpired_when_asked(
    client: &mut Client,
    min_valid: Duration,
) -> Result<AccessToken, Error> {
    let asked = SystemTime::now();
    let token = client.token(min_valid)?;
    assert!(
        token.expires_at() > asked,
        "served a token that had expired when it was asked for"
    );
    Ok(token)
}
