//! `Import { tokens }`: adopt existing tokens; the broker owns them from now on.

use super::super::app::App;
use super::super::wire_error;
use crate::credentials::Credentials;
use oauth_broker_proto::{ErrorFrame, ExposeSecret, ImportTokens, Response};
use std::time::SystemTime;

/// Validates, persists and adopts imported tokens.
pub async fn handle(app: &App, tokens: ImportTokens) -> Response {
    match credentials_from_import(tokens, app.clock.now()) {
        Ok(creds) => match app.manager.adopt(creds).await {
            Ok(expires_at) => Response::Imported { expires_at },
            Err(e) => Response::Error(ErrorFrame::from(e)),
        },
        Err(e) => Response::Error(e),
    }
}

/// The imported tokens as credentials received at `now`.
fn credentials_from_import(t: ImportTokens, now: SystemTime) -> Result<Credentials, ErrorFrame> {
    if t.refresh_token.expose_secret().trim().is_empty() {
        return Err(wire_error::bad_import(
            "the imported refresh_token is empty",
            "pass a JSON object with a non-empty \"refresh_token\"",
        ));
    }
    let access_token = t
        .access_token
        .filter(|a| !a.expose_secret().trim().is_empty());
    // Without a known expiry the access token cannot be trusted to be valid: use
    // a JWT's `exp` if it has one, otherwise refresh before first use.
    let expires_at = t
        .expires_at
        .or_else(|| {
            access_token
                .as_ref()
                .and_then(|a| crate::jwt::expiry(a.expose_secret()))
        })
        .map(crate::clock::from_unix_secs);
    let (access_token, expires_at) = match (access_token, expires_at) {
        (Some(a), Some(e)) if e > now => (Some(a), Some(e)),
        _ => (None, None),
    };
    Ok(Credentials {
        access_token,
        expires_at,
        obtained_at: now,
        obtained_boot: None,
        refresh_token: t.refresh_token,
        id_token: t.id_token,
        token_type: t.token_type.unwrap_or_else(|| "Bearer".to_string()),
        scopes: t
            .scope
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        account_id: t.account_id,
        metadata: Default::default(),
        refresh_hint_at: None,
    })
}
