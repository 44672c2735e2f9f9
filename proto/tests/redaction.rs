//! `Debug` output of the messages that carry secrets never shows the secrets,
//! so logging a message (at any level) cannot leak a token.

use oauth_broker_proto::{
    token_fingerprint, ImportTokens, Request, Response, SecretString, TokenGrant,
};
use std::collections::BTreeMap;

const ACCESS: &str = "access-SECRET-1f3a";
const REFRESH: &str = "refresh-SECRET-9b2c";
const ID: &str = "id-SECRET-77aa";

fn assert_no_secret(text: &str) {
    for secret in [ACCESS, REFRESH, ID, "SECRET"] {
        assert!(!text.contains(secret), "secret leaked in: {text}");
    }
}

fn grant() -> TokenGrant {
    TokenGrant {
        access_token: SecretString::from(ACCESS),
        token_type: "Bearer".into(),
        expires_at: 1,
        token_id: token_fingerprint(&SecretString::from(ACCESS)),
        scopes: vec!["openid".into()],
        metadata: BTreeMap::new(),
        id_token: None,
        obtained_at: None,
        refresh_token_id: None,
    }
}

fn tokens() -> ImportTokens {
    ImportTokens {
        refresh_token: SecretString::from(REFRESH),
        access_token: Some(SecretString::from(ACCESS)),
        expires_at: Some(1),
        id_token: Some(SecretString::from(ID)),
        scope: None,
        token_type: None,
        account_id: None,
    }
}

#[test]
fn token_grant_debug_hides_the_token() {
    let grant = grant();
    let text = format!("{grant:?} {grant:#?}");
    assert_no_secret(&text);
    // The non-secret fingerprint is still there to correlate log lines.
    assert!(text.contains(&grant.token_id));
    let response = Response::Token(grant);
    assert_no_secret(&format!("{response:?} {response:#?}"));
}

#[test]
fn import_tokens_debug_hides_every_token() {
    let tokens = tokens();
    assert_no_secret(&format!("{tokens:?} {tokens:#?}"));
    let request = Request::Import { tokens };
    assert_no_secret(&format!("{request:?} {request:#?}"));
}

#[test]
fn fingerprint_is_12_hex_digits_and_not_the_token() {
    let id = token_fingerprint(&SecretString::from(ACCESS));
    assert_eq!(id.len(), 12);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert!(!ACCESS.contains(&id));
    assert_eq!(id, token_fingerprint(&SecretString::from(ACCESS)));
    assert_ne!(id, token_fingerprint(&SecretString::from(REFRESH)));
    // SHA-256("abc") = ba7816bf8f01…
    assert_eq!(
        token_fingerprint(&SecretString::from("abc")),
        "ba7816bf8f01"
    );
}

#[test]
fn debug_of_a_complete_login_request_hides_the_authorization_code() {
    let request = oauth_broker_proto::Request::CompleteLogin {
        redirect_url: "http://127.0.0.1:1455/cb?code=SECRET-CODE&state=s".to_string(),
    };
    let printed = format!("{request:?} {request:#?}");
    assert!(!printed.contains("SECRET-CODE"), "{printed}");
    assert!(printed.contains("CompleteLogin"));
}
