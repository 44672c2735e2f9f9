//! oauth-broker: one process per account holds and rotates the OAuth refresh
//! token; every other program asks it for a short-lived access token over a Unix
//! socket.
//!
//! Data flows one way: socket → [`server`] → [`manager`] → [`oauth`] →
//! [`provider`]; the [`store`] is only called by the manager.

pub mod backoff;
pub mod capped_read;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod ctl;
pub mod daemon;
pub mod durable;
pub mod hardening;
pub mod journal;
pub mod jwt;
pub mod logging;
pub mod login;
pub mod manager;
pub mod oauth;
pub mod paths;
pub mod projection;
pub mod provider;
pub mod proxy;
pub mod server;
pub mod stale_socket;
pub mod store;
pub mod systemd;
pub mod trusted_path;
