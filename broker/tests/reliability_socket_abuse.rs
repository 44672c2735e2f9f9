//! Abuse of the socket: garbage, absurd lengths, frames cut in half, clients
//! that say nothing or read nothing, thousands of connections at once, unknown
//! messages, a wrong protocol version and random bytes. The broker answers
//! with an error frame where it can, drops the offender, keeps serving
//! everybody else (a witness client asks for tokens throughout and must never
//! fail) and its memory stays bounded.

use crate::common::{
    brokerd_with_low_nofile, open_files_limits, token_unexpired_when_asked, vm_rss_kib, Broker,
    BrokerBuilder,
};
use oauth_broker_client::proto::{
    encode_frame, frame_len, ErrorCode, ErrorFrame, Hello, LoginEvent, LoginMethod, Request,
    Response, FRAME_HEADER_LEN, PROTOCOL_VERSION,
};
use oauth_broker_client::Client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A started frame (and the hello) must be complete within this.
const REQUEST_TIMEOUT_MS: u64 = 500;
/// Each list of hostile inputs is sent this many times (the witness keeps
/// asking meanwhile).
const ROUNDS: usize = 10;

fn spec(max_connections: usize) -> BrokerBuilder {
    Broker::builder().fast_refresh().ttl(Duration::from_secs(600)).server_toml(&format!(
        "max_connections = {max_connections}\nrequest_timeout_ms = {REQUEST_TIMEOUT_MS}\nidle_timeout_secs = 30\n"
    ))
}

/// A client that asks for a token every few milliseconds on its own
/// connection while the abuse goes on; any failure fails the test.
struct Witness {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Witness {
    fn start(socket: PathBuf) -> Witness {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, served) = (stop.clone(), served.clone());
            std::thread::spawn(move || {
                let mut client = Client::builder()
                    .socket(&socket)
                    .client_name("witness")
                    .request_timeout(Duration::from_secs(10))
                    .connect()
                    .expect("witness connects");
                while !stop.load(Ordering::SeqCst) {
                    token_unexpired_when_asked(&mut client, Duration::ZERO)
                        .expect("the witness was not served during the abuse");
                    served.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Witness {
            stop,
            served,
            thread,
        }
    }

    /// Stops the witness and returns how many tokens it got.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("witness");
        let served = self.served.load(Ordering::SeqCst);
        assert!(served > 0, "the witness was never served");
        served
    }
}

fn raw(socket: &Path) -> UnixStream {
    let s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn send(s: &mut UnixStream, bytes: &[u8]) {
    s.write_all(bytes).expect("write");
}

fn hello(s: &mut UnixStream) {
    send(s, &encode_frame(&Hello::new("abuser")).unwrap());
    match read_frame(s) {
        Some(Response::Welcome(w)) => assert_eq!(w.protocol, PROTOCOL_VERSION),
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// The next frame, or `None` if the broker closed the connection.
fn read_frame(s: &mut UnixStream) -> Option<Response> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    if let Err(e) = s.read_exact(&mut header) {
        assert!(is_closed(&e), "reading a frame header: {e}");
        return None;
    }
    let len = frame_len(header).expect("the broker sent an oversized frame");
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).expect("frame payload");
    Some(serde_json::from_slice(&payload).expect("the broker sent a malformed frame"))
}

fn is_closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
    )
}

fn expect_error(s: &mut UnixStream, code: ErrorCode, what: &str) -> ErrorFrame {
    match read_frame(s) {
        Some(Response::Error(e)) => {
            assert_eq!(e.code, code, "{what}: {e:?}");
            assert!(!e.message.is_empty(), "{what}: empty message");
            assert!(e.hint.is_some(), "{what}: no hint in {e:?}");
            e
        }
        other => panic!("{what}: expected a {code:?} error frame, got {other:?}"),
    }
}

/// Asserts that the broker closes the connection (without a further frame)
/// within `within`.
fn expect_dropped(s: &mut UnixStream, within: Duration, what: &str) -> Duration {
    let started = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(0) => {}
        Err(e) if is_closed(&e) => {}
        Ok(_) => panic!("{what}: unexpected data instead of a close"),
        Err(e) => panic!("{what}: not dropped within {within:?} ({e})"),
    }
    started.elapsed()
}

fn assert_alive(rig: &mut Broker) {
    assert!(rig.broker.is_running(), "brokerd died:\n{}", rig.logs());
    let token = rig
        .client()
        .token(Duration::ZERO)
        .expect("served after the abuse");
    assert!(rig.server_accepts(&token));
}

#[test]
fn malformed_first_frames_get_an_error_frame_then_the_connection_is_closed() {
    let mut rig = spec(512).logged_in();
    let socket = rig.broker.socket_path().to_path_buf();
    let witness = Witness::start(socket.clone());
    let mut sent = 0;

    let too_large: Vec<(&str, Vec<u8>)> = vec![
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("a 4 GiB length", u32::MAX.to_be_bytes().to_vec()),
        (
            "a 64 KiB + 1 length",
            (64 * 1024 + 1u32).to_be_bytes().to_vec(),
        ),
        (
            "a TLS client hello",
            vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01],
        ),
    ];
    for (what, bytes) in too_large.iter().cycle().take(too_large.len() * ROUNDS) {
        let mut s = raw(&socket);
        send(&mut s, bytes);
        sent += 1;
        let e = expect_error(&mut s, ErrorCode::BadRequest, what);
        assert!(e.message.contains("exceeds"), "{what}: {e:?}");
        expect_dropped(&mut s, Duration::from_secs(5), what);
    }

    let not_a_hello: Vec<(&str, Vec<u8>)> = vec![
        ("an empty frame", frame(b"")),
        ("invalid JSON", frame(b"{\"protocol\": 1,")),
        ("non-UTF-8 bytes", frame(&[0xff, 0xfe, 0x00, 0x80])),
        ("a JSON string", frame(b"\"hello\"")),
        (
            "a request before the hello",
            encode_frame(&Request::Status).unwrap(),
        ),
        (
            "a hello with a string protocol",
            frame(br#"{"protocol":"1","client":"x"}"#),
        ),
        (
            "a hello with a negative protocol",
            frame(br#"{"protocol":-1}"#),
        ),
        ("deeply nested JSON", frame(&[b'['; 10_000])),
    ];
    for (what, bytes) in not_a_hello.iter().cycle().take(not_a_hello.len() * ROUNDS) {
        let mut s = raw(&socket);
        send(&mut s, bytes);
        sent += 1;
        let e = expect_error(&mut s, ErrorCode::BadRequest, what);
        assert!(e.message.contains("hello"), "{what}: {e:?}");
        expect_dropped(&mut s, Duration::from_secs(5), what);
    }

    for protocol in [0, PROTOCOL_VERSION + 1, u32::MAX].repeat(ROUNDS) {
        let mut s = raw(&socket);
        let hello = Hello {
            protocol,
            client: "from the future".into(),
        };
        send(&mut s, &encode_frame(&hello).unwrap());
        sent += 1;
        let e = expect_error(&mut s, ErrorCode::UnsupportedProtocol, "wrong protocol");
        assert!(e.message.contains(&protocol.to_string()), "{e:?}");
        expect_dropped(&mut s, Duration::from_secs(5), "wrong protocol");
    }

    let served = witness.finish();
    assert_alive(&mut rig);
    println!(
        "RELIABILITY socket.first_frames malformed_inputs_sent={sent} witness_served={served}"
    );
}

#[test]
fn malformed_requests_after_the_handshake_get_bad_request_and_the_connection_lives_on() {
    let mut rig = spec(512).logged_in();
    let socket = rig.broker.socket_path().to_path_buf();
    let witness = Witness::start(socket.clone());
    let mut s = raw(&socket);
    hello(&mut s);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        (
            "an unknown message type",
            frame(br#"{"type":"frobnicate"}"#),
        ),
        ("no type at all", frame(br#"{"min_valid_secs":5}"#)),
        ("a missing field", frame(br#"{"type":"unauthorized"}"#)),
        (
            "a wrong field type",
            frame(br#"{"type":"token","min_valid_secs":"soon"}"#),
        ),
        (
            "a negative number",
            frame(br#"{"type":"token","min_valid_secs":-1}"#),
        ),
        (
            "a number too large",
            frame(br#"{"type":"token","min_valid_secs":1e400}"#),
        ),
        (
            "a second hello",
            encode_frame(&Hello::new("again")).unwrap(),
        ),
        (
            "an import without a refresh token",
            frame(br#"{"type":"import","tokens":{}}"#),
        ),
        (
            "an unknown login method",
            frame(br#"{"type":"relogin","method":"telepathy"}"#),
        ),
        ("invalid JSON", frame(b"{{{{")),
        ("non-UTF-8 bytes", frame(&[0xc3, 0x28, 0xa0, 0xa1])),
        ("an empty frame", frame(b"")),
        (
            "a 60 KiB string",
            frame(format!("\"{}\"", "x".repeat(60 * 1024)).as_bytes()),
        ),
    ];
    let mut sent = 0;
    for (what, bytes) in bad.iter().cycle().take(bad.len() * ROUNDS) {
        send(&mut s, bytes);
        sent += 1;
        expect_error(&mut s, ErrorCode::BadRequest, what);
        // The same connection still works.
        send(&mut s, &encode_frame(&Request::Status).unwrap());
        assert!(
            matches!(read_frame(&mut s), Some(Response::Status(_))),
            "{what}: the connection did not survive"
        );
    }
    // An oversized length after the handshake: error frame, then closed.
    send(&mut s, &u32::MAX.to_be_bytes());
    sent += 1;
    expect_error(&mut s, ErrorCode::BadRequest, "oversized after hello");
    expect_dropped(&mut s, Duration::from_secs(5), "oversized after hello");

    let served = witness.finish();
    assert_alive(&mut rig);
    println!("RELIABILITY socket.requests malformed_inputs_sent={sent} witness_served={served}");
}

#[test]
fn half_frames_and_silent_clients_are_dropped_after_the_request_timeout() {
    let mut rig = spec(512).logged_in();
    let socket = rig.broker.socket_path().to_path_buf();
    let witness = Witness::start(socket.clone());
    let limit = Duration::from_secs(5);
    let mut sent = 0;
    let opened = Instant::now();

    // Connects and says nothing.
    let mut silent = raw(&socket);
    // Half a header.
    let mut half_header = raw(&socket);
    send(&mut half_header, &[0, 0]);
    // A hello cut in half.
    let mut half_hello = raw(&socket);
    let hello_frame = encode_frame(&Hello::new("slow")).unwrap();
    send(&mut half_hello, &hello_frame[..hello_frame.len() / 2]);
    // A request cut in half after a good handshake.
    let mut half_request = raw(&socket);
    hello(&mut half_request);
    let request = encode_frame(&Request::Token {
        min_valid_secs: 0,
        identity: false,
    })
    .unwrap();
    send(&mut half_request, &request[..request.len() / 2]);
    // A slow loris: one byte of a frame every 200 ms keeps the stream alive
    // but the frame never completes in time.
    let mut loris = raw(&socket);
    hello(&mut loris);
    let loris_thread = std::thread::spawn(move || {
        let big =
            frame(format!("{{\"type\":\"status\",\"pad\":\"{}\"}}", "x".repeat(100)).as_bytes());
        for byte in big {
            if loris.write_all(&[byte]).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    });
    sent += 5;

    for (what, s) in [
        ("silent", &mut silent),
        ("half header", &mut half_header),
        ("half hello", &mut half_hello),
        ("half request", &mut half_request),
    ] {
        expect_dropped(s, limit, what);
        println!(
            "RELIABILITY socket.timeouts {what} dropped_within_ms={}",
            opened.elapsed().as_millis()
        );
    }
    assert!(
        loris_thread.join().unwrap(),
        "the slow loris was never dropped"
    );

    let served = witness.finish();
    assert_alive(&mut rig);
    println!("RELIABILITY socket.timeouts malformed_inputs_sent={sent} witness_served={served}");
}

#[test]
fn a_client_that_never_reads_is_dropped_and_costs_no_memory() {
    let mut rig = spec(512).logged_in();
    let socket = rig.broker.socket_path().to_path_buf();
    let witness = Witness::start(socket.clone());
    let pid = rig.broker.pid();
    let rss_before = vm_rss_kib(pid);

    let mut s = raw(&socket);
    hello(&mut s);
    // Pipeline status requests (each answer is ~1 KiB) and never read: the
    // broker's writes block once the socket buffers are full, and the write
    // timeout drops the client.
    let status = encode_frame(&Request::Status).unwrap();
    let mut batch = Vec::new();
    for _ in 0..1000 {
        batch.extend_from_slice(&status);
    }
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    let mut requests = 0u64;
    let dropped = loop {
        match s.write_all(&batch) {
            Ok(()) => requests += 1000,
            Err(e) if is_closed(&e) => break true,
            Err(e) => panic!("unexpected write error {e} after {requests} requests"),
        }
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
    };
    assert!(dropped, "a client that reads nothing was not dropped");
    let rss_after = vm_rss_kib(pid);
    let served = witness.finish();
    assert_alive(&mut rig);
    println!(
        "RELIABILITY socket.no_reader requests_unread={requests} dropped_after_ms={} rss_before_kib={rss_before} rss_after_kib={rss_after} witness_served={served}",
        started.elapsed().as_millis()
    );
    assert!(
        rss_after < rss_before + 32 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
}

/// Raises this process's open-files soft limit so that it can hold
/// `needed` sockets at once.
fn ensure_open_files(needed: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < needed {
        assert!(
            hard >= needed,
            "this test needs {needed} open files; the hard limit is {hard}"
        );
        setrlimit(Resource::RLIMIT_NOFILE, needed.max(soft), hard).unwrap();
    }
}

#[test]
fn two_thousand_connections_at_once_are_all_served_with_bounded_memory() {
    const CONNECTIONS: usize = 2000;
    ensure_open_files(CONNECTIONS as u64 + 512);
    // brokerd starts with the common default soft limit of 1024 open files:
    // it must raise it itself to hold 2,000 connections.
    let wrapper_dir = tempfile::tempdir().unwrap();
    let spec = spec(4096).brokerd(brokerd_with_low_nofile(wrapper_dir.path(), 1024));
    let mut rig = spec.logged_in();
    let socket = rig.broker.socket_path().to_path_buf();
    let pid = rig.broker.pid();
    let (soft, hard) = open_files_limits(pid);
    println!("RELIABILITY socket.flood brokerd_open_files_soft={soft} hard={hard}");
    assert_eq!(
        soft, hard,
        "brokerd did not raise its open-files soft limit"
    );
    // Warm up the allocator and the runtime before measuring.
    for _ in 0..50 {
        rig.client().token(Duration::ZERO).unwrap();
    }
    let rss_before = vm_rss_kib(pid);
    let witness = Witness::start(socket.clone());

    // All connect and ask at once (every connection stays open until all are
    // answered), then all answers are read.
    let hello = encode_frame(&Hello::new("flood")).unwrap();
    let token = encode_frame(&Request::Token {
        min_valid_secs: 0,
        identity: false,
    })
    .unwrap();
    let mut streams: Vec<UnixStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut s = raw(&socket);
            send(&mut s, &hello);
            send(&mut s, &token);
            s
        })
        .collect();
    let mut served = 0;
    for s in &mut streams {
        assert!(matches!(read_frame(s), Some(Response::Welcome(_))));
        match read_frame(s) {
            Some(Response::Token(_)) => served += 1,
            other => panic!("connection {served}: expected a token, got {other:?}"),
        }
    }
    let rss_peak = vm_rss_kib(pid);
    drop(streams);
    let witness_served = witness.finish();
    assert_alive(&mut rig);
    let rss_after = vm_rss_kib(pid);
    println!(
        "RELIABILITY socket.flood connections={CONNECTIONS} served={served} rss_before_kib={rss_before} rss_peak_kib={rss_peak} rss_after_kib={rss_after} witness_served={witness_served}"
    );
    assert_eq!(served, CONNECTIONS);
    // Generous: a connection costs a few KiB; 2,000 of them must stay far
    // below this.
    assert!(
        rss_peak < rss_before + 64 * 1024,
        "memory grew from {rss_before} KiB to {rss_peak} KiB with {CONNECTIONS} connections"
    );
}

#[test]
fn at_the_limit_the_connection_idle_the_longest_makes_room() {
    const LIMIT: usize = 50;
    let mut rig = spec(LIMIT).logged_in();
    let socket = rig.broker.socket_path().to_path_buf();
    let mut held: Vec<UnixStream> = (0..LIMIT)
        .map(|_| {
            let mut s = raw(&socket);
            hello(&mut s);
            s
        })
        .collect();
    // The first connection asks something: now the second has been idle the
    // longest.
    let status = encode_frame(&Request::Status).unwrap();
    send(&mut held[0], &status);
    assert!(matches!(
        read_frame(&mut held[0]),
        Some(Response::Status(_))
    ));

    let mut evicted = 0;
    let mut newcomers = Vec::new();
    // In order: the second connection first, then the third, …
    for oldest in held[1..=20].iter_mut() {
        let mut s = raw(&socket);
        hello(&mut s);
        expect_dropped(
            oldest,
            Duration::from_secs(5),
            "the connection idle the longest",
        );
        evicted += 1;
        newcomers.push(s);
    }
    // A real client gets in the same way (the next oldest, the 22nd, makes
    // room), and the survivors still work.
    Client::builder()
        .socket(&socket)
        .connect()
        .expect("a client at the limit")
        .token(Duration::ZERO)
        .expect("a token at the limit");
    expect_dropped(
        &mut held[21],
        Duration::from_secs(5),
        "the connection idle the longest, for the real client",
    );
    evicted += 1;
    let (first, rest) = held.split_at_mut(1);
    for s in rest[21..]
        .iter_mut()
        .chain(&mut newcomers)
        .chain(first.iter_mut())
    {
        send(s, &status);
        assert!(matches!(read_frame(s), Some(Response::Status(_))));
    }
    assert_alive(&mut rig);
    println!("RELIABILITY socket.limit idle_connections_evicted={evicted}");
}

#[test]
fn when_every_connection_serves_a_request_newcomers_get_busy_with_a_retry_hint() {
    // One slot, held by a device login that waits for the user: the only
    // connection is in the middle of a request, so nothing can make room.
    let mut rig = spec(1).logged_in();
    let socket = rig.broker.socket_path().to_path_buf();
    let mut login = raw(&socket);
    hello(&mut login);
    send(
        &mut login,
        &encode_frame(&Request::Relogin {
            method: Some(LoginMethod::Device),
        })
        .unwrap(),
    );
    let user_code = match read_frame(&mut login) {
        Some(Response::Login(LoginEvent::DeviceCode { user_code, .. })) => user_code,
        other => panic!("expected a device code, got {other:?}"),
    };

    let mut busy = 0;
    for _ in 0..20 {
        let mut s = raw(&socket);
        let e = expect_error(&mut s, ErrorCode::Busy, "over the limit");
        assert_eq!(e.retry_after_secs, Some(1), "{e:?}");
        expect_dropped(&mut s, Duration::from_secs(5), "over the limit");
        busy += 1;
    }
    // A real client (which writes its hello before reading) gets the busy
    // answer too, as a typed error with the retry hint — never a broken pipe
    // because the broker closed before the hello arrived. (Without a budget
    // for waiting it out, which e2e_busy_retry.rs covers.)
    for _ in 0..50 {
        match Client::builder()
            .socket(&socket)
            .busy_retry_budget(Duration::ZERO)
            .connect()
        {
            Err(oauth_broker_client::Error::Busy { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(1)));
                busy += 1;
            }
            other => panic!("expected busy, got {other:?}"),
        }
    }
    // One warning for the whole flood, not one per connection.
    let logs = rig.logs();
    assert_eq!(
        logs.matches("answering busy").count(),
        1,
        "busy answers flooded the log:\n{logs}"
    );

    // The login completes; its connection is idle again and makes room.
    assert!(rig.fake.approve_device(&user_code));
    loop {
        match read_frame(&mut login) {
            Some(Response::Login(LoginEvent::LoggedIn { .. })) => break,
            Some(Response::Login(LoginEvent::Error { message, .. })) => {
                panic!("login failed: {message}")
            }
            Some(Response::Login(_)) => {}
            other => panic!("expected login events, got {other:?}"),
        }
    }
    // (Until the broker has marked the login's connection idle, newcomers
    // still get `busy`; those count too.)
    crate::common::eventually("a slot for a client", Duration::from_secs(10), || {
        match Client::builder()
            .socket(&socket)
            .busy_retry_budget(Duration::ZERO)
            .connect()
        {
            Ok(mut client) => client.token(Duration::ZERO).ok(),
            Err(oauth_broker_client::Error::Busy { .. }) => {
                busy += 1;
                None
            }
            Err(e) => panic!("expected a client or busy, got {e:?}"),
        }
    });
    assert_alive(&mut rig);

    // The count of the busy answers not logged one by one is logged as one
    // summary line (at the latest when the broker stops).
    rig.broker.terminate().expect("brokerd stops");
    let logs = rig.logs();
    let summarized: u64 = logs
        .lines()
        .filter_map(|l| {
            let (count, _) = l.split_once(" more connections answered busy")?;
            count
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(
        summarized + 1,
        busy,
        "busy answers not accounted for:\n{logs}"
    );
    println!("RELIABILITY socket.limit busy_answers={busy}");
}

#[test]
fn random_bytes_from_many_clients_never_disturb_the_broker() {
    let mut rig = spec(512).logged_in();
    let socket = rig.broker.socket_path().to_path_buf();
    let witness = Witness::start(socket.clone());
    let seed: u64 = rand::rng().random();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sent = 0;
    let mut answered = 0;
    for i in 0..400 {
        let mut s = raw(&socket);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if i % 2 == 1 {
            hello(&mut s);
        }
        let len = rng.random_range(1..256);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if i % 4 < 2 {
            // A well-framed random payload half of the time.
            bytes = frame(&bytes);
        }
        send(&mut s, &bytes);
        sent += 1;
        // Whatever it was, the broker answers with an error frame, or waits
        // for more bytes and drops the client after the request timeout. It
        // never answers random bytes with anything but an error.
        let _ = s.shutdown(std::net::Shutdown::Write);
        loop {
            match read_frame(&mut s) {
                Some(Response::Error(e)) => {
                    assert!(
                        matches!(
                            e.code,
                            ErrorCode::BadRequest | ErrorCode::UnsupportedProtocol
                        ),
                        "seed {seed}, input {i}: {e:?}"
                    );
                    answered += 1;
                }
                Some(other) => panic!("seed {seed}, input {i}: answered {other:?}"),
                None => break,
            }
        }
    }
    let served = witness.finish();
    assert_alive(&mut rig);
    println!(
        "RELIABILITY socket.random seed={seed} malformed_inputs_sent={sent} error_frames={answered} witness_served={served}"
    );
}
