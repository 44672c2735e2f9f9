//! The error codes are a stable, closed, snake_case contract.

use oauth_broker_proto::{ErrorCode, ErrorFrame};
use serde_json::json;

const ALL: [(ErrorCode, &str); 8] = [
    (ErrorCode::NotLoggedIn, "not_logged_in"),
    (ErrorCode::ReloginRequired, "relogin_required"),
    (ErrorCode::UpstreamUnavailable, "upstream_unavailable"),
    (ErrorCode::PermissionDenied, "permission_denied"),
    (ErrorCode::BadRequest, "bad_request"),
    (ErrorCode::UnsupportedProtocol, "unsupported_protocol"),
    (ErrorCode::Busy, "busy"),
    (ErrorCode::Internal, "internal"),
];

#[test]
fn wire_names_are_stable() {
    for (code, name) in ALL {
        assert_eq!(code.as_str(), name);
        assert_eq!(code.to_string(), name);
        assert_eq!(serde_json::to_value(code).unwrap(), json!(name));
        assert_eq!(
            serde_json::from_value::<ErrorCode>(json!(name)).unwrap(),
            code
        );
    }
}

#[test]
fn unknown_or_differently_cased_names_are_rejected() {
    for name in [
        "NotLoggedIn",
        "NOT_LOGGED_IN",
        "not-logged-in",
        "",
        "teapot",
    ] {
        assert!(
            serde_json::from_value::<ErrorCode>(json!(name)).is_err(),
            "{name}"
        );
    }
}

#[test]
fn error_frame_omits_absent_optionals() {
    let frame = ErrorFrame::new(ErrorCode::Busy, "try later");
    assert_eq!(
        serde_json::to_value(&frame).unwrap(),
        json!({"code": "busy", "message": "try later"})
    );
    let full = ErrorFrame::new(ErrorCode::ReloginRequired, "refused")
        .with_hint("run `brokerctl relogin`")
        .with_reason("refresh_token_reused")
        .with_retry_after(3);
    assert_eq!(
        serde_json::to_value(&full).unwrap(),
        json!({"code": "relogin_required", "message": "refused",
               "hint": "run `brokerctl relogin`", "reason": "refresh_token_reused",
               "retry_after_secs": 3})
    );
}

#[test]
fn error_frame_display_is_one_line_with_everything_useful() {
    let frame = ErrorFrame::new(ErrorCode::ReloginRequired, "refused")
        .with_hint("run `brokerctl relogin`")
        .with_reason("refresh_token_reused");
    let text = frame.to_string();
    assert!(!text.contains('\n'));
    for part in [
        "relogin_required",
        "refused",
        "refresh_token_reused",
        "brokerctl relogin",
    ] {
        assert!(text.contains(part), "{text}");
    }
}
