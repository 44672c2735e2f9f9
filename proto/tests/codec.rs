//! The `tokio-util` codec (feature `codec`): same framing rules as the pure
//! functions, incremental input, malformed frames skipped, oversized ones fatal.
#![cfg(feature = "codec")]

use bytes::BytesMut;
use oauth_broker_proto::{
    encode_frame, CodecError, FrameCodec, FrameError, Request, Response, MAX_FRAME_LEN,
};
use tokio_util::codec::{Decoder, Encoder};

#[test]
fn encoder_writes_the_same_bytes_as_encode_frame() {
    let mut codec = FrameCodec::<Response, Request>::new();
    let mut dst = BytesMut::new();
    codec
        .encode(Request::Token { min_valid_secs: 5 }, &mut dst)
        .unwrap();
    assert_eq!(
        &dst[..],
        &encode_frame(&Request::Token { min_valid_secs: 5 }).unwrap()[..]
    );
}

#[test]
fn byte_by_byte_input_yields_the_message_once_complete() {
    let frame = encode_frame(&Request::Status).unwrap();
    let mut codec = FrameCodec::<Request, Response>::new();
    let mut buf = BytesMut::new();
    for (i, byte) in frame.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        let item = codec.decode(&mut buf).unwrap();
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
    let mut buf = BytesMut::new();
    let junk = br#"{"type":"nope"}"#;
    buf.extend_from_slice(&(junk.len() as u32).to_be_bytes());
    buf.extend_from_slice(junk);
    buf.extend_from_slice(&encode_frame(&Request::Logout).unwrap());

    let mut codec = FrameCodec::<Request, Response>::new();
    assert!(matches!(
        codec.decode(&mut buf),
        Ok(Some(Err(FrameError::Malformed(_))))
    ));
    assert!(matches!(
        codec.decode(&mut buf),
        Ok(Some(Ok(Request::Logout)))
    ));
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
}

#[test]
fn oversized_length_is_a_decoder_error() {
    for len in [MAX_FRAME_LEN as u32 + 1, u32::MAX] {
        let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
        let mut codec = FrameCodec::<Request, Response>::new();
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::Frame(FrameError::TooLarge { .. }))
        ));
    }
}

#[test]
fn encoder_refuses_oversized_messages() {
    let mut codec = FrameCodec::<Response, Request>::new();
    let mut dst = BytesMut::new();
    let huge = Request::CompleteLogin {
        redirect_url: "x".repeat(MAX_FRAME_LEN),
    };
    assert!(matches!(
        codec.encode(huge, &mut dst),
        Err(CodecError::Frame(FrameError::TooLarge { .. }))
    ));
    assert!(dst.is_empty(), "nothing half-written");
}
