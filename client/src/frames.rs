//! Messages to frames and frames to answers, for both transports.
//!
//! The framing itself (length prefix, the 64 KiB cap, cutting a byte stream
//! into frames) is the protocol crate's — the broker uses the same — so that
//! what the blocking and the async client send and accept cannot differ. This
//! file adds only what is the client's own: the error a too-large request
//! becomes, and a faster parse of the token answer.

use crate::Error;
use oauth_broker_proto::{decode_payload, encode_frame_into, FrameError, Response, TokenGrant};
use serde::Serialize;

/// Room for one read: a whole token answer (1–3 KiB) in one call.
pub(crate) const READ_CHUNK: usize = 8 * 1024;

/// Appends the frame of `message` to `out` (several frames may go out in one
/// write: a new connection sends its hello and first request together).
pub(crate) fn push_frame<T: Serialize>(out: &mut Vec<u8>, message: &T) -> Result<(), Error> {
    encode_frame_into(out, message).map_err(|e| match e {
        FrameError::TooLarge { len, max } => Error::Config {
            message: format!("request of {len} bytes exceeds the {max} byte frame limit"),
        },
        FrameError::Malformed(_) => Error::protocol("request could not be encoded"),
    })
}

/// Parses an answer. A token answer — the hot path — is parsed straight into
/// its [`TokenGrant`] when the tag comes first, as the broker always sends it:
/// serde parses internally tagged enums by first copying the whole object into
/// an intermediate tree, which costs more than the parse itself. Anything else,
/// or a token answer in another key order, takes the general path.
pub(crate) fn decode_response(payload: &[u8]) -> Result<Response, FrameError> {
    const TOKEN_TAG: &[u8] = br#"{"type":"token","#;
    if payload.starts_with(TOKEN_TAG) {
        // The extra `type` key is ignored like any unknown field.
        if let Ok(grant) = serde_json::from_slice::<TokenGrant>(payload) {
            return Ok(Response::Token(grant));
        }
    }
    decode_payload(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_proto::{encode_frame, ErrorCode, ErrorFrame, FRAME_HEADER_LEN};

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
            id_token: None,
            obtained_at: None,
            refresh_token_id: None,
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
        let error =
            encode_frame(&Response::Error(ErrorFrame::new(ErrorCode::Busy, "nope"))).unwrap();
        assert!(matches!(
            decode_response(&error[FRAME_HEADER_LEN..]),
            Ok(Response::Error(_))
        ));
        assert!(decode_response(br#"{"type":"token","access_token":"#).is_err());
    }

    #[test]
    fn an_oversized_request_is_a_config_error_and_nothing_is_appended() {
        let mut out = vec![1, 2, 3];
        let huge = oauth_broker_proto::Request::CompleteLogin {
            redirect_url: "x".repeat(oauth_broker_proto::MAX_FRAME_LEN),
        };
        let err = push_frame(&mut out, &huge).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert_eq!(out, [1, 2, 3]);
    }
}
