//! oauth-broker: one process per account holds and rotates the OAuth refresh token.

pub mod ctl;
