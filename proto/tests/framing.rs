//! The pure frame functions: partial input, size limits, malformed payloads and
//! resynchronisation after them, forward compatibility (unknown fields).

use oauth_broker_proto::{
    decode_frame, encode_frame, frame_len, FrameError, Hello, Request, Response, StatusReport,
    TokenGrant, FRAME_HEADER_LEN, MAX_FRAME_LEN,
};
use serde_json::Value;

fn frame_of(payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

/// A `CompleteLogin` request whose JSON payload is exactly `len` bytes.
fn request_with_payload_len(len: usize) -> Request {
    let empty = serde_json::to_vec(&Request::CompleteLogin {
        redirect_url: String::new(),
    })
    .unwrap()
    .len();
    Request::CompleteLogin {
        redirect_url: "a".repeat(len - empty),
    }
}

fn sample_frames() -> Vec<Vec<u8>> {
    vec![
        encode_frame(&Hello::new("x")).unwrap(),
        encode_frame(&Request::Status).unwrap(),
        encode_frame(&Request::Token {
            min_valid_secs: 60,
            identity: false,
        })
        .unwrap(),
        encode_frame(&request_with_payload_len(1000)).unwrap(),
    ]
}

#[test]
fn header_is_big_endian_payload_length() {
    let frame = encode_frame(&Request::Status).unwrap();
    let payload = br#"{"type":"status"}"#;
    assert_eq!(&frame[..4], &(payload.len() as u32).to_be_bytes());
    assert_eq!(&frame[4..], payload);
    assert_eq!(FRAME_HEADER_LEN, 4);
}

#[test]
fn every_strict_prefix_of_a_frame_needs_more_bytes() {
    for frame in sample_frames() {
        for cut in 0..frame.len() {
            let result = decode_frame::<Value>(&frame[..cut]);
            assert!(
                matches!(result, Ok(None)),
                "prefix of {cut}/{} bytes: {result:?}",
                frame.len()
            );
        }
        assert!(matches!(decode_frame::<Value>(&frame), Ok(Some((Ok(_), n))) if n == frame.len()));
    }
}

#[test]
fn trailing_bytes_belong_to_the_next_frame() {
    let first = encode_frame(&Request::Status).unwrap();
    let second = encode_frame(&Request::Logout).unwrap();
    let mut buf = first.clone();
    buf.extend_from_slice(&second[..3]);
    let (msg, consumed) = decode_frame::<Request>(&buf).unwrap().unwrap();
    assert!(matches!(msg.unwrap(), Request::Status));
    assert_eq!(consumed, first.len());
    assert!(matches!(
        decode_frame::<Request>(&buf[consumed..]),
        Ok(None)
    ));
}

#[test]
fn oversized_lengths_are_rejected_from_the_header_alone() {
    for len in [MAX_FRAME_LEN as u32 + 1, 1 << 20, u32::MAX] {
        let header = len.to_be_bytes();
        assert!(matches!(
            frame_len(header),
            Err(FrameError::TooLarge { len: l, max }) if l == len as usize && max == MAX_FRAME_LEN
        ));
        // No payload byte is needed to refuse it.
        assert!(matches!(
            decode_frame::<Value>(&header),
            Err(FrameError::TooLarge { .. })
        ));
        let mut with_some_payload = header.to_vec();
        with_some_payload.extend_from_slice(b"{}");
        assert!(matches!(
            decode_frame::<Value>(&with_some_payload),
            Err(FrameError::TooLarge { .. })
        ));
    }
}

#[test]
fn exactly_64_kib_payload_is_accepted_one_more_byte_is_not() {
    assert_eq!(MAX_FRAME_LEN, 65_536);

    let at_limit = request_with_payload_len(MAX_FRAME_LEN);
    let frame = encode_frame(&at_limit).expect("64 KiB payload encodes");
    assert_eq!(frame.len(), FRAME_HEADER_LEN + MAX_FRAME_LEN);
    assert_eq!(
        frame_len(frame[..4].try_into().unwrap()).unwrap(),
        MAX_FRAME_LEN
    );
    let (decoded, consumed) = decode_frame::<Request>(&frame).unwrap().unwrap();
    assert_eq!(consumed, frame.len());
    let Request::CompleteLogin { redirect_url } = decoded.unwrap() else {
        panic!("wrong request");
    };
    assert!(matches!(&at_limit, Request::CompleteLogin { redirect_url: u } if *u == redirect_url));

    let over = request_with_payload_len(MAX_FRAME_LEN + 1);
    assert!(matches!(
        encode_frame(&over),
        Err(FrameError::TooLarge { len, max }) if len == MAX_FRAME_LEN + 1 && max == MAX_FRAME_LEN
    ));
}

#[test]
fn unknown_message_type_is_malformed_and_the_frame_is_consumed() {
    let unknown = frame_of(br#"{"type":"teleport","where":"mars"}"#);
    let next = encode_frame(&Request::Status).unwrap();
    let mut stream = unknown.clone();
    stream.extend_from_slice(&next);

    let (first, consumed) = decode_frame::<Request>(&stream).unwrap().unwrap();
    assert!(matches!(first, Err(FrameError::Malformed(_))));
    assert_eq!(consumed, unknown.len());

    // The stream is still in sync: the next frame decodes normally.
    let (second, consumed2) = decode_frame::<Request>(&stream[consumed..])
        .unwrap()
        .unwrap();
    assert!(matches!(second.unwrap(), Request::Status));
    assert_eq!(consumed + consumed2, stream.len());

    // Same for responses.
    let (resp, _) = decode_frame::<Response>(&frame_of(br#"{"type":"surprise"}"#))
        .unwrap()
        .unwrap();
    assert!(matches!(resp, Err(FrameError::Malformed(_))));
}

#[test]
fn malformed_payloads_are_reported_not_fatal() {
    for payload in [
        &b""[..],
        b"not json",
        b"{",
        b"[]",
        b"null",
        b"{\"no_type\":1}",
        b"{\"type\":\"token\",\"min_valid_secs\":\"sixty\"}",
        b"{\"type\":\"unauthorized\"}",
        b"\xff\xfe\x00",
    ] {
        let frame = frame_of(payload);
        let (msg, consumed) = decode_frame::<Request>(&frame).unwrap().unwrap();
        assert!(matches!(msg, Err(FrameError::Malformed(_))), "{payload:?}");
        assert_eq!(consumed, frame.len());
    }
}

#[test]
fn unknown_fields_are_ignored() {
    let decode_req = |json: &str| {
        decode_frame::<Request>(&frame_of(json.as_bytes()))
            .unwrap()
            .unwrap()
            .0
            .unwrap()
    };
    assert!(matches!(
        decode_req(r#"{"type":"token","min_valid_secs":30,"priority":"high","x":{"y":[1]}}"#),
        Request::Token {
            min_valid_secs: 30,
            identity: false
        }
    ));
    assert!(matches!(
        decode_req(r#"{"type":"status","verbose":true}"#),
        Request::Status
    ));
    assert!(matches!(
        decode_req(r#"{"type":"logout","everywhere":true}"#),
        Request::Logout
    ));
    assert!(matches!(
        decode_req(
            r#"{"type":"import","tokens":{"refresh_token":"r","future":1},"dry_run":false}"#
        ),
        Request::Import { .. }
    ));

    let (hello, _) = decode_frame::<Hello>(&frame_of(
        br#"{"protocol":1,"client":"a","capabilities":["x"]}"#,
    ))
    .unwrap()
    .unwrap();
    assert_eq!(hello.unwrap().client, "a");

    let (grant, _) = decode_frame::<Response>(&frame_of(
        br#"{"type":"token","access_token":"t","expires_at":1,"token_id":"x","refresh_in":5}"#,
    ))
    .unwrap()
    .unwrap();
    assert!(matches!(
        grant.unwrap(),
        Response::Token(TokenGrant { expires_at: 1, .. })
    ));

    let status = r#"{"type":"status","broker_version":"0","pid":1,"account":"a",
        "provider":"p","state":"valid","new_field":1,
        "endpoints":{"token_endpoint":"https://x/t","mtls":true},
        "last_error":{"code":"c","message":"m","at":1,"extra":null}}"#;
    let (resp, _) = decode_frame::<Response>(&frame_of(status.as_bytes()))
        .unwrap()
        .unwrap();
    let Response::Status(report) = resp.unwrap() else {
        panic!("not a status");
    };
    let report: StatusReport = *report;
    assert_eq!(
        report.endpoints.token_endpoint.as_deref(),
        Some("https://x/t")
    );

    let (err, _) = decode_frame::<Response>(&frame_of(
        br#"{"type":"error","code":"busy","message":"m","trace_id":"t"}"#,
    ))
    .unwrap()
    .unwrap();
    assert!(matches!(err.unwrap(), Response::Error(_)));
}

#[test]
fn unknown_enum_values_are_malformed() {
    for json in [
        r#"{"type":"relogin","method":"carrier_pigeon"}"#,
        r#"{"type":"error","code":"teapot","message":"m"}"#,
    ] {
        let request = decode_frame::<Request>(&frame_of(json.as_bytes()))
            .unwrap()
            .unwrap()
            .0;
        let response = decode_frame::<Response>(&frame_of(json.as_bytes()))
            .unwrap()
            .unwrap()
            .0;
        assert!(request.is_err() && response.is_err(), "{json}");
    }
}
