//! Every message survives encode → decode unchanged, and its JSON shape is the
//! documented one (other-language clients rely on the exact field names).

use oauth_broker_proto::{
    decode_frame, encode_frame, EndpointInfo, ErrorCode, ErrorFrame, ExposeSecret,
    ForcedRefreshStatus, Hello, ImportTokens, LastError, LoginEvent, LoginMethod, ProjectionStatus,
    Request, Response, SecretString, StatusReport, TokenGrant, TokenState, ToolWrote, Welcome,
    PROTOCOL_VERSION,
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Encodes `msg` as a frame, decodes it back, and checks that nothing changed.
/// `Request`/`Response` hold secrets and so have no `PartialEq`; comparing their
/// JSON values compares every field, secrets included.
fn round_trip<T: Serialize + DeserializeOwned>(msg: &T) -> T {
    let frame = encode_frame(msg).expect("encode");
    let (decoded, consumed) = decode_frame::<T>(&frame)
        .expect("no framing error")
        .expect("complete frame");
    assert_eq!(consumed, frame.len(), "the whole frame is consumed");
    let decoded = decoded.expect("valid payload");
    assert_eq!(
        serde_json::to_value(&decoded).unwrap(),
        serde_json::to_value(msg).unwrap()
    );
    decoded
}

fn wire_json<T: Serialize>(msg: &T) -> Value {
    let frame = encode_frame(msg).unwrap();
    serde_json::from_slice(&frame[4..]).unwrap()
}

fn grant() -> TokenGrant {
    let mut metadata = BTreeMap::new();
    metadata.insert("account_id".to_string(), "acct-1".to_string());
    TokenGrant {
        access_token: SecretString::from("at-secret-value"),
        token_type: "Bearer".into(),
        expires_at: 1_700_000_000,
        token_id: "0123456789ab".into(),
        scopes: vec!["openid".into(), "offline_access".into()],
        metadata,
        id_token: None,
        obtained_at: None,
        refresh_token_id: None,
    }
}

fn import_tokens() -> ImportTokens {
    ImportTokens {
        refresh_token: SecretString::from("rt-secret-value"),
        access_token: Some(SecretString::from("at-secret-value")),
        expires_at: Some(1_700_000_000),
        id_token: Some(SecretString::from("id-secret-value")),
        scope: Some("openid offline_access".into()),
        token_type: Some("Bearer".into()),
        account_id: Some("acct-1".into()),
    }
}

fn full_status() -> StatusReport {
    StatusReport {
        broker_version: "0.1.0".into(),
        pid: 4242,
        account: "default".into(),
        provider: "generic".into(),
        endpoints: EndpointInfo {
            issuer: Some("https://login.example.com".into()),
            token_endpoint: Some("https://login.example.com/token".into()),
            authorization_endpoint: Some("https://login.example.com/authorize".into()),
            device_authorization_endpoint: Some("https://login.example.com/device".into()),
            revocation_endpoint: Some("https://login.example.com/revoke".into()),
            exchange_endpoint: None,
        },
        state: TokenState::Valid,
        access_token_expires_at: Some(1_700_000_000),
        token_id: Some("0123456789ab".into()),
        scopes: vec!["openid".into()],
        last_refresh_at: Some(1_699_990_000),
        next_refresh_at: Some(1_699_999_000),
        refresh_count: 7,
        relogin_required: false,
        relogin_reason: None,
        last_error: Some(LastError {
            code: "http_503".into(),
            message: "token endpoint answered 503".into(),
            hint: Some("the broker retries on its own".into()),
            at: 1_699_980_000,
        }),
        degraded: Some("cannot write state file".into()),
        account_id: Some("acct-1".into()),
        projections: vec![ProjectionStatus {
            kind: "codex".into(),
            path: "/home/u/.codex/auth.json".into(),
            last_write_at: Some(1_699_990_001),
            last_error: None,
            write: Some("in-place".into()),
            write_reason: Some("the file is a mount point".into()),
            token_id: Some("0123456789ab".into()),
            tool_wrote: Some(ToolWrote {
                at: 1_699_990_002,
                refresh_token: true,
                unknown_access_token: false,
            }),
        }],
        config_file: Some("/home/u/.config/oauth-broker/default.toml".into()),
        state_dir: Some("/home/u/.local/state/oauth-broker/default".into()),
        now_ms: Some(1_699_990_003_000),
        forced_refresh: ForcedRefreshStatus {
            suppressed: 99,
            next_allowed_at: Some(1_700_000_030),
        },
        proxies: vec![oauth_broker_proto::ProxyStatus {
            listen: "http://127.0.0.1:8787".into(),
            upstream: "https://api.anthropic.com/".into(),
        }],
        proxy_keys: vec![oauth_broker_proto::ProxyKeyStatus {
            name: "claude".into(),
            created_at: 1_699_990_000,
            requests: 7,
            last_used_at: Some(1_700_000_001),
        }],
    }
}

fn all_login_events() -> Vec<LoginEvent> {
    vec![
        LoginEvent::DeviceCode {
            verification_uri: "https://example.com/device".into(),
            verification_uri_complete: Some("https://example.com/device?code=ABCD".into()),
            user_code: "ABCD-EFGH".into(),
            expires_in: 900,
        },
        LoginEvent::DeviceCode {
            verification_uri: "https://example.com/device".into(),
            verification_uri_complete: None,
            user_code: "ABCD-EFGH".into(),
            expires_in: 900,
        },
        LoginEvent::AuthorizeUrl {
            url: "https://example.com/authorize?x=1".into(),
            redirect_uri: Some("http://127.0.0.1:1455/auth/callback".into()),
        },
        LoginEvent::LoggedIn {
            account: "default".into(),
            expires_at: 1_700_000_000,
            account_id: Some("acct-1".into()),
        },
        LoginEvent::Error {
            code: "relogin_required".into(),
            message: "access denied".into(),
            hint: Some("run `brokerctl relogin`".into()),
        },
    ]
}

#[test]
fn hello_and_welcome_round_trip() {
    let hello = round_trip(&Hello::new("my-agent"));
    assert_eq!(hello, Hello::new("my-agent"));
    assert_eq!(hello.protocol, PROTOCOL_VERSION);
    assert_eq!(
        wire_json(&hello),
        json!({"protocol": PROTOCOL_VERSION, "client": "my-agent"})
    );

    let welcome = Welcome {
        protocol: PROTOCOL_VERSION,
        broker_version: "0.1.0".into(),
        account: "work".into(),
    };
    assert_eq!(round_trip(&welcome), welcome);
}

#[test]
fn hello_without_client_name_is_accepted() {
    let (hello, _) = decode_frame::<Hello>(&frame_of(br#"{"protocol":1}"#))
        .unwrap()
        .unwrap();
    assert_eq!(hello.unwrap().client, "");
}

#[test]
fn every_request_round_trips() {
    let requests = vec![
        Request::Token {
            min_valid_secs: 60,
            identity: false,
        },
        Request::Token {
            min_valid_secs: u64::MAX,
            identity: true,
        },
        Request::Unauthorized {
            token_id: "0123456789ab".into(),
        },
        Request::Status,
        Request::Import {
            tokens: import_tokens(),
        },
        Request::Import {
            tokens: ImportTokens {
                refresh_token: SecretString::from("rt-only"),
                access_token: None,
                expires_at: None,
                id_token: None,
                scope: None,
                token_type: None,
                account_id: None,
            },
        },
        Request::Relogin { method: None },
        Request::Relogin {
            method: Some(LoginMethod::Device),
        },
        Request::Relogin {
            method: Some(LoginMethod::Browser),
        },
        Request::CompleteLogin {
            redirect_url: "http://127.0.0.1:1455/cb?code=c&state=s".into(),
        },
        Request::Logout,
    ];
    for request in &requests {
        let back = round_trip(request);
        assert_eq!(back.name(), request.name());
    }
}

#[test]
fn every_response_round_trips() {
    let mut responses = vec![
        Response::Welcome(Welcome {
            protocol: 1,
            broker_version: "0.1.0".into(),
            account: "default".into(),
        }),
        Response::Token(grant()),
        Response::Status(Box::new(full_status())),
        Response::Imported {
            expires_at: 1_700_000_000,
        },
        Response::Imported { expires_at: 0 },
        Response::LoggedOut { revoked: true },
        Response::LoggedOut { revoked: false },
        Response::Error(ErrorFrame::new(ErrorCode::Internal, "boom")),
        Response::Error(
            ErrorFrame::new(ErrorCode::ReloginRequired, "refresh token was reused")
                .with_reason("refresh_token_reused")
                .with_hint("run `brokerctl relogin`"),
        ),
        Response::Error(
            ErrorFrame::new(ErrorCode::UpstreamUnavailable, "token endpoint down")
                .with_retry_after(30),
        ),
    ];
    responses.extend(all_login_events().into_iter().map(Response::Login));
    for response in &responses {
        round_trip(response);
    }
}

#[test]
fn token_grant_keeps_the_secret_on_the_wire() {
    let Response::Token(back) = round_trip(&Response::Token(grant())) else {
        panic!("not a token response");
    };
    assert_eq!(back.access_token.expose_secret(), "at-secret-value");
    assert_eq!(back.scopes, vec!["openid", "offline_access"]);
    assert_eq!(back.metadata["account_id"], "acct-1");
    assert!(back.id_token.is_none() && back.obtained_at.is_none());
    // What a projector needs besides the access token travels too.
    let mut full = grant();
    full.id_token = Some(SecretString::from("id-secret-value"));
    full.obtained_at = Some(1_699_996_400);
    full.refresh_token_id = Some("fedcba987654".into());
    let Response::Token(back) = round_trip(&Response::Token(full)) else {
        panic!("not a token response");
    };
    assert_eq!(back.id_token.unwrap().expose_secret(), "id-secret-value");
    assert_eq!(back.obtained_at, Some(1_699_996_400));
    assert_eq!(back.refresh_token_id.as_deref(), Some("fedcba987654"));
}

#[test]
fn a_token_answer_without_the_projection_fields_still_decodes() {
    // What brokers before id_token/obtained_at/refresh_token_id sent, and
    // what every other client may keep ignoring: the fields are optional.
    let Response::Token(grant) = serde_json::from_str::<Response>(
        r#"{"type":"token","access_token":"a","token_type":"Bearer","expires_at":1,"token_id":"0123456789ab"}"#,
    )
    .unwrap() else {
        panic!("not a token response");
    };
    assert!(grant.id_token.is_none());
    assert!(grant.obtained_at.is_none());
    assert!(grant.refresh_token_id.is_none());
    // And a grant without them sends none of them.
    let token = wire_json(&Response::Token(grant));
    for key in ["id_token", "obtained_at", "refresh_token_id"] {
        assert!(token.get(key).is_none(), "{key}");
    }
}

#[test]
fn import_keeps_all_secrets_on_the_wire() {
    let Request::Import { tokens } = round_trip(&Request::Import {
        tokens: import_tokens(),
    }) else {
        panic!("not an import request");
    };
    assert_eq!(tokens.refresh_token.expose_secret(), "rt-secret-value");
    assert_eq!(
        tokens.access_token.unwrap().expose_secret(),
        "at-secret-value"
    );
    assert_eq!(tokens.id_token.unwrap().expose_secret(), "id-secret-value");
}

#[test]
fn status_report_round_trips_minimal_and_full() {
    let full = full_status();
    let Response::Status(back) = round_trip(&Response::Status(Box::new(full.clone()))) else {
        panic!("not a status response");
    };
    assert_eq!(*back, full);

    // A broker may leave every optional field out.
    let minimal = json!({
        "type": "status", "broker_version": "0.1.0", "pid": 1, "account": "a",
        "provider": "generic", "state": "logged_out"
    });
    let (parsed, _) = decode_frame::<Response>(&frame_of(minimal.to_string().as_bytes()))
        .unwrap()
        .unwrap();
    let Response::Status(report) = parsed.unwrap() else {
        panic!("not a status response");
    };
    assert_eq!(report.state, TokenState::LoggedOut);
    assert_eq!(report.refresh_count, 0);
    assert!(report.scopes.is_empty());
    assert_eq!(report.endpoints, EndpointInfo::default());
}

#[test]
fn login_events_round_trip_and_know_which_are_final() {
    for event in all_login_events() {
        assert_eq!(round_trip(&event), event);
        let expect_final = matches!(
            event,
            LoginEvent::LoggedIn { .. } | LoginEvent::Error { .. }
        );
        assert_eq!(event.is_final(), expect_final);
    }
}

#[test]
fn wire_shapes_are_the_documented_ones() {
    assert_eq!(
        wire_json(&Request::Token {
            min_valid_secs: 60,
            identity: false
        }),
        json!({"type": "token", "min_valid_secs": 60})
    );
    assert_eq!(wire_json(&Request::Status), json!({"type": "status"}));
    assert_eq!(wire_json(&Request::Logout), json!({"type": "logout"}));
    assert_eq!(
        wire_json(&Request::Unauthorized {
            token_id: "abc".into()
        }),
        json!({"type": "unauthorized", "token_id": "abc"})
    );
    assert_eq!(
        wire_json(&Request::Relogin {
            method: Some(LoginMethod::Device)
        }),
        json!({"type": "relogin", "method": "device"})
    );
    assert_eq!(
        wire_json(&Response::LoggedOut { revoked: true }),
        json!({"type": "logged_out", "revoked": true})
    );
    assert_eq!(
        wire_json(&Response::Imported { expires_at: 5 }),
        json!({"type": "imported", "expires_at": 5})
    );
    assert_eq!(
        wire_json(&Response::Error(
            ErrorFrame::new(ErrorCode::UpstreamUnavailable, "down").with_retry_after(30)
        )),
        json!({"type": "error", "code": "upstream_unavailable", "message": "down", "retry_after_secs": 30})
    );
    assert_eq!(
        wire_json(&Response::Login(LoginEvent::AuthorizeUrl {
            url: "https://x/a".into(),
            redirect_uri: None
        })),
        json!({"type": "login", "event": "authorize_url", "url": "https://x/a"})
    );
    let token = wire_json(&Response::Token(grant()));
    assert_eq!(token["type"], "token");
    assert_eq!(token["access_token"], "at-secret-value");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_at"], 1_700_000_000u64);
    assert_eq!(token["token_id"], "0123456789ab");
    assert_eq!(token["scopes"], json!(["openid", "offline_access"]));
}

#[test]
fn defaults_fill_in_omitted_fields() {
    let decode = |json: &str| -> Request {
        decode_frame::<Request>(&frame_of(json.as_bytes()))
            .unwrap()
            .unwrap()
            .0
            .unwrap()
    };
    assert!(matches!(
        decode(r#"{"type":"token"}"#),
        Request::Token {
            min_valid_secs: 0,
            identity: false
        }
    ));
    assert!(matches!(
        decode(r#"{"type":"relogin"}"#),
        Request::Relogin { method: None }
    ));

    let (grant, _) = decode_frame::<TokenGrant>(&frame_of(
        br#"{"access_token":"t","expires_at":1,"token_id":"x"}"#,
    ))
    .unwrap()
    .unwrap();
    let grant = grant.unwrap();
    assert_eq!(grant.token_type, "Bearer");
    assert!(grant.scopes.is_empty());
    assert!(grant.metadata.is_empty());
}

fn frame_of(payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}
