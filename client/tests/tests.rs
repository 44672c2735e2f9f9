//! The client crate's tests against a scripted fake broker, as one test binary
//! (a module per file) so the crate is linked once. `discovery_env.rs` is a
//! binary of its own: it mutates the process environment.

mod support;

mod async_client;
mod blocking;
mod peer_check;
