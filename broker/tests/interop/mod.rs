//! Support for the interoperability test against an independent, OpenID
//! Certified authorization server (`interop_oidc_provider.rs`).

pub mod browser;
pub mod login_process;
pub mod raw_connection;
pub mod server;
