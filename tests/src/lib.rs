//! Test support for oauth-broker.
//!
//! * [`fake_server`] — a fake OAuth 2.0 authorization server on a real loopback
//!   port that behaves like the strict real ones (rotating single-use refresh
//!   tokens, reuse detection that revokes the whole family, device flow, PKCE,
//!   both error shapes, fault injection down to dropped TCP connections).
//! * [`harness`] — starts the real `brokerd` binary in a throw-away environment
//!   for end-to-end tests, and runs `brokerctl` against it.
//!
//! Both exist so that the end-to-end tests in `broker/tests/` can assert exact
//! facts ("exactly one refresh per access-token lifetime", "zero reuse
//! detections") against something that punishes a wrong broker the way a real
//! server would, without any network access beyond loopback.

pub mod fake_server;
pub mod harness;
