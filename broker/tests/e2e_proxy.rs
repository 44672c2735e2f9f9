//! The header-injecting proxy end to end: the real brokerd with a `[[proxy]]`
//! table, the fake authorization server, and a fake upstream on loopback that
//! records which token every request carried. The client (reqwest, or a raw
//! socket for the WebSocket upgrade) only ever holds a proxy key.

use crate::common::Broker;
use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig};
use oauth_broker_tests::fake_upstream::FakeUpstream;
use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sent in request bodies; must never reach brokerd's log.
const BODY_MARKER: &str = "BODY-MARKER-6f1d2c";

struct Rig {
    // Field order: the broker stops before the upstream.
    broker: Broker,
    upstream: FakeUpstream,
    /// `http://127.0.0.1:PORT` of the proxy.
    url: String,
    key: String,
}

fn rig(ttl: Duration, proxy_extra: &str) -> Rig {
    let fake = FakeAuthServer::start(FakeConfig {
        access_ttl: ttl,
        ..FakeConfig::default()
    });
    let check = fake.clone();
    let upstream = FakeUpstream::start(Arc::new(move |t| check.is_access_token_valid(t)));
    let broker = Broker::builder()
        .fake_server(fake)
        .fast_refresh()
        .brokerd_env("RUST_LOG", "trace")
        .extra_toml(&format!(
            "[[proxy]]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n{}\n",
            upstream.origin(),
            proxy_extra.replace("UPSTREAM", &upstream.origin())
        ))
        .logged_in();
    let out = broker.ctl(&["proxy", "key", "--name", "tests"]);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let key = crate::common::stdout(&out).trim().to_string();
    assert!(key.starts_with("obk_"), "a key alone on stdout");
    let url = broker.status().proxies[0].listen.clone();
    Rig {
        broker,
        upstream,
        url,
        key,
    }
}

impl Rig {
    /// Every secret the broker and the test handled: issued tokens, the key.
    fn secrets(&self) -> Vec<String> {
        let mut all = self.broker.fake.all_issued_tokens();
        all.push(self.key.clone());
        all
    }

    /// No token, key or request body in brokerd's trace log.
    fn assert_clean_logs(&self) {
        let logs = self.broker.logs();
        assert!(logs.contains("proxy: forwarded"), "trace logging was on");
        for secret in self.secrets() {
            assert!(
                !logs.contains(&secret),
                "a token or key leaked into the log"
            );
        }
        assert!(
            !logs.contains(BODY_MARKER),
            "a request body reached the log"
        );
    }

    /// The upstream never saw the key.
    fn assert_key_never_forwarded(&self) {
        for req in self.upstream.requests() {
            for (_, value) in &req.headers {
                assert!(!value.contains(&self.key), "the key reached the upstream");
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What a client saw of one answer: status, headers and body as text.
struct Seen {
    status: u16,
    text: String,
}

async fn send(request: reqwest::RequestBuilder) -> Seen {
    let response = request.send().await.expect("the proxy answers");
    let status = response.status().as_u16();
    let mut text = format!("{:?}\n", response.headers());
    text.push_str(&response.text().await.unwrap_or_default());
    Seen { status, text }
}

/// Writes `request` on a fresh connection to the proxy and reads the answer
/// until the proxy closes or 2 s pass.
fn raw_exchange(url: &str, request: &str) -> String {
    let mut socket = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn every_upstream_request_carries_the_current_token_across_lifetimes() {
    let rig = rig(Duration::from_secs(2), "");
    let rt = runtime();
    let http = reqwest::Client::new();
    let start = rig.broker.fake.stats().successful_refreshes;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut seen = Vec::new();
    while rig.broker.fake.stats().successful_refreshes < start + 3 {
        assert!(Instant::now() < deadline, "three refreshes within 40 s");
        let body = format!("{{\"input\":\"{BODY_MARKER}\"}}");
        let answer = rt.block_on(send(
            http.post(format!("{}/v1/responses", rig.url))
                .bearer_auth(&rig.key)
                .header("content-type", "application/json")
                .body(body),
        ));
        assert_eq!(answer.status, 200, "{}", answer.text);
        seen.push(answer.text);
        std::thread::sleep(Duration::from_millis(25));
    }
    let requests = rig.upstream.requests();
    assert_eq!(
        requests.len(),
        seen.len(),
        "one upstream request per request"
    );
    let mut last_position = 0;
    let mut distinct = std::collections::BTreeSet::new();
    for req in &requests {
        assert_eq!(req.status, 200, "the upstream accepted every token");
        let bearer = req.bearer.as_deref().expect("a bearer token upstream");
        let position = rig
            .broker
            .issue_position(bearer)
            .expect("a token the authorization server issued");
        assert!(position >= last_position, "never an older token again");
        last_position = position;
        distinct.insert(bearer.to_string());
        assert_eq!(req.path, "/v1/responses");
        assert!(req.body_len > 0);
    }
    // The loop ends as the third refresh lands: the tokens of at least three
    // lifetimes were used.
    assert!(
        distinct.len() >= 3,
        "{} tokens over three refreshes",
        distinct.len()
    );
    for text in &seen {
        for secret in rig.broker.fake.all_issued_tokens() {
            assert!(!text.contains(&secret), "the client saw a token");
        }
    }
    rig.assert_key_never_forwarded();
    rig.assert_clean_logs();
}

#[test]
fn sse_first_event_arrives_before_the_upstream_finished() {
    let rig = rig(Duration::from_secs(300), "");
    let rt = runtime();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let mut response = http
            .get(format!("{}/sse", rig.url))
            .header("x-api-key", &rig.key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let first = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("the first event is not held back")
            .unwrap()
            .unwrap();
        assert_eq!(&first[..], b"data: first\n\n");
        // Only now may the upstream finish.
        rig.upstream.release_streams();
        let mut rest = Vec::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            rest.extend_from_slice(&chunk);
        }
        assert_eq!(rest, b"data: last\n\n");
    });
    let requests = rig.upstream.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].bearer.is_some());
    assert!(!requests[0].headers.iter().any(|(n, _)| n == "x-api-key"));
    rig.assert_key_never_forwarded();
    rig.assert_clean_logs();
}

#[test]
fn websocket_upgrade_is_tunnelled_both_ways() {
    let mut rig = rig(Duration::from_secs(300), "");
    let addr = rig.url.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        socket,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {}\r\n\r\n",
        rig.key
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for message in [
        &b"hello"[..],
        &[0x81, 0x02, b'h', b'i'],
        &vec![7u8; 100_000],
    ] {
        socket.write_all(message).unwrap();
        let mut echoed = vec![0u8; message.len()];
        socket.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, message, "echoed through the tunnel");
    }
    // Shutdown closes the open tunnel (it is a tracked proxy task).
    rig.broker.restart();
    assert!(
        rig.broker
            .logs()
            .contains("proxy: upgraded connection closed at shutdown"),
        "the tunnel was closed by the shutdown"
    );
    assert_eq!(socket.read(&mut byte).unwrap_or(0), 0, "the tool saw EOF");
    drop(socket);
    let requests = rig.upstream.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].status, 101);
    let bearer = requests[0].bearer.clone().unwrap();
    assert!(rig.broker.issue_position(&bearer).is_some());
    rig.assert_key_never_forwarded();
    rig.assert_clean_logs();
}

#[test]
fn an_upstream_401_heals_with_exactly_one_refresh() {
    let rig = rig(Duration::from_secs(300), "replay_body_bytes = 1024\n");
    let rt = runtime();
    let http = reqwest::Client::new();
    let post = |len: usize| {
        let body = format!("{BODY_MARKER}{}", "x".repeat(len));
        rt.block_on(send(
            http.post(format!("{}/v1/chat/completions", rig.url))
                .bearer_auth(&rig.key)
                .body(body),
        ))
    };
    assert_eq!(post(10).status, 200);
    let first = rig.upstream.requests()[0].bearer.clone().unwrap();
    let refreshes = rig.broker.fake.stats().refresh_requests;
    // The upstream now refuses the broker's token: a replayable request is
    // retried once with the token of one forced refresh.
    rig.upstream.refuse_token(&first);
    let healed = post(10);
    assert_eq!(healed.status, 200, "{}", healed.text);
    assert!(healed.text.contains("through the proxy"));
    assert_eq!(rig.broker.fake.stats().refresh_requests, refreshes + 1);
    let requests = rig.upstream.requests();
    let (refused, retried) = (&requests[1], &requests[2]);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.bearer.as_deref(), Some(first.as_str()));
    assert_eq!(retried.status, 200);
    let second = retried.bearer.clone().unwrap();
    assert_ne!(second, first);
    assert_eq!(refused.body_len, retried.body_len, "the same body, resent");

    // A body over the replay buffer is streamed: its 401 goes to the client,
    // after one refresh; the next request carries the new token.
    rig.upstream.refuse_token(&second);
    let streamed = post(4096);
    assert_eq!(streamed.status, 401, "{}", streamed.text);
    assert_eq!(rig.broker.fake.stats().refresh_requests, refreshes + 2);
    assert_eq!(post(10).status, 200);
    assert_eq!(rig.broker.fake.stats().refresh_requests, refreshes + 2);
    let last = rig
        .upstream
        .requests()
        .last()
        .unwrap()
        .bearer
        .clone()
        .unwrap();
    assert!(last != first && last != second);
    rig.assert_key_never_forwarded();
    rig.assert_clean_logs();
}

#[test]
fn requests_without_a_valid_key_are_refused_with_the_fix() {
    let rig = rig(Duration::from_secs(300), "max_body_bytes = 65536\n");
    let rt = runtime();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/models", rig.url);
    let none = rt.block_on(send(http.get(&url)));
    assert_eq!(none.status, 401);
    assert!(none.text.contains("proxy_key_missing"), "{}", none.text);
    assert!(none.text.contains("brokerctl proxy key"), "{}", none.text);
    let wrong = rt.block_on(send(http.get(&url).bearer_auth("obk_not-a-key")));
    assert_eq!(wrong.status, 401);
    assert!(wrong.text.contains("proxy_key_invalid"), "{}", wrong.text);
    // A good key works, counts, and then is revoked.
    assert_eq!(
        rt.block_on(send(http.get(&url).bearer_auth(&rig.key)))
            .status,
        200
    );
    // Over the cap: refused from the headers alone (a raw socket, since the
    // answer comes before the body is read).
    let too_big = raw_exchange(
        &rig.url,
        &format!(
            "POST /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n",
            rig.key
        ),
    );
    assert!(too_big.starts_with("HTTP/1.1 413"), "{too_big}");
    assert!(too_big.contains("max_body_bytes"), "{too_big}");
    let status = rig.broker.status_json();
    let keys = status["proxy_keys"].as_array().unwrap();
    assert_eq!(keys[0]["name"], "tests");
    assert_eq!(keys[0]["requests"], 2);
    assert!(keys[0]["last_used_at"].as_u64().is_some());
    let text = crate::common::stdout(&rig.broker.ctl(&["status"]));
    assert!(
        text.contains("proxy key") && text.contains("tests"),
        "{text}"
    );
    let out = rig.broker.ctl(&["proxy", "revoke", "tests"]);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let revoked = rt.block_on(send(http.get(&url).bearer_auth(&rig.key)));
    assert_eq!(revoked.status, 401);
    assert!(revoked.text.contains("proxy_key_invalid"));
    let out = rig.broker.ctl(&["proxy", "revoke", "tests"]);
    assert!(!out.status.success());
    assert!(crate::common::stderr(&out).contains("no proxy key is named"));
    assert_eq!(
        rig.upstream.requests().len(),
        1,
        "refused requests never left"
    );
    rig.assert_clean_logs();
}

#[test]
fn large_bodies_stream_under_the_cap_and_a_unix_socket_serves_too() {
    let rig = rig(
        Duration::from_secs(300),
        "max_body_bytes = 16777216\nreplay_body_bytes = 1024\n\n[[proxy]]\nlisten = \"{root}/proxy.sock\"\nupstream = \"UPSTREAM\"\n",
    );
    let rt = runtime();
    let http = reqwest::Client::new();
    let big = vec![b'z'; 12 << 20];
    let answer = rt.block_on(send(
        http.post(format!("{}/v1/files", rig.url))
            .bearer_auth(&rig.key)
            .body(big),
    ));
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        answer.text.contains(&format!("\"body_len\":{}", 12 << 20)),
        "{}",
        answer.text
    );
    // The second table: a Unix socket (0600) with the same key.
    let status = rig.broker.status();
    assert_eq!(status.proxies.len(), 2);
    let path = status.proxies[1]
        .listen
        .trim_start_matches("unix:")
        .to_string();
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the proxy socket is private");
    // Bound (under the process-wide umask) before the manager started.
    let logs = rig.broker.logs();
    let bound_at = logs
        .find("proxy listening")
        .expect("the proxies are logged");
    let ready_at = logs.find("brokerd ready").expect("brokerd is ready");
    assert!(
        bound_at < ready_at,
        "proxies are bound before any task runs"
    );
    let mut socket = std::os::unix::net::UnixStream::connect(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        socket,
        "GET /v1/models HTTP/1.1\r\nHost: proxy\r\nx-api-key: {}\r\nConnection: close\r\n\r\n",
        rig.key
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(rig.upstream.requests().len(), 2);
    rig.assert_key_never_forwarded();
    rig.assert_clean_logs();
}

#[test]
fn idle_connections_at_the_cap_starve_neither_the_broker_nor_later_tools() {
    let rig = rig(Duration::from_secs(300), "max_connections = 4\n");
    let addr = rig.url.trim_start_matches("http://").to_string();
    let request = format!(
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        rig.key
    );
    // A local user without a key holds every allowed connection, idle.
    let idle: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    // The next one is accepted after those (the backlog is FIFO) and refused.
    let refused = raw_exchange(&rig.url, &request);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("proxy_busy"), "{refused}");
    // The broker's own socket still serves a token.
    let token = rig
        .broker
        .client()
        .token(Duration::from_secs(5))
        .expect("the broker's socket serves while the proxy is full");
    assert!(rig.broker.server_accepts(&token));
    // Once the idle connections go, tools are served again.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = raw_exchange(&rig.url, &request);
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(Instant::now() < deadline, "the cap was never released");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A request refused for its key does not keep its connection open.
    let started = Instant::now();
    let no_key = raw_exchange(
        &rig.url,
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    );
    assert!(no_key.starts_with("HTTP/1.1 401"), "{no_key}");
    assert!(
        no_key.to_ascii_lowercase().contains("connection: close"),
        "{no_key}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the proxy closed the connection itself"
    );
    rig.assert_key_never_forwarded();
}

#[test]
fn a_chunked_upload_over_the_cap_gets_413() {
    let rig = rig(Duration::from_secs(300), "max_body_bytes = 65536\n");
    let mut socket = std::net::TcpStream::connect(rig.url.trim_start_matches("http://")).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let chunk = vec![b'c'; 70_000];
    write!(
        socket,
        "POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        rig.key,
        chunk.len()
    )
    .unwrap();
    socket.write_all(&chunk).unwrap();
    let _ = socket.write_all(b"\r\n0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("max_body_bytes"), "{answer}");
    rig.assert_key_never_forwarded();
}
