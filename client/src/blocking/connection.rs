//! One framed connection to the broker over a std `UnixStream`.
//!
//! The hot path — a token request on an open connection — costs two system
//! calls: one `send` and, usually, one `read` that brings the whole answer into
//! a buffer kept for the connection's life. The socket timeouts that bound
//! each call are re-armed only when the deadline they must respect changed
//! (see [`ArmedTimeout`]), not before every call as a naive loop would; every
//! request on a connection with the default timeouts has the same deadline
//! length, so they are set once.

use crate::deadline::Deadline;
use crate::{exchange, peer, Error};
use oauth_broker_proto::{
    decode_payload, encode_frame, frame_len, FrameError, Hello, Response, TokenGrant, Welcome,
    FRAME_HEADER_LEN,
};
use secrecy::zeroize::Zeroize;
use serde::Serialize;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Bytes read at once: a whole token answer (1–3 KiB) in one call.
const READ_CHUNK: usize = 8 * 1024;

/// A connection that completed the handshake.
///
/// Its `Debug` (part of the public `Client`'s) shows how much is buffered, never
/// the bytes: they are answers, i.e. access tokens.
pub(crate) struct Connection {
    stream: UnixStream,
    /// Received bytes not yet consumed: `inbox[start..end]`. Zero-initialised
    /// space after `end` is where the next read goes. Consumed bytes are zeroed
    /// at once, so no token outlives its frame in here.
    inbox: Vec<u8>,
    start: usize,
    end: usize,
    read_timeout: ArmedTimeout,
    write_timeout: ArmedTimeout,
}

impl Connection {
    /// Connects and performs the handshake, all within `timeout`.
    pub(crate) fn open(
        path: &Path,
        client_name: &str,
        timeout: Duration,
    ) -> Result<(Connection, Welcome), Error> {
        let deadline = Deadline::after(timeout, "connect");
        let stream = connect(path, deadline.remaining()?).map_err(|source| {
            if is_timeout(&source) {
                deadline.expired()
            } else {
                Error::Unreachable {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        // Before anything is sent: the socket might be an impostor's.
        peer::check(path, peer::peer_uid(&stream).map_err(io_error)?)?;
        let mut conn = Connection {
            stream,
            inbox: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            read_timeout: ArmedTimeout::default(),
            // `connect` set the send timeout to the connect timeout.
            write_timeout: ArmedTimeout::unknown(),
        };
        let handshake = Deadline::after(deadline.remaining()?, "handshake");
        conn.send(&Hello::new(client_name), &handshake)?;
        let welcome = exchange::welcome(conn.recv(&handshake)?)?;
        Ok((conn, welcome))
    }

    /// Writes one frame.
    pub(crate) fn send<T: Serialize>(
        &mut self,
        message: &T,
        deadline: &Deadline,
    ) -> Result<(), Error> {
        let frame = encode_frame(message).map_err(|e| match e {
            FrameError::TooLarge { len, max } => Error::Config {
                message: format!("request of {len} bytes exceeds the {max} byte frame limit"),
            },
            FrameError::Malformed(_) => Error::protocol("request could not be encoded"),
        })?;
        if let Some(timeout) = self.write_timeout.rearm(deadline.remaining()?) {
            self.stream
                .set_write_timeout(Some(timeout))
                .map_err(io_error)?;
        }
        write_all(&self.stream, &frame).map_err(|e| transport_error(e, deadline))
    }

    /// Reads one frame, waiting until `deadline` at most.
    pub(crate) fn recv(&mut self, deadline: &Deadline) -> Result<Response, Error> {
        while self.end - self.start < FRAME_HEADER_LEN {
            self.fill(FRAME_HEADER_LEN, deadline)?;
        }
        let header: [u8; FRAME_HEADER_LEN] = self.inbox[self.start..self.start + FRAME_HEADER_LEN]
            .try_into()
            .expect("four header bytes");
        let len = frame_len(header)
            .map_err(|_| exchange::too_large(u32::from_be_bytes(header) as usize))?;
        let total = FRAME_HEADER_LEN + len;
        while self.end - self.start < total {
            self.fill(total, deadline)?;
        }
        let payload = &self.inbox[self.start + FRAME_HEADER_LEN..self.start + total];
        let parsed = decode_response(payload).map_err(|_| exchange::malformed());
        self.inbox[self.start..self.start + total].zeroize();
        self.start += total;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        parsed
    }

    /// Reads whatever is available (at least one byte) into the inbox, making
    /// room for a frame of `frame_total` bytes first.
    fn fill(&mut self, frame_total: usize, deadline: &Deadline) -> Result<(), Error> {
        if self.inbox.len() - self.start < frame_total {
            // Move the unread bytes to the front and grow to the frame's size
            // (at most one maximal frame: `frame_len` refused larger ones).
            // The moved bytes' old copies are zeroed, and growing copies into
            // a new buffer so that the old one is zeroed before it is freed.
            self.inbox.copy_within(self.start..self.end, 0);
            let unread = self.end - self.start;
            self.inbox[unread..self.end].zeroize();
            self.end = unread;
            self.start = 0;
            if self.inbox.len() < frame_total {
                let mut bigger = vec![0; frame_total];
                bigger[..unread].copy_from_slice(&self.inbox[..unread]);
                self.inbox.zeroize();
                self.inbox = bigger;
            }
        }
        loop {
            // A trickling peer cannot stretch the exchange beyond the deadline:
            // each further read gets only what is left of it.
            if let Some(timeout) = self.read_timeout.rearm(deadline.remaining()?) {
                self.stream
                    .set_read_timeout(Some(timeout))
                    .map_err(io_error)?;
            }
            match self.stream.read(&mut self.inbox[self.end..]) {
                Ok(0) => return Err(io_error(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(transport_error(e, deadline)),
            }
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("stream", &self.stream)
            .field("buffered_bytes", &(self.end - self.start))
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    /// Unread answers may hold tokens: zero them before the memory is freed.
    fn drop(&mut self) {
        self.inbox.zeroize();
    }
}

/// Parses an answer. A token answer — the hot path — is parsed straight into
/// its [`TokenGrant`] when the tag comes first, as the broker always sends it:
/// serde parses internally tagged enums by first copying the whole object into
/// an intermediate tree, which costs more than the parse itself. Anything else,
/// or a token answer in another key order, takes the general path.
fn decode_response(payload: &[u8]) -> Result<Response, FrameError> {
    const TOKEN_TAG: &[u8] = br#"{"type":"token","#;
    if payload.starts_with(TOKEN_TAG) {
        // The extra `type` key is ignored like any unknown field.
        if let Ok(grant) = serde_json::from_slice::<TokenGrant>(payload) {
            return Ok(Response::Token(grant));
        }
    }
    decode_payload(payload)
}

/// The timeout currently set on one direction of the socket.
///
/// A socket timeout bounds each blocking call, and a call must end by its
/// exchange's deadline. So before a call the timeout must lie between the time
/// left and that plus [`ArmedTimeout::SLACK`] — the kernel rounds it to its
/// timer tick anyway. Only when it does not is it set again (one system call),
/// rounded up to whole milliseconds so that the next request, whose deadline
/// is the same length to within microseconds, finds it still fitting.
#[derive(Debug, Default, Clone, Copy)]
struct ArmedTimeout {
    current: Option<Duration>,
}

impl ArmedTimeout {
    /// How far past its deadline one call may end.
    const SLACK: Duration = Duration::from_millis(2);

    /// The socket's timeout is not known (it must be set before the next call).
    fn unknown() -> Self {
        ArmedTimeout { current: None }
    }

    /// The timeout to set before a call with `left` until the deadline, or
    /// `None` when the one in place fits.
    fn rearm(&mut self, left: Duration) -> Option<Duration> {
        if self
            .current
            .is_some_and(|t| t >= left && t <= left + Self::SLACK)
        {
            return None;
        }
        let millis = left.as_nanos().div_ceil(1_000_000).max(1);
        let timeout = Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX));
        self.current = Some(timeout);
        Some(timeout)
    }
}

fn io_error(source: io::Error) -> Error {
    Error::Io { source }
}

/// Socket timeouts surface as `WouldBlock` (or `TimedOut`): report them as the
/// deadline's timeout, everything else as I/O.
fn transport_error(source: io::Error, deadline: &Deadline) -> Error {
    if is_timeout(&source) {
        deadline.expired()
    } else {
        io_error(source)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Connects with a bound on the time spent.
///
/// Connecting to a Unix socket nobody listens on fails at once, but when the
/// broker's listen backlog is full a blocking connect waits for room. Linux
/// bounds that wait by the socket's send timeout, so the socket is created by
/// hand to set it before connecting (std's `UnixStream::connect` cannot).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn connect(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
    use nix::sys::time::TimeVal;
    use std::os::fd::AsRawFd;

    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // A zero timeout means "forever" to the kernel.
    let timeout = timeout.max(Duration::from_millis(1));
    let timeval = TimeVal::new(
        timeout.as_secs().try_into().unwrap_or(i32::MAX.into()),
        timeout.subsec_micros().into(),
    );
    socket::setsockopt(&fd, sockopt::SendTimeout, &timeval)?;
    let addr = UnixAddr::new(path)?;
    socket::connect(fd.as_raw_fd(), &addr)?;
    Ok(UnixStream::from(fd))
}

/// Elsewhere std's connect is used; it returns at once unless the backlog is full.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn connect(path: &Path, _timeout: Duration) -> io::Result<UnixStream> {
    UnixStream::connect(path)
}

/// Writes everything without raising `SIGPIPE` when the broker went away: a
/// library must not kill a host program that did not ignore the signal.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn write_all(stream: &UnixStream, mut buf: &[u8]) -> io::Result<()> {
    use nix::errno::Errno;
    use nix::sys::socket::{send, MsgFlags};
    use std::os::fd::AsRawFd;

    while !buf.is_empty() {
        match send(stream.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn write_all(mut stream: &UnixStream, buf: &[u8]) -> io::Result<()> {
    use std::io::Write;
    stream.write_all(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_proto::{ErrorCode, ErrorFrame};
    use std::io::Write;
    use std::time::Instant;

    /// A connection over one end of a socket pair, and the broker's end.
    fn pair() -> (Connection, UnixStream) {
        let (client, broker) = UnixStream::pair().unwrap();
        let conn = Connection {
            stream: client,
            inbox: vec![0; 16],
            start: 0,
            end: 0,
            read_timeout: ArmedTimeout::default(),
            write_timeout: ArmedTimeout::default(),
        };
        (conn, broker)
    }

    fn error_frame(message: &str) -> Vec<u8> {
        encode_frame(&Response::Error(ErrorFrame::new(ErrorCode::Busy, message))).unwrap()
    }

    fn message_of(response: Response) -> String {
        match response {
            Response::Error(frame) => frame.message,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn frames_arriving_together_are_kept_for_the_next_recv() {
        let (mut conn, mut broker) = pair();
        let mut bytes = error_frame("first");
        bytes.extend(error_frame("second, longer than the initial inbox"));
        broker.write_all(&bytes).unwrap();
        let deadline = Deadline::after(Duration::from_secs(5), "request");
        assert_eq!(message_of(conn.recv(&deadline).unwrap()), "first");
        assert_eq!(
            message_of(conn.recv(&deadline).unwrap()),
            "second, longer than the initial inbox"
        );
        assert_eq!((conn.start, conn.end), (0, 0));
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn consumed_answers_are_zeroed_and_debug_shows_no_bytes() {
        let (mut conn, mut broker) = pair();
        conn.inbox = vec![0; READ_CHUNK];
        let mut bytes = error_frame("first-SECRET-A");
        bytes.extend(error_frame("second-SECRET-B"));
        broker.write_all(&bytes).unwrap();
        let deadline = Deadline::after(Duration::from_secs(5), "request");
        assert_eq!(message_of(conn.recv(&deadline).unwrap()), "first-SECRET-A");
        assert!(!contains(&conn.inbox, b"SECRET-A"));
        // One read brought both frames: the second waits in the inbox...
        assert!(contains(&conn.inbox, b"SECRET-B"));
        // ...and `Debug` shows neither it nor its bytes, only how many there are.
        let debug = format!("{conn:?} {conn:#?}");
        let as_numbers = format!("{:?}", b"SECRET-B".as_slice()).replace(' ', "");
        let as_numbers = as_numbers.trim_matches(['[', ']']);
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(
            !debug
                .split_whitespace()
                .collect::<String>()
                .contains(as_numbers),
            "{debug}"
        );
        assert!(debug.contains(&format!("buffered_bytes: {}", conn.end - conn.start)));
        assert_eq!(message_of(conn.recv(&deadline).unwrap()), "second-SECRET-B");
        assert!(conn.inbox.iter().all(|&b| b == 0));
    }

    #[test]
    fn a_grown_inbox_holds_no_copy_of_consumed_answers() {
        let (mut conn, mut broker) = pair();
        // Longer than the 16 byte inbox: read in pieces, moved and grown.
        broker
            .write_all(&error_frame("a message longer than sixteen bytes, SECRET"))
            .unwrap();
        let deadline = Deadline::after(Duration::from_secs(5), "request");
        conn.recv(&deadline).unwrap();
        assert!(conn.inbox.len() > 16);
        assert!(conn.inbox.iter().all(|&b| b == 0));
    }

    #[test]
    fn a_frame_split_across_reads_is_reassembled() {
        let (mut conn, mut broker) = pair();
        let bytes = error_frame("split in three pieces");
        let writer = std::thread::spawn(move || {
            for piece in [&bytes[..2], &bytes[2..9], &bytes[9..]] {
                broker.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
            broker
        });
        let deadline = Deadline::after(Duration::from_secs(5), "request");
        assert_eq!(
            message_of(conn.recv(&deadline).unwrap()),
            "split in three pieces"
        );
        drop(writer.join().unwrap());
    }

    #[test]
    fn a_trickling_peer_cannot_stretch_the_deadline() {
        let (mut conn, mut broker) = pair();
        let bytes = error_frame("never completes in time");
        let writer = std::thread::spawn(move || {
            for byte in &bytes {
                if broker.write_all(std::slice::from_ref(byte)).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let started = Instant::now();
        let deadline = Deadline::after(Duration::from_millis(300), "request");
        let err = conn.recv(&deadline).unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        // Bounded by the deadline (plus the re-arming slack and scheduling),
        // not by the per-read timeout times the number of reads.
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(conn);
        writer.join().unwrap();
    }

    #[test]
    fn token_answers_parse_the_same_on_the_fast_path() {
        use oauth_broker_proto::{ExposeSecret, SecretString};
        let grant = TokenGrant {
            access_token: SecretString::from("tok-123".to_owned()),
            token_type: "Bearer".into(),
            expires_at: 1_800_000_000,
            token_id: "0123456789ab".into(),
            scopes: vec!["openid".into()],
            metadata: [("account_id".to_string(), "acct".to_string())].into(),
        };
        let frame = encode_frame(&Response::Token(grant)).unwrap();
        let payload = &frame[FRAME_HEADER_LEN..];
        assert!(payload.starts_with(br#"{"type":"token","#));
        for parsed in [decode_response(payload), decode_payload(payload)] {
            let Ok(Response::Token(got)) = parsed else {
                panic!("not a token answer")
            };
            assert_eq!(got.access_token.expose_secret(), "tok-123");
            assert_eq!(got.expires_at, 1_800_000_000);
            assert_eq!(got.token_id, "0123456789ab");
            assert_eq!(got.scopes, ["openid"]);
            assert_eq!(got.metadata["account_id"], "acct");
        }
        // Another key order, an error frame and garbage take the general path.
        let reordered = br#"{"access_token":"t","expires_at":1,"token_id":"x","type":"token"}"#;
        assert!(matches!(decode_response(reordered), Ok(Response::Token(_))));
        let error = error_frame("nope");
        assert!(matches!(
            decode_response(&error[FRAME_HEADER_LEN..]),
            Ok(Response::Error(_))
        ));
        assert!(decode_response(br#"{"type":"token","access_token":"#).is_err());
    }

    #[test]
    fn a_closed_peer_is_an_io_error() {
        let (mut conn, broker) = pair();
        drop(broker);
        let deadline = Deadline::after(Duration::from_secs(5), "request");
        assert!(matches!(conn.recv(&deadline), Err(Error::Io { .. })));
    }

    #[test]
    fn a_fitting_timeout_is_not_set_again() {
        let mut t = ArmedTimeout::default();
        let full = Duration::from_secs(45);
        assert_eq!(t.rearm(full), Some(full));
        // The next request's deadline is microseconds shorter: still fits.
        assert_eq!(t.rearm(full - Duration::from_micros(30)), None);
        assert_eq!(t.rearm(full - Duration::from_micros(1900)), None);
    }

    #[test]
    fn a_shrinking_deadline_is_followed() {
        let mut t = ArmedTimeout::default();
        t.rearm(Duration::from_secs(45));
        // A later read of the same exchange, 3 s in: must not wait past it.
        assert_eq!(
            t.rearm(Duration::from_secs(42)),
            Some(Duration::from_secs(42))
        );
        // And a new, longer deadline must not time out early.
        assert_eq!(
            t.rearm(Duration::from_secs(45)),
            Some(Duration::from_secs(45))
        );
    }

    #[test]
    fn rounds_up_to_whole_milliseconds_and_never_to_zero() {
        let mut t = ArmedTimeout::unknown();
        assert_eq!(
            t.rearm(Duration::from_micros(1500)),
            Some(Duration::from_millis(2))
        );
        let mut t = ArmedTimeout::unknown();
        assert_eq!(
            t.rearm(Duration::from_nanos(1)),
            Some(Duration::from_millis(1))
        );
    }
}
