//! The receiving side of framing, without I/O: bytes read from a stream go in,
//! whole frames come out.
//!
//! Every reader of the protocol — the broker's server connection, the blocking
//! client and the async client — keeps one [`FrameBuffer`] per connection and
//! drives it the same way:
//!
//! ```
//! use oauth_broker_proto::{decode_payload, encode_frame, FrameBuffer, Hello};
//! # use std::io::Read;
//! # let bytes = encode_frame(&Hello::new("doc")).unwrap();
//! # let mut stream: &[u8] = &bytes;
//! let mut inbox = FrameBuffer::new(1024);
//! let hello: Hello = loop {
//!     // A whole frame buffered (perhaps left over from the last read)?
//!     if let Some(parsed) = inbox.next_frame(decode_payload)? {
//!         break parsed?;
//!     }
//!     // No: read more into the room the buffer offers, and say how much came.
//!     let n = stream.read(inbox.spare()).unwrap();
//!     assert!(n > 0, "closed mid-frame");
//!     inbox.filled(n);
//! };
//! assert_eq!(hello.client, "doc");
//! # Ok::<(), oauth_broker_proto::FrameError>(())
//! ```
//!
//! Why one buffer type instead of a read loop per transport: the rules that
//! matter for safety live here once — an oversized length is refused from the
//! header alone, before a payload byte is buffered (so the buffer never grows
//! beyond one maximal frame); frames that arrive together in one read are
//! kept for the next call (a client may pipeline its hello and first request);
//! and consumed bytes are zeroed at once, so no token or refresh token outlives
//! its frame in memory.

use crate::frame::{frame_len, FrameError, FRAME_HEADER_LEN, MAX_FRAME_LEN};
use secrecy::zeroize::Zeroize;
use std::fmt;

/// Received bytes not yet consumed as frames. See the [module docs](self).
pub struct FrameBuffer {
    /// `bytes[start..end]` is unread; `bytes[end..]` is zeroed room for the
    /// next read; `bytes[..start]` was consumed and zeroed.
    bytes: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameBuffer {
    /// An empty buffer with room for `initial` bytes (it grows up to one
    /// maximal frame when a larger frame arrives).
    pub fn new(initial: usize) -> FrameBuffer {
        FrameBuffer {
            bytes: vec![0; initial.max(FRAME_HEADER_LEN)],
            start: 0,
            end: 0,
        }
    }

    /// Bytes received and not yet consumed.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// No bytes are waiting: the next frame has not started.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the next whole frame off the front, hands its payload to `parse`
    /// and returns what it made of it; the payload's bytes are zeroed
    /// afterwards.
    ///
    /// `Ok(None)`: more bytes are needed (read into [`FrameBuffer::spare`]).
    /// `Err`: the header announces more than [`MAX_FRAME_LEN`]; the stream cannot
    /// be resynchronised and must be closed.
    pub fn next_frame<R>(
        &mut self,
        parse: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, FrameError> {
        let Some(total) = self.frame_total()? else {
            return Ok(None);
        };
        if self.len() < total {
            return Ok(None);
        }
        let frame = self.start..self.start + total;
        let parsed = parse(&self.bytes[frame.start + FRAME_HEADER_LEN..frame.end]);
        self.bytes[frame.clone()].zeroize();
        self.start = frame.end;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(parsed))
    }

    /// Room for the next read, never empty. When the frame being received
    /// would not fit, the unread bytes are first moved to the front (their old
    /// copies zeroed), and the buffer grows to the frame's size if needed (the
    /// old allocation zeroed before it is freed).
    pub fn spare(&mut self) -> &mut [u8] {
        // Header known and over the cap: `next_frame` reports that; meanwhile
        // ask for no more than a header's worth.
        let total = self
            .frame_total()
            .ok()
            .flatten()
            .unwrap_or(FRAME_HEADER_LEN);
        let wanted = total.max(self.len() + 1);
        if self.bytes.len() - self.start < wanted {
            let unread = self.len();
            self.bytes.copy_within(self.start..self.end, 0);
            // The old copies: all of them when the ranges do not overlap,
            // else the part beyond the moved bytes.
            self.bytes[unread.max(self.start)..self.end].zeroize();
            self.start = 0;
            self.end = unread;
            if self.bytes.len() < wanted {
                let mut bigger = vec![0; wanted];
                bigger[..unread].copy_from_slice(&self.bytes[..unread]);
                self.bytes.zeroize();
                self.bytes = bigger;
            }
        }
        &mut self.bytes[self.end..]
    }

    /// Records that a read put `n` bytes at the front of [`FrameBuffer::spare`].
    ///
    /// # Panics
    ///
    /// If `n` is more than the room `spare` offered (a bug in the caller).
    pub fn filled(&mut self, n: usize) {
        assert!(
            n <= self.bytes.len() - self.end,
            "filled more than the spare room"
        );
        self.end += n;
    }

    /// The whole size (header + payload) of the frame at the front, once its
    /// header is here.
    fn frame_total(&self) -> Result<Option<usize>, FrameError> {
        let Some(header) = self.bytes[self.start..self.end].get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let len = frame_len(header.try_into().expect("header slice has 4 bytes"))?;
        debug_assert!(len <= MAX_FRAME_LEN);
        Ok(Some(FRAME_HEADER_LEN + len))
    }
}

impl Default for FrameBuffer {
    /// Room for a typical token answer (8 KiB) in one read.
    fn default() -> Self {
        FrameBuffer::new(8 * 1024)
    }
}

impl fmt::Debug for FrameBuffer {
    /// How much is buffered, never the bytes: they may be tokens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameBuffer")
            .field("buffered_bytes", &self.len())
            .field("capacity", &self.bytes.len())
            .finish()
    }
}

impl Drop for FrameBuffer {
    /// Unread frames may hold tokens: zero them before the memory is freed.
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_payload, encode_frame, ErrorCode, ErrorFrame, Response};

    fn error_frame(message: &str) -> Vec<u8> {
        encode_frame(&Response::Error(ErrorFrame::new(ErrorCode::Busy, message))).unwrap()
    }

    fn message(buf: &mut FrameBuffer) -> Option<String> {
        buf.next_frame(decode_payload::<Response>)
            .unwrap()
            .map(|parsed| match parsed.unwrap() {
                Response::Error(frame) => frame.message,
                other => panic!("unexpected {other:?}"),
            })
    }

    /// Feeds `bytes` through `spare`/`filled` in reads of at most `chunk`.
    fn feed(buf: &mut FrameBuffer, mut bytes: &[u8], chunk: usize) {
        while !bytes.is_empty() {
            let room = buf.spare();
            let n = room.len().min(chunk).min(bytes.len());
            room[..n].copy_from_slice(&bytes[..n]);
            buf.filled(n);
            bytes = &bytes[n..];
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn frames_arriving_together_are_kept_for_the_next_call() {
        let mut buf = FrameBuffer::new(16);
        let mut bytes = error_frame("first");
        bytes.extend(error_frame("second, longer than the initial buffer"));
        feed(&mut buf, &bytes, usize::MAX);
        assert_eq!(message(&mut buf).as_deref(), Some("first"));
        assert_eq!(
            message(&mut buf).as_deref(),
            Some("second, longer than the initial buffer")
        );
        assert!(buf.is_empty());
        assert_eq!(message(&mut buf), None);
    }

    #[test]
    fn a_frame_split_into_single_bytes_is_reassembled() {
        let mut buf = FrameBuffer::new(4);
        let bytes = error_frame("trickled in byte by byte");
        for byte in &bytes {
            assert_eq!(message(&mut buf), None);
            feed(&mut buf, std::slice::from_ref(byte), 1);
        }
        assert_eq!(
            message(&mut buf).as_deref(),
            Some("trickled in byte by byte")
        );
    }

    #[test]
    fn consumed_and_moved_bytes_are_zeroed_and_debug_shows_none() {
        let mut buf = FrameBuffer::new(64);
        let mut bytes = error_frame("first-SECRET-A");
        bytes.extend(error_frame(
            "second-SECRET-B, long enough to need a bigger buffer",
        ));
        feed(&mut buf, &bytes, 48);
        assert_eq!(message(&mut buf).as_deref(), Some("first-SECRET-A"));
        assert!(!contains(&buf.bytes, b"SECRET-A"));
        let debug = format!("{buf:?} {buf:#?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(debug.contains(&format!("buffered_bytes: {}", buf.len())));
        assert!(message(&mut buf).unwrap().starts_with("second-SECRET-B"));
        assert!(buf.bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn oversized_lengths_are_refused_before_any_payload_is_buffered() {
        let mut buf = FrameBuffer::new(16);
        feed(&mut buf, &((MAX_FRAME_LEN + 1) as u32).to_be_bytes(), 4);
        assert!(matches!(
            buf.next_frame(|_| ()),
            Err(FrameError::TooLarge { .. })
        ));
        // The buffer does not grow for it either.
        assert!(buf.spare().len() <= 16);
    }

    #[test]
    fn a_maximal_frame_fits_and_the_buffer_stops_there() {
        let mut buf = FrameBuffer::new(16);
        let mut frame = (MAX_FRAME_LEN as u32).to_be_bytes().to_vec();
        frame.resize(FRAME_HEADER_LEN + MAX_FRAME_LEN, b' ');
        feed(&mut buf, &frame, 1000);
        assert_eq!(buf.next_frame(|p| p.len()).unwrap(), Some(MAX_FRAME_LEN));
        assert!(buf.bytes.len() <= FRAME_HEADER_LEN + MAX_FRAME_LEN);
    }

    #[test]
    fn spare_is_never_empty() {
        let mut buf = FrameBuffer::new(4);
        feed(&mut buf, &error_frame("x")[..4], 4);
        assert!(!buf.spare().is_empty());
        let mut buf = FrameBuffer::new(4);
        feed(&mut buf, &error_frame("a")[..3], 3);
        assert!(!buf.spare().is_empty());
    }
}
