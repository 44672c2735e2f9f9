//! Judging "the broker's current token" without racing the next refresh.
//!
//! A request observed after the fact cannot be compared with the broker's
//! current token *now*: a refresh may have landed in between (short test
//! lifetimes, a loaded machine). What is settled is the order in which the
//! fake authorization server issued its access tokens — the broker is the only
//! one refreshing, so that order is the sequence of the broker's current
//! tokens. A token the broker held when the observation began and the one it
//! holds when it ended bound every token that was current in between.

use super::{fingerprint, Broker};

impl Broker {
    /// Where `token` stands in the fake server's issuance order; `None` if the
    /// server never issued it.
    pub fn issue_position(&self, token: &str) -> Option<usize> {
        self.fake
            .access_tokens_in_issue_order()
            .iter()
            .position(|t| t == token)
    }

    /// Asserts that `bearer` was the broker's current token at some moment
    /// since it held the token with id `from_id`: issued no earlier than that
    /// one and no later than the broker's current token now. A stale token
    /// (older than `from_id`) or one the broker never held fails; a refresh
    /// landing meanwhile does not.
    pub fn assert_current_since(&self, bearer: &str, from_id: &str, what: &str) {
        let now_id = self.current_token_id();
        let issued: Vec<String> = self
            .fake
            .access_tokens_in_issue_order()
            .iter()
            .map(|t| fingerprint(t))
            .collect();
        let at = |id: &str| issued.iter().position(|i| i == id);
        let (Some(from), Some(now)) = (at(from_id), at(&now_id)) else {
            panic!("the broker holds tokens the fake server did not issue");
        };
        let bearer_at = at(&fingerprint(bearer));
        assert!(
            bearer_at.is_some_and(|b| from <= b && b <= now),
            "{what} carried the broker's current token (issue positions: since {from}, \
             bearer {bearer_at:?}, broker now {now})"
        );
    }
}
