//! One framed connection to the broker over a std `UnixStream`.

use crate::deadline::Deadline;
use crate::{exchange, Error};
use oauth_broker_proto::{
    decode_payload, encode_frame, frame_len, FrameError, Hello, Response, Welcome, FRAME_HEADER_LEN,
};
use serde::Serialize;
use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A connection that completed the handshake.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: UnixStream,
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
        let mut conn = Connection { stream };
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
        self.stream
            .set_write_timeout(Some(deadline.remaining()?))
            .map_err(io_error)?;
        write_all(&self.stream, &frame).map_err(|e| transport_error(e, deadline))
    }

    /// Reads one frame, waiting until `deadline` at most.
    pub(crate) fn recv(&mut self, deadline: &Deadline) -> Result<Response, Error> {
        let mut header = [0u8; FRAME_HEADER_LEN];
        self.read_exact(&mut header, deadline)?;
        let len = frame_len(header)
            .map_err(|_| exchange::too_large(u32::from_be_bytes(header) as usize))?;
        let mut payload = vec![0u8; len];
        self.read_exact(&mut payload, deadline)?;
        decode_payload(&payload).map_err(|_| exchange::malformed())
    }

    fn read_exact(&mut self, mut buf: &mut [u8], deadline: &Deadline) -> Result<(), Error> {
        while !buf.is_empty() {
            // Re-arm the socket timeout with what is left, so a trickling peer
            // cannot stretch the exchange beyond the deadline.
            self.stream
                .set_read_timeout(Some(deadline.remaining()?))
                .map_err(io_error)?;
            match self.stream.read(buf) {
                Ok(0) => return Err(io_error(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(transport_error(e, deadline)),
            }
        }
        Ok(())
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
