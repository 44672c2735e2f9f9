//! The request table: every request–answer call of the clients, once.
//!
//! Each row says which request a call sends, whether it is idempotent (may be
//! resent after a reconnect even if the broker may have received it, see
//! [`crate::retry`]) and how its answer is read. The blocking client and the
//! async client generate their public methods from this one table (with
//! [`with_calls!`]), so a call cannot exist in one and not the other, nor be
//! retried or read differently. Only the login stream (`relogin`), which is
//! not one request and one answer, is written out in each client.

use crate::Error;
use oauth_broker_proto::{Request, Response};

/// One call, ready to send.
pub(crate) struct Call<T> {
    /// What goes on the wire.
    pub(crate) request: Request,
    /// Whether resending after a lost connection is harmless.
    pub(crate) idempotent: bool,
    /// How the answer is read (an error frame becomes the matching error).
    pub(crate) answer: fn(Response) -> Result<T, Error>,
}

/// Hands the table to `$emit`, a macro that turns each row into a method.
///
/// A row: doc comment, `name(args) -> Output`, then the request built from
/// the arguments, `idempotent`, and the answer reader.
macro_rules! with_calls {
    ($emit:ident) => {
        $emit! {
            /// An access token valid for at least `min_valid` more (unless even a
            /// fresh token lives shorter, in which case the fresh one). May wait
            /// for one refresh.
            token(min_valid: std::time::Duration) -> crate::AccessToken {
                request: oauth_broker_proto::Request::Token {
                    min_valid_secs: min_valid.as_secs(),
                    identity: false,
                },
                idempotent: true,
                answer: crate::exchange::token,
            }

            /// [`token`](Self::token) with the login's identity too: the OIDC id
            /// token, when the token was obtained, the refresh token's
            /// fingerprint ([`crate::AccessToken::id_token`] and the like). For
            /// a client-side projector writing a tool's credential file; every
            /// other caller wants `token` (the user's id token is not its
            /// business). A broker that predates it answers without them.
            token_with_identity(min_valid: std::time::Duration) -> crate::AccessToken {
                request: oauth_broker_proto::Request::Token {
                    min_valid_secs: min_valid.as_secs(),
                    identity: true,
                },
                idempotent: true,
                answer: crate::exchange::token,
            }

            /// Reports that a server rejected `token` with 401 and returns a
            /// replacement: a newer token if the broker already has one, else a
            /// freshly refreshed one.
            unauthorized(token: &crate::AccessToken) -> crate::AccessToken {
                request: oauth_broker_proto::Request::Unauthorized {
                    token_id: token.token_id().to_string(),
                },
                idempotent: true,
                answer: crate::exchange::token,
            }

            /// The broker's state. Never waits behind a refresh.
            status() -> oauth_broker_proto::StatusReport {
                request: oauth_broker_proto::Request::Status,
                idempotent: true,
                answer: crate::exchange::status,
            }

            /// Hands existing tokens to the broker, which persists and from then
            /// on owns them. Returns the access token's expiry, or `None` when the
            /// broker will refresh before first use.
            import(tokens: oauth_broker_proto::ImportTokens) -> Option<std::time::SystemTime> {
                request: oauth_broker_proto::Request::Import { tokens },
                idempotent: false,
                answer: crate::exchange::imported,
            }

            /// Forgets the login (revoking at the server when possible). Returns
            /// whether the server confirmed the revocation.
            logout() -> bool {
                request: oauth_broker_proto::Request::Logout,
                idempotent: false,
                answer: crate::exchange::logged_out,
            }

            /// During a browser login running elsewhere: hands the broker the
            /// redirect URL the user pasted (when the browser could not reach the
            /// loopback listener).
            complete_login(redirect_url: &str) -> oauth_broker_proto::LoginEvent {
                request: oauth_broker_proto::Request::CompleteLogin {
                    redirect_url: redirect_url.to_string(),
                },
                idempotent: false,
                answer: crate::exchange::login_completed,
            }

            /// Stops the broker writing a projection target's file (its kind,
            /// e.g. `codex`, or its path) and gives the file back to its tool: the
            /// backup of the tool's own login if the broker made one, else the
            /// broker's file is removed.
            project_restore(target: &str) -> oauth_broker_proto::ProjectionRestored {
                request: oauth_broker_proto::Request::ProjectRestore {
                    target: target.to_string(),
                },
                idempotent: false,
                answer: crate::exchange::project_restored,
            }

            /// Issues a capability key for the broker's header-injecting proxy
            /// (named `name`, or `key-N`). The key is in the answer only: the
            /// broker keeps its hash.
            proxy_key(name: Option<&str>) -> oauth_broker_proto::ProxyKeyIssued {
                request: oauth_broker_proto::Request::ProxyKey {
                    name: name.map(str::to_string),
                },
                idempotent: false,
                answer: crate::exchange::proxy_key,
            }

            /// Revokes the proxy key named `name`; the proxy refuses it at once.
            proxy_revoke(name: &str) -> String {
                request: oauth_broker_proto::Request::ProxyRevoke {
                    name: name.to_string(),
                },
                idempotent: true,
                answer: crate::exchange::proxy_revoked,
            }
        }
    };
}
pub(crate) use with_calls;

/// Turns each row into a constructor of its [`Call`], e.g. `calls::token(d)`.
macro_rules! call_constructors {
    ($(
        $(#[$doc:meta])*
        $name:ident($($arg:ident: $ty:ty),*) -> $out:ty {
            request: $request:expr,
            idempotent: $idempotent:expr,
            answer: $answer:path,
        }
    )*) => {
        $(
            $(#[$doc])*
            pub(crate) fn $name($($arg: $ty),*) -> Call<$out> {
                Call {
                    request: $request,
                    idempotent: $idempotent,
                    answer: $answer,
                }
            }
        )*
    };
}
with_calls!(call_constructors);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{exchange, AccessToken};
    use oauth_broker_proto::{ImportTokens, ProjectionRestored, SecretString, StatusReport};
    use std::time::{Duration, SystemTime};

    /// What retry rule each request gets is part of the contract (see
    /// [`crate::retry`]): asking again is harmless only for these three.
    #[test]
    fn only_reads_are_idempotent() {
        let token = AccessToken::from(oauth_broker_proto::TokenGrant {
            access_token: SecretString::from("t"),
            token_type: "Bearer".into(),
            expires_at: 1,
            token_id: "0123456789ab".into(),
            scopes: Vec::new(),
            metadata: Default::default(),
            id_token: None,
            obtained_at: None,
            refresh_token_id: None,
        });
        assert!(self::token(Duration::from_secs(1)).idempotent);
        assert!(unauthorized(&token).idempotent);
        assert!(status().idempotent);
        let tokens = ImportTokens {
            refresh_token: SecretString::from("r"),
            access_token: None,
            expires_at: None,
            id_token: None,
            scope: None,
            token_type: None,
            account_id: None,
        };
        assert!(!import(tokens).idempotent);
        assert!(!logout().idempotent);
        assert!(!complete_login("http://127.0.0.1/cb?code=x").idempotent);
        assert!(!project_restore("codex").idempotent);
    }

    #[test]
    fn requests_carry_the_arguments() {
        assert!(matches!(
            self::token(Duration::from_millis(90_500)).request,
            Request::Token {
                min_valid_secs: 90,
                identity: false
            }
        ));
        assert!(matches!(
            project_restore("codex").request,
            Request::ProjectRestore { target } if target == "codex"
        ));
        let answer: fn(Response) -> Result<StatusReport, Error> = status().answer;
        assert!(answer(Response::LoggedOut { revoked: true }).is_err());
        let _: fn(Response) -> Result<Option<SystemTime>, Error> = exchange::imported;
        let _: fn(Response) -> Result<ProjectionRestored, Error> = exchange::project_restored;
    }
}
