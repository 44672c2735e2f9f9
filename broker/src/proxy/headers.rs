//! What the proxy changes in a request's headers, and only that: the key the
//! tool presented comes out, the account's current access token goes in (plus
//! the few headers the preset's API needs), hop-by-hop headers are not
//! forwarded (RFC 9110 §7.6.1), and `Host` names the upstream.
//!
//! Why the key may come in either header: tools put their API key in
//! `Authorization: Bearer …` (OpenAI SDKs, Codex, `ANTHROPIC_AUTH_TOKEN`) or in
//! `x-api-key` (Anthropic SDKs with `ANTHROPIC_API_KEY`). Both are removed
//! upstream: an OAuth access token goes in `Authorization` only, and
//! Anthropic's API refuses a request that carries both.

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, HOST, UPGRADE};
use oauth_broker_proto::{ExposeSecret, SecretString};

/// `x-api-key`.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The key a request presents, from `Authorization: Bearer <key>` or
/// `x-api-key: <key>`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
            return Some(rest.trim());
        }
    }
    headers
        .get(X_API_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// Whether the request asks for a protocol upgrade (WebSocket).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Headers never forwarded (hop-by-hop), except the upgrade pair of an upgrade.
const HOP_BY_HOP: &[&str] = &[
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Removes hop-by-hop headers (and those `Connection` names) from `headers`;
/// keeps `Connection: upgrade` + `Upgrade` when `upgrade` is set.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(upgrade && n == UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(CONNECTION);
        headers.remove(UPGRADE);
    }
}

/// Prepares a tool's request headers for the upstream: the key out, the
/// token and `extra` in, no hop-by-hop headers, no `Host` (the client sets the
/// upstream's).
pub fn rewrite(
    headers: &mut HeaderMap,
    token: &SecretString,
    extra: &[(HeaderName, HeaderValue, Merge)],
    upgrade: bool,
) -> Result<(), String> {
    headers.remove(AUTHORIZATION);
    headers.remove(X_API_KEY);
    headers.remove(HOST);
    strip_hop_by_hop(headers, upgrade);
    let mut bearer = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
        .map_err(|_| "the access token is not a valid header value".to_string())?;
    bearer.set_sensitive(true);
    headers.insert(AUTHORIZATION, bearer);
    for (name, value, merge) in extra {
        merge.apply(headers, name, value);
    }
    Ok(())
}

/// How an extra header meets one the tool already sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Replace the tool's value.
    Set,
    /// Keep the tool's value when it sent one.
    IfAbsent,
    /// A comma-separated list (`anthropic-beta`): add the value if missing.
    AddToList,
}

impl Merge {
    fn apply(self, headers: &mut HeaderMap, name: &HeaderName, value: &HeaderValue) {
        match self {
            Merge::Set => {
                headers.insert(name.clone(), value.clone());
            }
            Merge::IfAbsent => {
                if !headers.contains_key(name) {
                    headers.insert(name.clone(), value.clone());
                }
            }
            Merge::AddToList => {
                // Every value the tool sent (it may send the header more than
                // once), as one list; ours is added when missing.
                let mut items: Vec<String> = headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect();
                let wanted = value.to_str().unwrap_or_default();
                if !items.iter().any(|t| t == wanted) {
                    items.push(wanted.to_string());
                }
                if let Ok(v) = HeaderValue::try_from(items.join(",")) {
                    headers.insert(name.clone(), v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_out_token_in_nothing_else() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer obk_key"));
        h.insert(X_API_KEY, HeaderValue::from_static("obk_key"));
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:1"));
        h.insert("connection", HeaderValue::from_static("keep-alive, x-drop"));
        h.insert("x-drop", HeaderValue::from_static("1"));
        h.insert("anthropic-beta", HeaderValue::from_static("a-1"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        assert_eq!(presented_key(&h), Some("obk_key"));
        let extra = [(
            HeaderName::from_static("anthropic-beta"),
            HeaderValue::from_static("oauth-2025-04-20"),
            Merge::AddToList,
        )];
        rewrite(
            &mut h,
            &SecretString::from("tok".to_string()),
            &extra,
            false,
        )
        .unwrap();
        assert_eq!(h[AUTHORIZATION], "Bearer tok");
        assert!(h[AUTHORIZATION].is_sensitive());
        assert!(!h.contains_key(X_API_KEY));
        assert!(!h.contains_key(HOST));
        assert!(!h.contains_key("x-drop"));
        assert!(!h.contains_key(CONNECTION));
        assert_eq!(h["anthropic-beta"], "a-1,oauth-2025-04-20");
        assert_eq!(h["x-keep"], "yes");
    }

    #[test]
    fn every_anthropic_beta_value_is_kept() {
        let mut h = HeaderMap::new();
        h.append("anthropic-beta", HeaderValue::from_static("a-1, b-2"));
        h.append("anthropic-beta", HeaderValue::from_static("c-3"));
        let extra = [(
            HeaderName::from_static("anthropic-beta"),
            HeaderValue::from_static("oauth-2025-04-20"),
            Merge::AddToList,
        )];
        rewrite(&mut h, &SecretString::from("t".to_string()), &extra, false).unwrap();
        let all: Vec<_> = h.get_all("anthropic-beta").iter().collect();
        assert_eq!(all, ["a-1,b-2,c-3,oauth-2025-04-20"]);
        // Already present in a later value: the list is joined, not doubled.
        let mut h = HeaderMap::new();
        h.append("anthropic-beta", HeaderValue::from_static("a-1"));
        h.append(
            "anthropic-beta",
            HeaderValue::from_static("oauth-2025-04-20"),
        );
        rewrite(&mut h, &SecretString::from("t".to_string()), &extra, false).unwrap();
        let all: Vec<_> = h.get_all("anthropic-beta").iter().collect();
        assert_eq!(all, ["a-1,oauth-2025-04-20"]);
    }

    #[test]
    fn key_from_x_api_key_and_upgrades_kept() {
        let mut h = HeaderMap::new();
        h.insert(X_API_KEY, HeaderValue::from_static("k2"));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(presented_key(&h), Some("k2"));
        assert!(is_upgrade(&h));
        rewrite(&mut h, &SecretString::from("t".to_string()), &[], true).unwrap();
        assert_eq!(h[UPGRADE], "websocket");
        assert_eq!(h[CONNECTION], "upgrade");
        let mut none = HeaderMap::new();
        none.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented_key(&none), None);
    }
}
