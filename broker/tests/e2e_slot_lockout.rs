//! Connections that hold a slot without using it cannot lock clients out.
//!
//! At the connection limit (the default 512 here) the connection idle the
//! longest is closed to admit a new one, and a connection must complete its
//! hello within the request timeout of being accepted. So beside 2,000
//! connections that said hello and then idle, or 2,000 that never say a word
//! and are reopened as fast as they are dropped, a client still gets a token
//! at once — through the client crate and through `brokerctl token`.

use crate::common::{fake_with_ttl, stderr, Broker};
use oauth_broker_client::proto::{
    encode_frame, frame_len, Hello, Request, Response, FRAME_HEADER_LEN,
};
use oauth_broker_client::{Client, ExposeSecret};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 2000;
/// The broker's default `max_connections`.
const LIMIT: usize = 512;
/// A functional bound: serving takes milliseconds; before eviction it took
/// until the idle timeout (600 s) or forever.
const SERVED_WITHIN: Duration = Duration::from_secs(2);
/// The silent abuser reopens a dropped connection once it is this old: as
/// often as the broker's default request timeout lets it keep one.
const RENEW_AFTER: Duration = Duration::from_secs(5);

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
        setrlimit(Resource::RLIMIT_NOFILE, needed, hard).unwrap();
    }
}

/// A broker with the default `[server]` limits, logged in.
fn setup() -> Broker {
    // Both tests of this file may run at once.
    ensure_open_files(2 * CONNECTIONS as u64 + 1024);
    Broker::logged_in(fake_with_ttl(Duration::from_secs(3600)))
}

/// The next frame, or `None` if the broker closed the connection.
fn read_frame(s: &mut UnixStream) -> Option<Response> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    s.read_exact(&mut header).ok()?;
    let mut payload = vec![0u8; frame_len(header).expect("frame length")];
    s.read_exact(&mut payload).ok()?;
    Some(serde_json::from_slice(&payload).expect("a well-formed frame"))
}

/// Blocks until the broker closes `s` (fails the test after 10 s).
fn expect_closed(s: &mut UnixStream, what: &str) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(0) => {}
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
        other => panic!("{what}: expected the broker to close the connection, got {other:?}"),
    }
}

/// A token through the client crate and through `brokerctl token`, each
/// within `SERVED_WITHIN`.
fn assert_served_promptly(setup: &Broker, what: &str) {
    let started = Instant::now();
    let token = Client::builder()
        .socket(setup.broker.socket_path())
        .client_name("lockout-test")
        .request_timeout(Duration::from_secs(30))
        .connect()
        .and_then(|mut client| client.token(Duration::ZERO))
        .unwrap_or_else(|e| panic!("{what}: no token through the client crate: {e}"));
    let took = started.elapsed();
    assert!(
        took < SERVED_WITHIN,
        "{what}: the client crate waited {took:?}"
    );
    assert!(setup.fake.is_access_token_valid(token.expose_secret()));

    let started = Instant::now();
    let out = setup.ctl(&["token"]);
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{what}: brokerctl token failed: {}",
        stderr(&out)
    );
    assert!(
        took < SERVED_WITHIN,
        "{what}: brokerctl token took {took:?}"
    );
    println!("LOCKOUT {what}: served in {:?}", started.elapsed());
}

#[test]
fn two_thousand_idle_connections_do_not_lock_clients_out() {
    let setup = setup();
    let socket = setup.broker.socket_path().to_path_buf();
    let hello = encode_frame(&Hello::new("idler")).unwrap();
    let mut welcomed = 0;
    let mut idle: Vec<UnixStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut s = UnixStream::connect(&socket).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // Without eviction the broker answers `busy` and closes; the
            // write may then fail, which is that failure, not the test's.
            let _ = s.write_all(&hello);
            if matches!(read_frame(&mut s), Some(Response::Welcome(_))) {
                welcomed += 1;
            }
            s
        })
        .collect();

    assert_served_promptly(&setup, "beside 2,000 idle connections");
    assert_eq!(
        welcomed, CONNECTIONS,
        "every connection was welcomed: older idle ones made room"
    );
    // The oldest made room; the newest are still served.
    expect_closed(&mut idle[0], "the connection idle the longest");
    let newest = idle.last_mut().unwrap();
    newest
        .write_all(&encode_frame(&Request::Status).unwrap())
        .unwrap();
    assert!(matches!(read_frame(newest), Some(Response::Status(_))));
    // Never more than the limit held open by the broker.
    let held = open_sockets(setup.broker.pid());
    assert!(
        held <= LIMIT + 16,
        "brokerd holds {held} sockets with a limit of {LIMIT}"
    );
}

/// Keeps `CONNECTIONS` connections open that never send anything, reopening
/// each one the broker drops once it is `RENEW_AFTER` old. Reports each
/// completed wave of renewals (as many as the broker cannot hold).
fn silent_abuser(
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<usize>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let open = |socket: &Path| {
            let s = UnixStream::connect(socket).ok()?;
            s.set_nonblocking(true).ok()?;
            Some(s)
        };
        let mut conns: Vec<(Option<UnixStream>, Instant)> = (0..CONNECTIONS)
            .map(|_| (open(&socket), Instant::now()))
            .collect();
        let _ = ready.send(0);
        let wave = CONNECTIONS - LIMIT;
        let mut renewed = 0;
        while !stop.load(Ordering::SeqCst) {
            let mut byte = [0u8; 1];
            for (conn, opened) in conns.iter_mut() {
                if let Some(s) = conn {
                    match s.read(&mut byte) {
                        Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                        // Closed (or an unexpected answer): drop it.
                        _ => *conn = None,
                    }
                }
                if opened.elapsed() >= RENEW_AFTER {
                    *conn = open(&socket);
                    *opened = Instant::now();
                    renewed += 1;
                    if renewed % wave == 0 {
                        let _ = ready.send(renewed);
                    }
                }
            }
            // The abuser's own pace, so that it does not starve the machine;
            // nothing waits on it.
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[test]
fn two_thousand_silent_connections_renewed_as_they_are_dropped_do_not_lock_clients_out() {
    let setup = setup();
    let socket = setup.broker.socket_path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let (ready, waves) = mpsc::channel();
    let abuser = silent_abuser(socket, stop.clone(), ready);

    waves
        .recv_timeout(Duration::from_secs(60))
        .expect("the silent connections are open");
    assert_served_promptly(&setup, "beside 2,000 silent connections");
    let renewed = waves
        .recv_timeout(Duration::from_secs(60))
        .expect("a wave of renewed connections");
    assert_served_promptly(
        &setup,
        &format!("beside silent connections after {renewed} renewals"),
    );

    stop.store(true, Ordering::SeqCst);
    abuser.join().expect("abuser");
}

#[test]
fn the_hello_must_be_complete_within_the_request_timeout_of_the_accept() {
    // A hello that starts late: the old rule restarted the clock when the
    // frame began, so a slow client could hold its slot twice as long.
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
    let setup = Broker::builder()
        .fake(fake_with_ttl(Duration::from_secs(3600)))
        .server_toml(&format!(
            "request_timeout_ms = {}\n",
            REQUEST_TIMEOUT.as_millis()
        ))
        .logged_in();
    let socket = setup.broker.socket_path().to_path_buf();

    let mut s = UnixStream::connect(&socket).expect("connect");
    let opened = Instant::now();
    // The abuser's pace: two thirds of the timeout in silence, then one byte
    // of the hello; the rest never comes.
    std::thread::sleep(REQUEST_TIMEOUT * 2 / 3);
    let hello = encode_frame(&Hello::new("late")).unwrap();
    let _ = s.write_all(&hello[..1]);
    expect_closed(&mut s, "a hello begun late");
    let dropped_after = opened.elapsed();
    // Dropped at the request timeout after the accept, not a whole request
    // timeout after the first byte (at 5 s).
    assert!(
        dropped_after < REQUEST_TIMEOUT + REQUEST_TIMEOUT / 2,
        "dropped after {dropped_after:?}"
    );
    println!("LOCKOUT late hello dropped after {dropped_after:?}");
    setup.client().token(Duration::ZERO).expect("still serving");
}

/// How many sockets `pid` has open.
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}
