//! A scripted stand-in for `brokerd`, speaking the real protocol on a Unix socket
//! in a temporary directory. It is a test double for the client's own tests only;
//! the client is tested against the real broker end to end elsewhere.
#![allow(dead_code)]

use oauth_broker_proto::{
    encode_frame, ErrorFrame, FrameBuffer, Hello, Request, Response, SecretString, TokenGrant,
    Welcome, PROTOCOL_VERSION,
};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the fake does in answer to one request.
pub enum Step {
    /// Send this response.
    Send(Response),
    /// Send these raw bytes (for malformed frames).
    Raw(Vec<u8>),
    /// Wait.
    Sleep(Duration),
    /// Close the connection.
    Close,
}

type Handler = dyn Fn(&Request) -> Vec<Step> + Send + Sync;
/// The answer to the hello of the n-th connection (from 0).
type HelloReplies = dyn Fn(usize) -> Option<Response> + Send + Sync;

/// What the fake saw.
#[derive(Default)]
pub struct Log {
    pub hellos: Vec<Hello>,
    pub requests: Vec<String>,
    pub token_ids: Vec<String>,
    pub min_valid: Vec<u64>,
    pub connections: usize,
}

pub struct FakeBroker {
    pub path: PathBuf,
    pub log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<UnixStream>>>,
    _dir: Option<tempfile::TempDir>,
}

impl FakeBroker {
    /// A fake in a fresh temporary directory.
    pub fn start(handler: impl Fn(&Request) -> Vec<Step> + Send + Sync + 'static) -> FakeBroker {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.sock");
        let mut fake = FakeBroker::start_at(&path, welcome_reply(), handler);
        fake._dir = Some(dir);
        fake
    }

    /// A fake answering `Hello` with `hello_reply` (e.g. an error frame).
    pub fn start_with_hello(
        hello_reply: Option<Response>,
        handler: impl Fn(&Request) -> Vec<Step> + Send + Sync + 'static,
    ) -> FakeBroker {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.sock");
        let mut fake = FakeBroker::start_at(&path, hello_reply, handler);
        fake._dir = Some(dir);
        fake
    }

    /// A fake answering the hello of its n-th connection (from 0) with
    /// `hello_reply(n)`, e.g. `busy` for the first few.
    pub fn start_with_hellos(
        hello_reply: impl Fn(usize) -> Option<Response> + Send + Sync + 'static,
        handler: impl Fn(&Request) -> Vec<Step> + Send + Sync + 'static,
    ) -> FakeBroker {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.sock");
        let mut fake = FakeBroker::start_at_with_hellos(&path, Arc::new(hello_reply), handler);
        fake._dir = Some(dir);
        fake
    }

    /// A fake on `path` (the caller owns the directory), e.g. a restarted broker.
    pub fn start_at(
        path: &Path,
        hello_reply: Option<Response>,
        handler: impl Fn(&Request) -> Vec<Step> + Send + Sync + 'static,
    ) -> FakeBroker {
        FakeBroker::start_at_with_hellos(path, Arc::new(move |_| hello_reply.clone()), handler)
    }

    fn start_at_with_hellos(
        path: &Path,
        hello_replies: Arc<HelloReplies>,
        handler: impl Fn(&Request) -> Vec<Step> + Send + Sync + 'static,
    ) -> FakeBroker {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let (log, stop, streams) = (log.clone(), stop.clone(), streams.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    streams.lock().unwrap().push(stream.try_clone().unwrap());
                    let index = {
                        let mut log = log.lock().unwrap();
                        log.connections += 1;
                        log.connections - 1
                    };
                    let (log, handler, hello_reply) =
                        (log.clone(), handler.clone(), hello_replies(index));
                    thread::spawn(move || serve(stream, log, handler, hello_reply));
                }
            });
        }
        FakeBroker {
            path: path.to_path_buf(),
            log,
            stop,
            streams,
            _dir: None,
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().requests.clone()
    }

    pub fn connections(&self) -> usize {
        self.log.lock().unwrap().connections
    }

    /// Stops listening and closes every connection, like a broker that exits.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path); // wake the accept loop
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        if !self.stop.load(Ordering::SeqCst) {
            self.shutdown();
        }
    }
}

fn serve(
    mut stream: UnixStream,
    log: Arc<Mutex<Log>>,
    handler: Arc<Handler>,
    hello_reply: Option<Response>,
) {
    // One buffer for the connection's life: a client may send its hello and
    // first request in one write.
    let mut inbox = FrameBuffer::new(4096);
    let Some(payload) = read_frame(&mut stream, &mut inbox) else {
        return;
    };
    let Ok(hello) = serde_json::from_slice::<Hello>(&payload) else {
        return;
    };
    log.lock().unwrap().hellos.push(hello);
    match hello_reply {
        Some(reply @ Response::Welcome(_)) => write(&mut stream, &reply),
        Some(reply) => {
            write(&mut stream, &reply);
            return;
        }
        None => {} // never answer the hello
    }
    while let Some(payload) = read_frame(&mut stream, &mut inbox) {
        let Ok(request) = serde_json::from_slice::<Request>(&payload) else {
            return;
        };
        {
            let mut log = log.lock().unwrap();
            log.requests.push(request.name().to_string());
            match &request {
                Request::Unauthorized { token_id } => log.token_ids.push(token_id.clone()),
                Request::Token { min_valid_secs, .. } => log.min_valid.push(*min_valid_secs),
                _ => {}
            }
        }
        for step in handler(&request) {
            match step {
                Step::Send(response) => write(&mut stream, &response),
                Step::Raw(bytes) => {
                    let _ = stream.write_all(&bytes);
                }
                Step::Sleep(d) => thread::sleep(d),
                Step::Close => {
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        }
    }
}

fn read_frame(stream: &mut UnixStream, inbox: &mut FrameBuffer) -> Option<Vec<u8>> {
    loop {
        match inbox.next_frame(<[u8]>::to_vec) {
            Ok(Some(payload)) => return Some(payload),
            Ok(None) => {}
            Err(_) => return None,
        }
        let n = stream.read(inbox.spare()).ok()?;
        if n == 0 {
            return None;
        }
        inbox.filled(n);
    }
}

fn write(stream: &mut UnixStream, response: &Response) {
    let _ = stream.write_all(&encode_frame(response).unwrap());
}

pub fn welcome_reply() -> Option<Response> {
    Some(Response::Welcome(Welcome {
        protocol: PROTOCOL_VERSION,
        broker_version: "9.9.9-fake".into(),
        account: "test".into(),
    }))
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token response whose token is `secret`.
pub fn grant(secret: &str) -> Response {
    let access_token = SecretString::from(secret.to_string());
    Response::Token(TokenGrant {
        token_id: oauth_broker_proto::token_fingerprint(&access_token),
        access_token,
        token_type: "Bearer".into(),
        expires_at: now() + 3600,
        scopes: vec!["openid".into(), "offline_access".into()],
        metadata: [("account_id".to_string(), "acct-42".to_string())].into(),
        id_token: None,
        obtained_at: None,
        refresh_token_id: None,
    })
}

pub fn error(frame: ErrorFrame) -> Vec<Step> {
    vec![Step::Send(Response::Error(frame))]
}

/// A handler answering every token request with `secret`, and status/logout.
pub fn simple(secret: &'static str) -> impl Fn(&Request) -> Vec<Step> + Send + Sync {
    move |request| match request {
        Request::Token { .. } | Request::Unauthorized { .. } => vec![Step::Send(grant(secret))],
        Request::Logout => vec![Step::Send(Response::LoggedOut { revoked: true })],
        Request::Import { .. } => vec![Step::Send(Response::Imported {
            expires_at: 1_700_000_000,
        })],
        _ => error(ErrorFrame::new(
            oauth_broker_proto::ErrorCode::BadRequest,
            "not in this fake",
        )),
    }
}

/// A listening socket that never accepts, with its backlog already full.
#[cfg(target_os = "linux")]
pub struct FullBacklog {
    pub path: PathBuf,
    _listener: std::os::fd::OwnedFd,
    _fillers: Vec<std::os::fd::OwnedFd>,
    _dir: tempfile::TempDir,
}

#[cfg(target_os = "linux")]
impl FullBacklog {
    pub fn new() -> FullBacklog {
        use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
        use std::os::fd::AsRawFd;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.sock");
        let addr = UnixAddr::new(&path).unwrap();
        let unix_socket =
            |flags| socket::socket(AddressFamily::Unix, SockType::Stream, flags, None).unwrap();
        let listener = unix_socket(SockFlag::empty());
        socket::bind(listener.as_raw_fd(), &addr).unwrap();
        socket::listen(&listener, Backlog::new(0).unwrap()).unwrap();
        let mut fillers = Vec::new();
        loop {
            let fd = unix_socket(SockFlag::SOCK_NONBLOCK);
            if socket::connect(fd.as_raw_fd(), &addr).is_err() {
                break; // EAGAIN: the backlog is full
            }
            fillers.push(fd);
            assert!(fillers.len() < 64, "backlog never filled up");
        }
        FullBacklog {
            path,
            _listener: listener,
            _fillers: fillers,
            _dir: dir,
        }
    }
}

/// Asserts that `err` is a timeout while waiting for `operation` (`connect`,
/// `handshake`, `request`, `login`).
#[track_caller]
pub fn assert_timeout(err: &oauth_broker_client::Error, operation: &str) {
    assert!(
        matches!(
            err,
            oauth_broker_client::Error::Timeout { operation: op, .. } if *op == operation
        ),
        "{err:?}"
    );
}
