//! OpenAI's device login scheme (what `codex login --device-auth` speaks).
//!
//! Why a second device flow: OpenAI's is not RFC 8628. The client asks
//! `POST /api/accounts/deviceauth/usercode` for a `device_auth_id` and a user
//! code (with `interval` as a *string*), polls
//! `POST /api/accounts/deviceauth/token` — 403 or 404 while the user has not
//! approved (this fake alternates them, so clients must accept both) — and on
//! approval gets `{authorization_code, code_challenge, code_verifier}`: the
//! server made up the PKCE pair itself. The code is then redeemed at
//! `/oauth/token` like any authorization code, with
//! `redirect_uri={issuer}/deviceauth/callback` and that verifier, so it is
//! registered with [`AuthCodes`](super::authcode::AuthCodes) on approval.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::authcode::{s256, AuthCodes, AuthorizeAnswer};
use super::config::AuthorizeBehavior;
use super::tokens;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Pending,
    Approved {
        code: String,
        challenge: String,
        verifier: String,
    },
    Denied,
    Consumed,
}

#[derive(Debug)]
struct Authorization {
    device_auth_id: String,
    user_code: String,
    expires_at: Instant,
    status: Status,
}

/// One poll's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpenAiPoll {
    /// Not approved yet: 403 or 404.
    Pending,
    /// `{authorization_code, code_challenge, code_verifier}`.
    Approved {
        code: String,
        challenge: String,
        verifier: String,
    },
    /// The user said no (an invented answer: 400 `access_denied`).
    Denied,
}

#[derive(Debug, Default)]
pub(crate) struct OpenAiDevice {
    auths: Vec<Authorization>,
    last_user_code: Option<String>,
}

fn normalize(user_code: &str) -> String {
    user_code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl OpenAiDevice {
    /// A new authorization: `(device_auth_id, user_code)`.
    pub(crate) fn start(&mut self, ttl: Duration, now: Instant) -> (String, String) {
        let device_auth_id = format!("deviceauth_{}", tokens::random_hex(12));
        let user_code = tokens::user_code();
        self.auths.push(Authorization {
            device_auth_id: device_auth_id.clone(),
            user_code: user_code.clone(),
            expires_at: now + ttl,
            status: Status::Pending,
        });
        self.last_user_code = Some(user_code.clone());
        (device_auth_id, user_code)
    }

    pub(crate) fn last_user_code(&self) -> Option<String> {
        self.last_user_code.clone()
    }

    /// A poll; unknown, spent or expired authorizations look pending (404),
    /// as far as is known of the real server.
    pub(crate) fn poll(
        &mut self,
        device_auth_id: &str,
        user_code: &str,
        now: Instant,
    ) -> OpenAiPoll {
        let Some(a) = self.auths.iter_mut().find(|a| {
            a.device_auth_id == device_auth_id && normalize(&a.user_code) == normalize(user_code)
        }) else {
            return OpenAiPoll::Pending;
        };
        if now >= a.expires_at {
            return OpenAiPoll::Pending;
        }
        match a.status.clone() {
            Status::Pending | Status::Consumed => OpenAiPoll::Pending,
            Status::Denied => OpenAiPoll::Denied,
            Status::Approved {
                code,
                challenge,
                verifier,
            } => {
                a.status = Status::Consumed;
                OpenAiPoll::Approved {
                    code,
                    challenge,
                    verifier,
                }
            }
        }
    }

    /// The user approves: the server makes up a PKCE pair and registers an
    /// authorization code for `redirect_uri` with the code store.
    pub(crate) fn approve(
        &mut self,
        user_code: &str,
        codes: &mut AuthCodes,
        client_id: &str,
        redirect_uri: &str,
        scope: &str,
        now: Instant,
    ) -> bool {
        let wanted = normalize(user_code);
        let Some(a) = self
            .auths
            .iter_mut()
            .find(|a| a.status == Status::Pending && normalize(&a.user_code) == wanted)
        else {
            return false;
        };
        let verifier = format!("{}{}", tokens::random_hex(24), tokens::random_hex(8));
        let challenge = s256(&verifier);
        let query: BTreeMap<String, String> = [
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("scope", scope),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let AuthorizeAnswer::Redirect(location) =
            codes.authorize(&query, AuthorizeBehavior::Approve, client_id, scope, now)
        else {
            return false;
        };
        let Some(code) = url::Url::parse(&location).ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
        }) else {
            return false;
        };
        a.status = Status::Approved {
            code,
            challenge,
            verifier,
        };
        true
    }

    pub(crate) fn deny(&mut self, user_code: &str) -> bool {
        let wanted = normalize(user_code);
        self.auths
            .iter_mut()
            .find(|a| a.status == Status::Pending && normalize(&a.user_code) == wanted)
            .map(|a| a.status = Status::Denied)
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approve_registers_a_code_for_the_callback() {
        let mut d = OpenAiDevice::default();
        let mut codes = AuthCodes::default();
        let now = Instant::now();
        let (id, user) = d.start(Duration::from_secs(60), now);
        assert_eq!(d.poll(&id, &user, now), OpenAiPoll::Pending);
        assert!(d.approve(
            &user,
            &mut codes,
            "c",
            "http://x/deviceauth/callback",
            "s",
            now
        ));
        let OpenAiPoll::Approved {
            code,
            challenge,
            verifier,
        } = d.poll(&id, &user.to_lowercase(), now)
        else {
            panic!("not approved")
        };
        assert_eq!(challenge, s256(&verifier));
        assert_eq!(
            codes.exchange(
                &code,
                Some("http://x/deviceauth/callback"),
                Some(&verifier),
                "c",
                now
            ),
            Ok("s".to_owned())
        );
        assert_eq!(d.poll(&id, &user, now), OpenAiPoll::Pending);
    }

    #[test]
    fn deny_and_expiry() {
        let mut d = OpenAiDevice::default();
        let now = Instant::now();
        let (id, user) = d.start(Duration::from_secs(60), now);
        assert!(d.deny(&user));
        assert_eq!(d.poll(&id, &user, now), OpenAiPoll::Denied);
        let (id2, user2) = d.start(Duration::ZERO, now);
        assert_eq!(d.poll(&id2, &user2, now), OpenAiPoll::Pending);
        assert_eq!(d.poll("nope", &user2, now), OpenAiPoll::Pending);
    }
}
