//! The client side of the multi-process token storms: the child test process
//! runs many client threads, each asking for tokens in a loop until a deadline.
//! Shared by `e2e_storm` (fake server) and `interop_oidc_provider`
//! (oidc-provider) so both storms check the served tokens the same way.

use super::token_unexpired_when_asked;
use oauth_broker_client::Client;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

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
                    let token = token_unexpired_when_asked(&mut client, min_valid).expect("token");
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
