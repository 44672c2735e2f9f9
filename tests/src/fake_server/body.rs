//! Reading token-endpoint request bodies and client authentication.
//!
//! Why both encodings: RFC 6749 mandates `application/x-www-form-urlencoded`,
//! but OpenAI's and Anthropic's clients send JSON and their servers accept it.
//! The broker chooses per preset (`refresh_body`), so the fake accepts both,
//! records which one was used, and rejects anything else.

use std::collections::BTreeMap;

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::stats::BodyEncoding;

/// A parsed request body: its encoding and its fields as strings.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub encoding: BodyEncoding,
    pub fields: BTreeMap<String, String>,
}

impl Params {
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
}

/// Parses a form or JSON object body. `Err` carries the encoding (for the
/// records) and a description for `invalid_request`.
pub(crate) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Params, (BodyEncoding, String)> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match content_type.as_str() {
        "application/x-www-form-urlencoded" => Ok(Params {
            encoding: BodyEncoding::Form,
            fields: url::form_urlencoded::parse(body).into_owned().collect(),
        }),
        "application/json" => {
            let value: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| (BodyEncoding::Json, format!("malformed JSON body: {e}")))?;
            let serde_json::Value::Object(map) = value else {
                return Err((BodyEncoding::Json, "JSON body must be an object".into()));
            };
            let fields = map
                .into_iter()
                .filter_map(|(k, v)| match v {
                    serde_json::Value::String(s) => Some((k, s)),
                    serde_json::Value::Null => None,
                    other => Some((k, other.to_string())),
                })
                .collect();
            Ok(Params {
                encoding: BodyEncoding::Json,
                fields,
            })
        }
        "" => Err((BodyEncoding::Other, "missing Content-Type".into())),
        other => Err((
            BodyEncoding::Other,
            format!("unsupported Content-Type {other}"),
        )),
    }
}

/// The client id the request authenticates as: HTTP Basic user name
/// (`client_secret_basic`) or else the `client_id` field.
pub(crate) fn client_id(headers: &HeaderMap, params: &Params) -> Option<String> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split(':').next().map(|user| user.to_owned()))
        .map(|user| {
            url::form_urlencoded::parse(format!("u={user}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or(user)
        });
    basic.or_else(|| params.get("client_id").map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn form_and_json() {
        let p = parse(
            &headers("application/x-www-form-urlencoded"),
            b"grant_type=refresh_token&refresh_token=a%2Bb",
        )
        .unwrap();
        assert_eq!(p.encoding, BodyEncoding::Form);
        assert_eq!(p.get("refresh_token"), Some("a+b"));
        let p = parse(
            &headers("application/json; charset=utf-8"),
            br#"{"grant_type":"refresh_token","n":1,"x":null}"#,
        )
        .unwrap();
        assert_eq!(p.encoding, BodyEncoding::Json);
        assert_eq!(p.get("n"), Some("1"));
        assert_eq!(p.get("x"), None);
        assert!(parse(&headers("text/plain"), b"x").is_err());
        assert!(parse(&HeaderMap::new(), b"x").is_err());
        assert!(parse(&headers("application/json"), b"[1]").is_err());
    }

    #[test]
    fn basic_auth_wins() {
        let mut h = headers("application/x-www-form-urlencoded");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("cli:secret"))).unwrap(),
        );
        let p = parse(&h, b"client_id=other").unwrap();
        assert_eq!(client_id(&h, &p).as_deref(), Some("cli"));
    }
}
