//! Tests of the fake authorization server through a real HTTP client.
//!
//! One test binary with submodules (one per concern) keeps link time low.

#[path = "fake_server/common.rs"]
mod common;
#[path = "fake_server/device.rs"]
mod device;
#[path = "fake_server/faults.rs"]
mod faults;
#[path = "fake_server/pkce.rs"]
mod pkce;
#[path = "fake_server/refresh.rs"]
mod refresh;
#[path = "fake_server/resources.rs"]
mod resources;
#[path = "fake_server/waiting.rs"]
mod waiting;
