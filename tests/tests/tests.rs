//! The tests crate's own tests as one test binary (a module per file), so the
//! crate and its heavy dependencies (axum, reqwest, rustls) are linked once:
//! the fake authorization server through a real HTTP client, and the harness
//! with `stub-brokerd` standing in for the daemon.

mod fake_server;
mod harness;
