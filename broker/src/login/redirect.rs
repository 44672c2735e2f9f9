//! What comes back from the authorization server's redirect, whether the
//! browser delivered it to the loopback listener or the user pasted it: a code
//! (with `state`) or an error. Parsing and the `state` check live here so both
//! paths apply exactly the same rules.

use super::failure::LoginFailure;
use super::pkce::state_matches;
use oauth_broker_proto::{ErrorCode, SecretString};
use url::Url;

/// Longest provider text quoted in our messages.
const MAX_QUOTED: usize = 200;

/// The parameters of a redirect.
#[derive(Debug)]
pub enum Redirect {
    /// The user approved.
    Code {
        /// The authorization code (secret until exchanged).
        code: SecretString,
        /// The returned `state`.
        state: Option<String>,
    },
    /// The authorization server reports an error (`access_denied`, …).
    Error {
        /// RFC 6749 §4.1.2.1 error code.
        error: String,
        /// Its description, if any.
        description: Option<String>,
        /// The returned `state`.
        state: Option<String>,
    },
}

impl Redirect {
    /// Reads `code`/`state` or `error`/`error_description`/`state` from a query
    /// string (`a=b&c=d`, without `?`). `None` when it has neither.
    pub fn from_query(query: &str) -> Option<Redirect> {
        let mut code = None;
        let mut state = None;
        let mut error = None;
        let mut description = None;
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "code" if !value.is_empty() => code = Some(value.into_owned()),
                "state" => state = Some(value.into_owned()),
                "error" if !value.is_empty() => error = Some(value.into_owned()),
                "error_description" => description = Some(value.into_owned()),
                _ => {}
            }
        }
        match (error, code) {
            (Some(error), _) => Some(Redirect::Error {
                error: sanitize(&error),
                description: description.as_deref().map(sanitize),
                state,
            }),
            (None, Some(code)) => Some(Redirect::Code {
                code: SecretString::from(code),
                state,
            }),
            (None, None) => None,
        }
    }

    /// Reads what a user pasted: the full redirect URL (query or fragment
    /// parameters), a bare query string, or `code#state` as Anthropic's page
    /// shows it.
    pub fn from_paste(text: &str) -> Result<Redirect, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("nothing was pasted".into());
        }
        if let Ok(url) = Url::parse(text) {
            if url.has_host() {
                return url
                    .query()
                    .and_then(Redirect::from_query)
                    .or_else(|| url.fragment().and_then(Redirect::from_query))
                    .ok_or_else(|| {
                        "the pasted URL has neither a `code` nor an `error` parameter; paste the address the browser was sent to after you approved".to_string()
                    });
            }
        }
        let query = text.trim_start_matches('?');
        if query.contains("code=") || query.contains("error=") {
            if let Some(redirect) = Redirect::from_query(query) {
                return Ok(redirect);
            }
        }
        match text.rsplit_once('#') {
            Some((code, state)) if !code.is_empty() && !state.is_empty() && !code.contains(char::is_whitespace) => {
                Ok(Redirect::Code {
                    code: SecretString::from(code.to_string()),
                    state: Some(state.to_string()),
                })
            }
            _ => Err(
                "not a redirect URL or `code#state`; paste the whole address the browser was sent to (or the code the provider's page shows)"
                    .into(),
            ),
        }
    }

    /// Whether the redirect carries the `state` of the login this broker
    /// started (a missing one never matches).
    pub fn state_matches(&self, expected_state: &str) -> bool {
        let (Redirect::Code { state, .. } | Redirect::Error { state, .. }) = self;
        state
            .as_deref()
            .is_some_and(|got| state_matches(expected_state, got))
    }

    /// Checks `state` and turns the redirect into the code to exchange. A
    /// missing or different `state` means the redirect does not belong to the
    /// login this broker started (CSRF, or a stale tab): the code is never
    /// exchanged.
    pub fn into_code(
        self,
        expected_state: &str,
        account: &str,
    ) -> Result<SecretString, LoginFailure> {
        if !self.state_matches(expected_state) {
            return Err(state_mismatch(account));
        }
        match self {
            Redirect::Code { code, .. } => Ok(code),
            Redirect::Error {
                error, description, ..
            } => {
                let detail = description.map(|d| format!(": {d}")).unwrap_or_default();
                Err(LoginFailure::retry_login(
                    account,
                    format!("the authorization server ended the login with {error}{detail}"),
                ))
            }
        }
    }
}

fn state_mismatch(account: &str) -> LoginFailure {
    LoginFailure::new(
        ErrorCode::BadRequest,
        "state mismatch: the redirect does not belong to the login this broker started (a stale browser tab, or a forged request); the code was not used",
    )
    .with_hint(format!(
        "run `{}` again and finish it in the tab it opens",
        crate::manager::errors::ctl(account, "relogin")
    ))
}

fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_QUOTED)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_proto::ExposeSecret;

    fn code_of(r: Result<Redirect, String>) -> (String, Option<String>) {
        match r.unwrap() {
            Redirect::Code { code, state } => (code.expose_secret().to_string(), state),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pasted_forms() {
        assert_eq!(
            code_of(Redirect::from_paste(
                " http://localhost:1455/auth/callback?code=c1&state=s1 \n"
            )),
            ("c1".into(), Some("s1".into()))
        );
        assert_eq!(
            code_of(Redirect::from_paste("c2#s2")),
            ("c2".into(), Some("s2".into()))
        );
        assert_eq!(
            code_of(Redirect::from_paste("?code=c3&state=s3")),
            ("c3".into(), Some("s3".into()))
        );
        assert_eq!(
            code_of(Redirect::from_paste(
                "https://x.example/cb#code=c4&state=s4"
            )),
            ("c4".into(), Some("s4".into()))
        );
        assert!(Redirect::from_paste("").is_err());
        assert!(Redirect::from_paste("just-a-code").is_err());
        assert!(Redirect::from_paste("https://x.example/cb?foo=1").is_err());
    }

    #[test]
    fn state_is_checked_for_codes_and_errors() {
        let ok = Redirect::from_query("code=abc&state=good").unwrap();
        assert_eq!(
            ok.into_code("good", "default").unwrap().expose_secret(),
            "abc"
        );
        let bad = Redirect::from_query("code=abc&state=evil").unwrap();
        let err = bad.into_code("good", "default").unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.message.contains("state mismatch"), "{}", err.message);
        let missing = Redirect::from_query("code=abc").unwrap();
        assert!(!missing.state_matches("good"));
        assert!(missing.into_code("good", "default").is_err());
        let forged_denial = Redirect::from_query("error=access_denied&state=evil").unwrap();
        assert!(!forged_denial.state_matches("good"));
        assert!(forged_denial
            .into_code("good", "default")
            .unwrap_err()
            .message
            .contains("state mismatch"));
        let denied =
            Redirect::from_query("error=access_denied&error_description=no&state=good").unwrap();
        let err = denied.into_code("good", "default").unwrap_err();
        assert_eq!(err.code, ErrorCode::ReloginRequired);
        assert!(err.message.contains("access_denied: no"), "{}", err.message);
        assert!(Redirect::from_query("foo=bar").is_none());
    }

    #[test]
    fn debug_never_shows_the_code() {
        let r = Redirect::from_query("code=SECRETCODE&state=s").unwrap();
        assert!(!format!("{r:?}").contains("SECRETCODE"));
    }
}
