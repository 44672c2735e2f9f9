//! Serde helpers for secrets.
//!
//! `secrecy` deliberately does not implement `Serialize` for `SecretString`: a
//! secret should only be written where that is the point. The wire messages that
//! carry a token are such places, and opt in through these functions.

use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;

pub(crate) fn serialize<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

pub(crate) fn serialize_opt<S: Serializer>(
    secret: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => s.serialize_some(secret.expose_secret()),
        None => s.serialize_none(),
    }
}
