//! Tiny client for [oauth-broker]: get a fresh OAuth access token from the local
//! broker daemon instead of refreshing (and racing other programs for) the
//! refresh token yourself.
//!
//! The broker is the only process that spends the account's refresh token; every
//! other program asks it for a short-lived access token over a Unix socket. This
//! crate is that "asking": a blocking [`Client`] using only std, and with the
//! `tokio` feature an async `tokio::Client` with the same methods.
//!
//! ```no_run
//! use oauth_broker_client::{Client, ExposeSecret};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), oauth_broker_client::Error> {
//! let mut client = Client::builder().client_name("my-agent").connect()?;
//! let token = match client.token(Duration::from_secs(60)) {
//!     Ok(token) => token,
//!     // Nobody is logged in, or the login is dead: a human has to act, so use
//!     // another provider meanwhile instead of retrying.
//!     Err(err) if err.needs_login() => return fallback(err),
//!     Err(err) => return Err(err),
//! };
//! let header = format!("Authorization: Bearer {}", token.expose_secret());
//! # let _ = header;
//! // … if the API answers 401, ask for a replacement:
//! let token = client.unauthorized(&token)?;
//! # let _ = token;
//! # Ok(())
//! # }
//! # fn fallback(err: oauth_broker_client::Error) -> Result<(), oauth_broker_client::Error> {
//! #     eprintln!("{err}");
//! #     Ok(())
//! # }
//! ```
//!
//! # Finding the broker
//!
//! [`Client::connect`] finds the socket like the broker does: an explicit path,
//! else `OAUTH_BROKER_SOCKET`, else `$XDG_RUNTIME_DIR/oauth-broker/<account>.sock`
//! with the account from [`ClientBuilder::account`], `OAUTH_BROKER_ACCOUNT` or
//! `default` (see [`default_socket_path`]).
//!
//! # Errors
//!
//! [`Error`] has one variant per protocol error code plus the local failures
//! ([`Error::Unreachable`], [`Error::Timeout`], …), and helpers such as
//! [`Error::needs_login`], [`Error::is_retryable`] and [`Error::retry_after`], so
//! that programs can decide what to do without parsing messages. Its `Display` is
//! one line with a hint; errors never contain a token.
//!
//! # Timeouts
//!
//! Connecting and the handshake are bounded by a connect timeout (5 s), each
//! request by a request timeout (45 s: a token request may wait for one refresh
//! at a slow token endpoint), and an interactive login by a login timeout (20
//! minutes). All are configurable on the [`ClientBuilder`].
//!
//! [oauth-broker]: https://example.invalid/oauth-broker

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod account;
mod blocking;
mod builder;
mod busy;
mod caching;
mod calls;
mod deadline;
mod discovery;
mod error;
mod exchange;
mod frames;
mod peer;
mod retry;
mod token;

#[cfg(feature = "tokio")]
pub mod tokio;

pub use account::{validate_account_name, MAX_ACCOUNT_LEN};
pub use blocking::Client;
pub use builder::{
    ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_LOGIN_TIMEOUT, DEFAULT_REQUEST_TIMEOUT,
};
pub use busy::DEFAULT_BUSY_BUDGET;
pub use caching::CachingClient;
pub use discovery::{
    default_socket_path, socket_path_too_long, ACCOUNT_ENV, DEFAULT_ACCOUNT, MAX_SOCKET_PATH_LEN,
    SOCKET_ENV,
};
pub use error::Error;
pub use token::AccessToken;

/// The protocol types that appear in this crate's API.
pub use oauth_broker_proto::{
    ErrorCode, ImportTokens, LoginEvent, LoginMethod, StatusReport, TokenState, Welcome,
};
/// Re-exported so that callers need not depend on `secrecy` to read a token.
pub use secrecy::{ExposeSecret, SecretString};

/// The wire protocol crate, for the less common types (e.g. the parts of a
/// [`StatusReport`]).
pub use oauth_broker_proto as proto;
