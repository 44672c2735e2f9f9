//! The frame buffer every reader uses (broker and both clients): same framing
//! rules as the pure functions, incremental input, malformed frames skipped,
//! oversized ones fatal; and the sending side's `encode_frame_into`.

use oauth_broker_proto::{
    decode_payload, encode_frame, encode_frame_into, FrameBuffer, FrameError, Hello, Request,
    MAX_FRAME_LEN,
};

/// Copies `bytes` into the buffer's spare room (as a read would).
fn receive(buf: &mut FrameBuffer, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let room = buf.spare();
        let n = room.len().min(bytes.len());
        room[..n].copy_from_slice(&bytes[..n]);
        buf.filled(n);
        bytes = &bytes[n..];
    }
}

fn next_request(buf: &mut FrameBuffer) -> Result<Option<Result<Request, FrameError>>, FrameError> {
    buf.next_frame(decode_payload::<Request>)
}

#[test]
fn frames_appended_into_one_buffer_are_the_frames_of_encode_frame() {
    let mut out = Vec::new();
    encode_frame_into(&mut out, &Hello::new("pipelined")).unwrap();
    encode_frame_into(
        &mut out,
        &Request::Token {
            min_valid_secs: 5,
            identity: false,
        },
    )
    .unwrap();
    let mut expected = encode_frame(&Hello::new("pipelined")).unwrap();
    expected.extend(
        encode_frame(&Request::Token {
            min_valid_secs: 5,
            identity: false,
        })
        .unwrap(),
    );
    assert_eq!(out, expected);

    // Read back in one go: both frames, in order.
    let mut buf = FrameBuffer::new(8);
    receive(&mut buf, &out);
    let hello: Hello = buf.next_frame(decode_payload).unwrap().unwrap().unwrap();
    assert_eq!(hello.client, "pipelined");
    assert!(matches!(
        next_request(&mut buf),
        Ok(Some(Ok(Request::Token {
            min_valid_secs: 5,
            identity: false
        })))
    ));
    assert!(buf.is_empty());
}

#[test]
fn byte_by_byte_input_yields_the_message_once_complete() {
    let frame = encode_frame(&Request::Status).unwrap();
    let mut buf = FrameBuffer::new(4);
    for (i, byte) in frame.iter().enumerate() {
        receive(&mut buf, &[*byte]);
        let item = next_request(&mut buf).unwrap();
        if i + 1 < frame.len() {
            assert!(item.is_none(), "early item at byte {i}");
        } else {
            assert!(matches!(item, Some(Ok(Request::Status))));
        }
    }
    assert!(buf.is_empty());
}

#[test]
fn malformed_frame_is_an_item_and_the_stream_continues() {
    let junk = br#"{"type":"nope"}"#;
    let mut bytes = (junk.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(junk);
    bytes.extend_from_slice(&encode_frame(&Request::Logout).unwrap());

    let mut buf = FrameBuffer::new(64);
    receive(&mut buf, &bytes);
    assert!(matches!(
        next_request(&mut buf),
        Ok(Some(Err(FrameError::Malformed(_))))
    ));
    assert!(matches!(
        next_request(&mut buf),
        Ok(Some(Ok(Request::Logout)))
    ));
    assert!(matches!(next_request(&mut buf), Ok(None)));
}

#[test]
fn oversized_length_is_fatal() {
    for len in [MAX_FRAME_LEN as u32 + 1, u32::MAX] {
        let mut buf = FrameBuffer::new(16);
        receive(&mut buf, &len.to_be_bytes());
        assert!(matches!(
            next_request(&mut buf),
            Err(FrameError::TooLarge { .. })
        ));
    }
}

#[test]
fn encoding_refuses_oversized_messages_and_leaves_the_buffer_as_it_was() {
    let huge = Request::CompleteLogin {
        redirect_url: "x".repeat(MAX_FRAME_LEN),
    };
    assert!(matches!(
        encode_frame(&huge),
        Err(FrameError::TooLarge { .. })
    ));
    let mut out = encode_frame(&Request::Status).unwrap();
    let before = out.clone();
    assert!(matches!(
        encode_frame_into(&mut out, &huge),
        Err(FrameError::TooLarge { .. })
    ));
    assert_eq!(out, before, "nothing half-written");
}
