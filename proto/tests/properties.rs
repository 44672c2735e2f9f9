//! Property tests of the decoders: hostile input never panics, and a valid frame
//! decodes to the same message however the transport chops it up.

use oauth_broker_proto::{
    decode_frame, encode_frame, FrameError, ImportTokens, LoginMethod, Request, SecretString,
    FRAME_HEADER_LEN, MAX_FRAME_LEN,
};
use proptest::prelude::*;
use serde_json::Value;

fn request_strategy() -> impl Strategy<Value = Request> {
    let text = ".{0,64}";
    prop_oneof![
        (any::<u64>(), any::<bool>()).prop_map(|(min_valid_secs, identity)| Request::Token {
            min_valid_secs,
            identity
        }),
        text.prop_map(|token_id| Request::Unauthorized { token_id }),
        Just(Request::Status),
        Just(Request::Logout),
        prop_oneof![
            Just(None),
            Just(Some(LoginMethod::Device)),
            Just(Some(LoginMethod::Browser))
        ]
        .prop_map(|method| Request::Relogin { method }),
        ".{0,2000}".prop_map(|redirect_url| Request::CompleteLogin { redirect_url }),
        (
            text,
            proptest::option::of(text),
            proptest::option::of(any::<u64>()),
            proptest::option::of(text)
        )
            .prop_map(|(refresh, access, expires_at, scope)| Request::Import {
                tokens: ImportTokens {
                    refresh_token: SecretString::from(refresh),
                    access_token: access.map(SecretString::from),
                    expires_at,
                    id_token: None,
                    scope,
                    token_type: None,
                    account_id: None,
                },
            }),
    ]
}

fn as_json(request: &Request) -> Value {
    serde_json::to_value(request).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_pure_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut rest = &bytes[..];
        // Walk the buffer like a server would: skip malformed frames, stop on a
        // fatal error or when more bytes are needed.
        while let Ok(Some((_msg, consumed))) = decode_frame::<Request>(rest) {
            prop_assert!(consumed >= FRAME_HEADER_LEN && consumed <= rest.len());
            rest = &rest[consumed..];
        }
    }

    #[test]
    fn arbitrary_payloads_are_malformed_or_valid_never_fatal(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        let decoded = decode_frame::<Request>(&frame);
        prop_assert!(matches!(decoded, Ok(Some((Ok(_) | Err(FrameError::Malformed(_)), n))) if n == frame.len()), "unexpected: {:?}", decoded.map(|o| o.map(|(m, n)| (m.is_ok(), n))));
    }

    #[test]
    fn lengths_over_the_limit_are_always_refused(len in (MAX_FRAME_LEN as u32 + 1)..=u32::MAX) {
        let decoded = decode_frame::<Request>(&len.to_be_bytes());
        prop_assert!(matches!(decoded, Err(FrameError::TooLarge { .. })), "length {} accepted", len);
    }

    #[test]
    fn pure_decoder_round_trips(request in request_strategy()) {
        let frame = encode_frame(&request).unwrap();
        let (decoded, consumed) = decode_frame::<Request>(&frame).unwrap().unwrap();
        prop_assert_eq!(consumed, frame.len());
        prop_assert_eq!(as_json(&decoded.unwrap()), as_json(&request));
    }
}

/// The frame buffer the broker and both clients read with, fed the stream in
/// arbitrary pieces.
mod frame_buffer {
    use super::*;
    use oauth_broker_proto::{decode_payload, FrameBuffer};

    /// Cut points (sorted, deduplicated, inside `0..=len`) derived from raw seeds.
    fn cuts(len: usize, seeds: &[usize]) -> Vec<usize> {
        let mut cuts: Vec<usize> = seeds.iter().map(|s| s % (len + 1)).collect();
        cuts.push(len);
        cuts.sort_unstable();
        cuts.dedup();
        cuts
    }

    /// Feeds `chunks` one after the other (each through as many reads as the
    /// buffer's spare room needs), decoding whenever a read ends, and returns
    /// everything decoded (stopping at a fatal error).
    fn feed(chunks: &[&[u8]]) -> Vec<Result<Request, FrameError>> {
        let mut buf = FrameBuffer::new(8);
        let mut out = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            loop {
                loop {
                    match buf.next_frame(decode_payload::<Request>) {
                        Ok(Some(item)) => out.push(item),
                        Ok(None) => break,
                        Err(_) => return out,
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
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic_the_frame_buffer(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            seeds in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let points = cuts(bytes.len(), &seeds);
            let mut start = 0;
            let chunks: Vec<&[u8]> = points.iter().map(|&end| {
                let chunk = &bytes[start..end];
                start = end;
                chunk
            }).collect();
            feed(&chunks);
        }

        #[test]
        fn frames_split_anywhere_decode_to_the_same_messages(
            requests in proptest::collection::vec(request_strategy(), 1..4),
            seeds in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut stream = Vec::new();
            for request in &requests {
                stream.extend_from_slice(&encode_frame(request).unwrap());
            }
            let points = cuts(stream.len(), &seeds);
            let mut start = 0;
            let chunks: Vec<&[u8]> = points.iter().map(|&end| {
                let chunk = &stream[start..end];
                start = end;
                chunk
            }).collect();

            let decoded = feed(&chunks);
            prop_assert_eq!(decoded.len(), requests.len());
            for (got, want) in decoded.into_iter().zip(&requests) {
                prop_assert_eq!(as_json(&got.unwrap()), as_json(want));
            }
        }

        #[test]
        fn a_single_split_point_anywhere_works(request in request_strategy(), seed in any::<usize>()) {
            let frame = encode_frame(&request).unwrap();
            let at = seed % (frame.len() + 1);
            let decoded = feed(&[&frame[..at], &frame[at..]]);
            prop_assert_eq!(decoded.len(), 1);
            prop_assert_eq!(as_json(decoded[0].as_ref().unwrap()), as_json(&request));
        }
    }
}
