//! The client side of the multi-process token storms: the child test process
//! runs many client threads, each asking for tokens in a loop until a deadline.
//! Shared by `e2e_storm` (fake server) and `interop_oidc_provider`
//! (oidc-provider) so both storms check the served tokens the same way.

use oauth_broker_client::Client;
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

/// How each client thread of a storm behaves.
pub struct Hammer {
    /// Client threads to run.
    pub threads: usize,
    /// Thread `i` connects as `{name_prefix}-{i}`.
    pub name_prefix: &'static str,
    /// The client's request timeout, or `None` for the client's default.
    pub request_timeout: Option<Duration>,
    /// The `min_valid` thread `i` asks for, so threads differ in what they need.
    pub min_valid: fn(usize) -> Duration,
    /// Pause between two requests of one thread.
    pub pause: Duration,
}

/// Runs the client threads against `socket` until `deadline`; every token
/// served must have been unexpired when it was asked for. Returns the number of requests made and the
/// distinct token ids seen.
pub fn hammer(socket: &str, deadline: Instant, hammer: &Hammer) -> (u64, BTreeSet<String>) {
    let threads: Vec<_> = (0..hammer.threads)
        .map(|i| {
            let socket = socket.to_string();
            let name = format!("{}-{i}", hammer.name_prefix);
            let request_timeout = hammer.request_timeout;
            let min_valid = (hammer.min_valid)(i);
            let pause = hammer.pause;
            std::thread::spawn(move || {
                let mut builder = Client::builder().socket(&socket).client_name(name);
                if let Some(timeout) = request_timeout {
                    builder = builder.request_timeout(timeout);
                }
                let mut client = builder.connect().expect("connect");
                let mut ids = BTreeSet::new();
                let mut requests = 0u64;
                while Instant::now() < deadline {
                    // Judged against the moment of asking: the broker decides
                    // between then and the answer, and on a loaded machine the
                    // answer may be read after a token with little life left
                    // (min_valid 0) has run out — that says nothing about what
                    // the broker served.
                    let asked = SystemTime::now();
                    let token = client.token(min_valid).expect("token");
                    assert!(
                        token.expires_at() > asked,
                        "served a token that had expired when it was asked for"
                    );
                    ids.insert(token.token_id().to_string());
                    requests += 1;
                    std::thread::sleep(pause);
                }
                (requests, ids)
            })
        })
        .collect();
    let mut total = 0;
    let mut ids = BTreeSet::new();
    for t in threads {
        let (n, seen) = t.join().expect("client thread");
        total += n;
        ids.extend(seen);
    }
    (total, ids)
}

/// The line a child prints for its parent: `{tag} {requests} {id,id,...}`.
pub fn result_line(tag: &str, total: u64, ids: BTreeSet<String>) -> String {
    format!(
        "{tag} {total} {}",
        ids.into_iter().collect::<Vec<_>>().join(",")
    )
}
