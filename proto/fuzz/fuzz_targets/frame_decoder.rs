//! Fuzzes the frame decoder as the broker uses it: a byte stream of any shape
//! is walked frame by frame (malformed payloads skipped, an oversized length
//! ends the stream). Checks that nothing panics, that every consumed length is
//! inside the buffer and at least a header, that a fatal error is always an
//! over-the-cap length, and that the `FrameBuffer` the broker and the clients
//! read with, fed the same bytes in two chunks (split where the first byte
//! says), agrees with the pure decoder.

#![no_main]

use libfuzzer_sys::fuzz_target;
use oauth_broker_proto::{
    decode_frame, decode_payload, FrameBuffer, Request, FRAME_HEADER_LEN, MAX_FRAME_LEN,
};

/// What decoding a stream produced: per frame, whether it parsed; and whether
/// the stream ended in a fatal framing error.
fn pure(mut rest: &[u8]) -> (Vec<bool>, bool) {
    let mut frames = Vec::new();
    loop {
        match decode_frame::<Request>(rest) {
            Ok(Some((message, consumed))) => {
                assert!(consumed >= FRAME_HEADER_LEN && consumed <= rest.len());
                frames.push(message.is_ok());
                rest = &rest[consumed..];
            }
            Ok(None) => return (frames, false),
            Err(_) => {
                let header: [u8; FRAME_HEADER_LEN] = rest[..FRAME_HEADER_LEN].try_into().unwrap();
                assert!(u32::from_be_bytes(header) as usize > MAX_FRAME_LEN);
                return (frames, true);
            }
        }
    }
}

fn buffered(chunks: [&[u8]; 2]) -> (Vec<bool>, bool) {
    let mut buf = FrameBuffer::new(16);
    let mut frames = Vec::new();
    for chunk in chunks {
        let mut rest = chunk;
        loop {
            loop {
                match buf.next_frame(decode_payload::<Request>) {
                    Ok(Some(message)) => frames.push(message.is_ok()),
                    Ok(None) => break,
                    Err(_) => return (frames, true),
                }
            }
            if rest.is_empty() {
                break;
            }
            let room = buf.spare();
            let n = room.len().min(rest.len());
            room[..n].copy_from_slice(&rest[..n]);
            buf.filled(n);
            rest = &rest[n..];
        }
    }
    (frames, false)
}

fuzz_target!(|data: &[u8]| {
    let expected = pure(data);
    let split = data.first().map_or(0, |b| usize::from(*b)) % (data.len() + 1);
    let (a, b) = data.split_at(split);
    assert_eq!(buffered([a, b]), expected, "frame buffer and pure decoder disagree");
});
