//! [`RawConnection`]: exactly one socket connection to the broker, speaking
//! the wire protocol directly.
//!
//! Why not the client crate here: its `Client` reconnects transparently,
//! which is right for programs but would hide what this test must prove —
//! that a client stays connected, on one and the same connection, while the
//! grant is revoked at the server and a new login replaces it. Any
//! reconnect would surface here as an I/O error.

use oauth_broker_proto::{decode_payload, encode_frame, Hello, Request, Response};
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// One persistent connection.
pub struct RawConnection {
    stream: UnixStream,
}

impl RawConnection {
    /// Connects and completes the handshake.
    pub fn open(socket: &Path) -> RawConnection {
        let stream = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut conn = RawConnection { stream };
        conn.send_frame(&Hello::new("interop-keeper"));
        match conn.recv() {
            Response::Welcome(_) => conn,
            other => panic!("handshake answered {other:?}"),
        }
    }

    /// Sends one request on this connection and reads its one answer.
    pub fn request(&mut self, request: &Request) -> Response {
        self.send_frame(request);
        self.recv()
    }

    fn send_frame<T: serde::Serialize>(&mut self, message: &T) {
        let frame = encode_frame(message).expect("encode");
        self.stream
            .write_all(&frame)
            .expect("the broker closed the kept connection (write failed)");
    }

    fn recv(&mut self) -> Response {
        let mut header = [0u8; 4];
        self.stream
            .read_exact(&mut header)
            .expect("the broker closed the kept connection (read failed)");
        let len = u32::from_be_bytes(header) as usize;
        let mut payload = vec![0u8; len];
        self.stream
            .read_exact(&mut payload)
            .expect("the broker closed the kept connection mid-frame");
        decode_payload(&payload).expect("a valid response frame")
    }
}
