//! One framed connection to the broker over a std `UnixStream`.
//!
//! The hot path — a token request on an open connection — costs two system
//! calls: one `send` and, usually, one `read` that brings the whole answer into
//! the connection's [`FrameBuffer`] (the protocol crate's, which the broker and
//! the async client use too). A new connection sends its hello and first
//! request in one write and reads both answers, so a one-shot program pays one
//! round trip, not two. The socket timeouts that bound
//! each call are re-armed only when the deadline they must respect changed
//! (see [`ArmedTimeout`]), not before every call as a naive loop would; every
//! request on a connection with the default timeouts has the same deadline
//! length, so they are set once.

use crate::deadline::Deadline;
use crate::frames::{decode_response, push_frame, READ_CHUNK};
use crate::{exchange, peer, Error};
use oauth_broker_proto::{FrameBuffer, FrameError, Hello, Request, Response, Welcome};
use serde::Serialize;
use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A connection that completed the handshake.
///
/// Its `Debug` (part of the public `Client`'s) shows how much is buffered, never
/// the bytes: they are answers, i.e. access tokens.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: UnixStream,
    /// Received bytes not yet consumed (zeroed once consumed).
    inbox: FrameBuffer,
    read_timeout: ArmedTimeout,
    write_timeout: ArmedTimeout,
}

impl Connection {
    /// Connects and performs the handshake, all within `timeout`. With
    /// `first`, that request goes out in the same write as the hello; its
    /// answer is the next frame to [`Connection::recv`]. (If the broker refuses
    /// the hello, it has not acted on the request.)
    pub(crate) fn open(
        path: &Path,
        client_name: &str,
        timeout: Duration,
        first: Option<&Request>,
    ) -> Result<(Connection, Welcome), Error> {
        if let Some(message) = crate::discovery::socket_path_too_long(path) {
            return Err(Error::Config { message });
        }
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
            inbox: FrameBuffer::new(READ_CHUNK),
            read_timeout: ArmedTimeout::default(),
            // `connect` set the send timeout to the connect timeout.
            write_timeout: ArmedTimeout::unknown(),
        };
        let handshake = Deadline::after(deadline.remaining()?, "handshake");
        let mut frames = Vec::with_capacity(256);
        push_frame(&mut frames, &Hello::new(client_name))?;
        if let Some(request) = first {
            push_frame(&mut frames, request)?;
        }
        conn.write(&frames, &handshake)?;
        let welcome = exchange::welcome(conn.recv(&handshake)?)?;
        Ok((conn, welcome))
    }

    /// Writes one frame.
    pub(crate) fn send<T: Serialize>(
        &mut self,
        message: &T,
        deadline: &Deadline,
    ) -> Result<(), Error> {
        let mut frame = Vec::with_capacity(128);
        push_frame(&mut frame, message)?;
        self.write(&frame, deadline)
    }

    fn write(&mut self, bytes: &[u8], deadline: &Deadline) -> Result<(), Error> {
        if let Some(timeout) = self.write_timeout.rearm(deadline.remaining()?) {
            self.stream
                .set_write_timeout(Some(timeout))
                .map_err(io_error)?;
        }
        write_all(&self.stream, bytes).map_err(|e| transport_error(e, deadline))
    }

    /// Reads one frame, waiting until `deadline` at most.
    pub(crate) fn recv(&mut self, deadline: &Deadline) -> Result<Response, Error> {
        loop {
            match self.inbox.next_frame(decode_response) {
                Ok(Some(parsed)) => return parsed.map_err(|_| exchange::malformed()),
                Ok(None) => self.fill(deadline)?,
                Err(FrameError::TooLarge { len, .. }) => return Err(exchange::too_large(len)),
                Err(FrameError::Malformed(_)) => return Err(exchange::malformed()),
            }
        }
    }

    /// Reads whatever is available (at least one byte) into the inbox.
    fn fill(&mut self, deadline: &Deadline) -> Result<(), Error> {
        loop {
            // A trickling peer cannot stretch the exchange beyond the deadline:
            // each further read gets only what is left of it.
            if let Some(timeout) = self.read_timeout.rearm(deadline.remaining()?) {
                self.stream
                    .set_read_timeout(Some(timeout))
                    .map_err(io_error)?;
            }
            match self.stream.read(self.inbox.spare()) {
                Ok(0) => return Err(io_error(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => {
                    self.inbox.filled(n);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(transport_error(e, deadline)),
            }
        }
    }
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
    use oauth_broker_proto::{encode_frame, ErrorCode, ErrorFrame};
    use std::io::Write;
    use std::time::Instant;

    /// A connection over one end of a socket pair (with a small inbox, so that
    /// growing is exercised), and the broker's end.
    fn pair() -> (Connection, UnixStream) {
        let (client, broker) = UnixStream::pair().unwrap();
        let conn = Connection {
            stream: client,
            inbox: FrameBuffer::new(16),
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
        assert!(conn.inbox.is_empty());
    }

    #[test]
    fn debug_shows_how_much_is_buffered_never_the_bytes() {
        let (mut conn, mut broker) = pair();
        conn.inbox = FrameBuffer::new(READ_CHUNK);
        let mut bytes = error_frame("first-SECRET-A");
        bytes.extend(error_frame("second-SECRET-B"));
        broker.write_all(&bytes).unwrap();
        let deadline = Deadline::after(Duration::from_secs(5), "request");
        assert_eq!(message_of(conn.recv(&deadline).unwrap()), "first-SECRET-A");
        // One read brought both frames: the second waits in the inbox, and
        // `Debug` shows neither it nor its bytes, only how many there are.
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
        assert!(debug.contains(&format!("buffered_bytes: {}", conn.inbox.len())));
        assert!(!conn.inbox.is_empty());
        assert_eq!(message_of(conn.recv(&deadline).unwrap()), "second-SECRET-B");
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
    fn an_oversized_answer_is_a_protocol_error() {
        let (mut conn, mut broker) = pair();
        broker.write_all(&u32::MAX.to_be_bytes()).unwrap();
        let deadline = Deadline::after(Duration::from_secs(5), "request");
        let err = conn.recv(&deadline).unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
        assert!(err.to_string().contains(&u32::MAX.to_string()), "{err}");
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
