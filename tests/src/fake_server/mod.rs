//! A fake OAuth 2.0 authorization server for tests.
//!
//! Why a fake and not mocks: the broker's hard problems (single-flight refresh,
//! persist-before-reply, ambiguous failures) only show against a server with
//! real state, real HTTP and real TCP. This one listens on `127.0.0.1:<random
//! port>`, runs on its own thread and tokio runtime (usable from plain
//! `#[test]` and from `#[tokio::test]`), and is as strict as the servers that
//! log users out in practice:
//!
//! * refresh tokens are single-use and rotate; they belong to *families* (one
//!   per login); replaying a used one revokes the whole family, newest refresh
//!   token and all its access tokens included (`families.rs`);
//! * errors come in the flat RFC 6749 shape or the nested OpenAI shape
//!   ([`ErrorShape`]);
//! * device authorization (RFC 8628), authorization code with PKCE S256,
//!   revocation (RFC 7009), OIDC discovery, a protected resource (`/userinfo`)
//!   and a GitHub-Copilot-style token exchange;
//! * faults can be injected into the token endpoint, down to closing the TCP
//!   connection after the refresh token was consumed ([`Fault`]).
//!
//! Every counter in [`Stats`] is updated under one lock together with the
//! outcome it counts, so tests can assert exact numbers, and waits
//! ([`FakeAuthServer::wait_until`]) are driven by notifications, not sleeps.
//!
//! Start one with [`FakeAuthServer::start`].

mod authcode;
mod body;
mod browser;
mod config;
mod connection;
mod copilot;
mod device;
mod errors;
mod families;
mod fault;
mod handle;
mod openai_device;
mod routes;
mod state;
mod stats;
mod tokens;

pub use config::{AuthorizeBehavior, ErrorShape, FakeConfig};
pub use fault::Fault;
pub use handle::{BrowserOutcome, FakeAuthServer};
pub use stats::{
    BodyEncoding, DeviceCodeInfo, FamilyInfo, IssuedTokens, Stats, TokenOutcome,
    TokenRequestRecord, WaitTimeout,
};
