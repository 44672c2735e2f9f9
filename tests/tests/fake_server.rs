//! Tests of the fake authorization server through a real HTTP client.
//!
//! One module per concern.

mod common;
mod device;
mod faults;
mod pkce;
mod refresh;
mod resources;
mod waiting;
