//! Property tests of the message parser (the layer above framing): JSON that is
//! well formed but hostile — message-shaped objects with known and unknown
//! `type` tags, wrong field types, absurd numbers, deep nesting — never panics
//! any message type's parser, and whatever parses re-encodes to a frame that
//! parses to the same message. Also: valid frames mutated byte by byte never
//! panic the decoder, and a cut frame always asks for more bytes.
//!
//! Complements `properties.rs` (random bytes and framing) and the cargo-fuzz
//! targets under `proto/fuzz/`; this runs on stable in CI.

use oauth_broker_proto::{
    decode_frame, decode_payload, encode_frame, ErrorFrame, Hello, ImportTokens, LoginEvent,
    Request, Response, StatusReport, TokenGrant, Welcome,
};
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{Map, Number, Value};

/// Field names and tag values the messages use, so that generated objects
/// often come close to real messages.
const KEYS: &[&str] = &[
    "type",
    "protocol",
    "client",
    "min_valid_secs",
    "token_id",
    "tokens",
    "refresh_token",
    "access_token",
    "expires_at",
    "id_token",
    "scope",
    "token_type",
    "account_id",
    "method",
    "redirect_url",
    "code",
    "message",
    "hint",
    "retry_after_secs",
    "reason",
    "event",
    "broker_version",
    "account",
    "state",
    "scopes",
    "metadata",
    "revoked",
    "url",
    "verification_uri",
    "user_code",
    "expires_in",
    "pid",
    "provider",
    "endpoints",
];

const TAGS: &[&str] = &[
    "token",
    "unauthorized",
    "status",
    "import",
    "relogin",
    "complete_login",
    "logout",
    "welcome",
    "imported",
    "logged_out",
    "login",
    "error",
    "device_code",
    "authorize_url",
    "logged_in",
    "device",
    "browser",
    "not_logged_in",
    "relogin_required",
    "upstream_unavailable",
    "bad_request",
    "busy",
    "internal",
    "valid",
    "expired",
    "Token",
    "",
    "frobnicate",
];

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::from(u32::MAX as u64 + 1)),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        proptest::sample::select(TAGS).prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-z_]{0,12}",
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An object with a `type` (or `event`) tag and a few plausible fields.
fn message_shaped() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("type"), Just("event")],
        proptest::sample::select(TAGS),
        proptest::collection::btree_map(key(), json(), 0..6),
    )
        .prop_map(|(tag_key, tag, fields)| {
            let mut map: Map<String, Value> = fields.into_iter().collect();
            map.insert(tag_key.to_string(), Value::from(tag));
            Value::Object(map)
        })
}

/// Parses `payload` as `T`; if it parses, re-encoding gives a frame that
/// parses to the same JSON.
fn parse_is_stable<T: Serialize + DeserializeOwned>(payload: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(message) = decode_payload::<T>(payload) {
        let first = serde_json::to_value(&message).unwrap();
        let frame = encode_frame(&message).unwrap();
        let (again, consumed) = decode_frame::<T>(&frame).unwrap().unwrap();
        prop_assert_eq!(consumed, frame.len());
        let again = again.map_err(|e| TestCaseError::fail(format!("re-parse failed: {e}")))?;
        prop_assert_eq!(serde_json::to_value(&again).unwrap(), first);
    }
    Ok(())
}

fn every_parser(payload: &[u8]) -> Result<(), TestCaseError> {
    parse_is_stable::<Hello>(payload)?;
    parse_is_stable::<Welcome>(payload)?;
    parse_is_stable::<Request>(payload)?;
    parse_is_stable::<Response>(payload)?;
    parse_is_stable::<ErrorFrame>(payload)?;
    parse_is_stable::<ImportTokens>(payload)?;
    parse_is_stable::<LoginEvent>(payload)?;
    parse_is_stable::<TokenGrant>(payload)?;
    parse_is_stable::<StatusReport>(payload)?;
    Ok(())
}

fn valid_request() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<u64>().prop_map(|s| encode_frame(&Request::Token {
            min_valid_secs: s,
            identity: false
        })
        .unwrap()),
        ".{0,32}".prop_map(|id| encode_frame(&Request::Unauthorized { token_id: id }).unwrap()),
        Just(encode_frame(&Request::Status).unwrap()),
        Just(encode_frame(&Hello::new("prop")).unwrap()),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bits: u8 },
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Remove { at }),
    ]
}

fn apply(frame: &mut Vec<u8>, m: &Mutation) {
    let len = frame.len();
    match *m {
        Mutation::Flip { at, bits } => frame[at % len] ^= bits,
        Mutation::Insert { at, byte } => frame.insert(at % (len + 1), byte),
        Mutation::Remove { at } => {
            frame.remove(at % len);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_json_never_panics_any_message_parser(value in json()) {
        every_parser(&serde_json::to_vec(&value).unwrap())?;
    }

    #[test]
    fn message_shaped_json_never_panics_and_what_parses_is_stable(value in message_shaped()) {
        every_parser(&serde_json::to_vec(&value).unwrap())?;
    }

    #[test]
    fn mutated_valid_frames_never_panic_the_decoder(
        frame in valid_request(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut frame = frame;
        for m in &mutations {
            if !frame.is_empty() {
                apply(&mut frame, m);
            }
        }
        if let Ok(Some((_, consumed))) = decode_frame::<Request>(&frame) {
            prop_assert!(consumed <= frame.len());
        }
        if frame.len() > 4 {
            every_parser(&frame[4..])?;
        }
    }

    #[test]
    fn a_cut_valid_frame_always_asks_for_more_bytes(frame in valid_request(), cut in any::<usize>()) {
        let at = cut % frame.len();
        prop_assert!(matches!(decode_frame::<Request>(&frame[..at]), Ok(None)));
    }
}
