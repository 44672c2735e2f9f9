//! A broker configuration pointing at the fake server.
//!
//! Only the keys the broker's `generic` preset is known to accept: the
//! broker rejects unknown keys, so this must not guess at new ones.

use crate::fake_server::FakeAuthServer;

/// TOML for `brokerd` with the generic preset and every endpoint on `fake`.
pub fn generic_config(fake: &FakeAuthServer) -> String {
    let client_id = fake.config().client_id;
    format!(
        r#"preset = "generic"
token_endpoint = "{token}"
device_authorization_endpoint = "{device}"
authorization_endpoint = "{authorize}"
revocation_endpoint = "{revoke}"
client_id = "{client_id}"
scopes = ["openid", "offline_access"]
refresh_body = "form"
"#,
        token = fake.token_endpoint(),
        device = fake.device_authorization_endpoint(),
        authorize = fake.authorization_endpoint(),
        revoke = fake.revocation_endpoint(),
    )
}
