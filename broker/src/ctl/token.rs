//! `brokerctl token`: print an access token for "auth command" hooks.
//!
//! Stdout carries the token and a newline and nothing else, so the command fits
//! every hook that runs a program and reads a credential from its output
//! (Codex's `auth.command`, `gh auth token`-style scripts, SDK callables).
//! `--json` prints one object with the field names of an OAuth token response,
//! which tools that take token JSON accept as is.

use super::{exit, output, Global};
use clap::Args;
use oauth_broker_client::{AccessToken, ExposeSecret};
use serde_json::{Map, Value};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// Print a valid access token on stdout.
#[derive(Debug, PartialEq, Eq, Args)]
pub struct TokenArgs {
    /// The token must stay valid at least this many more seconds (the broker
    /// refreshes first if needed).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub min_valid: u64,
    /// Print a JSON object (access_token, token_type, expires_in, expires_at,
    /// scope, token_id, and provider metadata) instead of the bare token.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(global: &Global, args: &TokenArgs) -> ExitCode {
    // One round trip: the hello and the token request go out in one write.
    let token = match global
        .client_builder()
        .connect_and_token(Duration::from_secs(args.min_valid))
    {
        Ok((_client, token)) => token,
        Err(err) => return exit::fail(&err),
    };
    let text = if args.json {
        format!("{}\n", token_json(&token, SystemTime::now()))
    } else {
        format!("{}\n", token.expose_secret())
    };
    exit::print(&text)
}

/// The common command lines of `brokerctl token`, read without clap.
///
/// Why: `brokerctl token` is a whole process per token (an `auth.command`
/// hook runs it before every API call), and building clap's parser for the
/// whole command tree is a measurable part of its run time (README
/// "Performance"). Only plain forms are recognised — `[--socket PATH]
/// [--account NAME] token [--min-valid SECS] [--json]`, options in any order
/// around `token`, each value as the next argument and valid UTF-8 — and
/// `None` sends everything else (help, `--opt=value`, typos, bad numbers) to
/// clap, which parses and reports exactly as before. A test checks that every
/// form accepted here means what clap makes of it.
pub fn parse_plain(args: &[OsString]) -> Option<(Global, TokenArgs)> {
    let mut global = Global {
        socket: None,
        account: None,
    };
    let mut token = TokenArgs {
        min_valid: 60,
        json: false,
    };
    let mut seen_token = false;
    let mut seen = [false; 4];
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let arg = arg.to_str()?;
        let (slot, takes_value) = match arg {
            "token" if !seen_token => {
                seen_token = true;
                continue;
            }
            "--socket" => (0, true),
            "--account" => (1, true),
            "--min-valid" if seen_token => (2, true),
            "--json" if seen_token => (3, false),
            _ => return None,
        };
        // A repeated option: let clap decide what that means.
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
        if !takes_value {
            token.json = true;
            continue;
        }
        let value = rest.next()?.to_str()?;
        if value.is_empty() || value.starts_with('-') {
            return None;
        }
        match slot {
            0 => global.socket = Some(PathBuf::from(value)),
            1 => global.account = Some(value.to_string()),
            _ => token.min_valid = plain_number(value)?,
        }
    }
    seen_token.then_some((global, token))
}

/// Decimal digits only (no sign, no `_`), fitting a `u64`.
fn plain_number(text: &str) -> Option<u64> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

/// The standard fields, which metadata never overrides.
const STANDARD_FIELDS: [&str; 6] = [
    "access_token",
    "token_type",
    "expires_in",
    "expires_at",
    "scope",
    "token_id",
];

/// The `--json` object. `expires_in` is honest: the seconds left at `now`, not
/// the lifetime the token was issued with. `scope` is omitted when the provider
/// did not say (as in an OAuth token response).
pub fn token_json(token: &AccessToken, now: SystemTime) -> Value {
    let expires_at = output::unix_secs(token.expires_at());
    let expires_in = expires_at.saturating_sub(output::unix_secs(now));
    let mut object = Map::new();
    object.insert("access_token".into(), token.expose_secret().into());
    object.insert("token_type".into(), token.token_type().into());
    object.insert("expires_in".into(), expires_in.into());
    object.insert("expires_at".into(), expires_at.into());
    if !token.scopes().is_empty() {
        object.insert("scope".into(), token.scopes().join(" ").into());
    }
    object.insert("token_id".into(), token.token_id().into());
    for (key, value) in token.metadata() {
        if !STANDARD_FIELDS.contains(&key.as_str()) {
            object.insert(key.clone(), value.clone().into());
        }
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use oauth_broker_client::proto::TokenGrant;
    use oauth_broker_client::SecretString;
    use serde_json::json;
    use std::time::UNIX_EPOCH;

    fn token(scopes: &[&str], metadata: &[(&str, &str)]) -> AccessToken {
        AccessToken::from(TokenGrant {
            access_token: SecretString::from("at-123"),
            token_type: "Bearer".into(),
            expires_at: 1_700_003_600,
            token_id: "0123456789ab".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            id_token: None,
            obtained_at: None,
            refresh_token_id: None,
        })
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// Every command line the plain reader takes means the same to clap.
    #[test]
    fn plain_command_lines_mean_what_clap_makes_of_them() {
        let accepted = [
            &["brokerctl", "token"][..],
            &["brokerctl", "token", "--json"],
            &["brokerctl", "token", "--min-valid", "300"],
            &["brokerctl", "token", "--min-valid", "0", "--json"],
            &[
                "brokerctl",
                "token",
                "--json",
                "--min-valid",
                "18446744073709551615",
            ],
            &["brokerctl", "--socket", "/s.sock", "token"],
            &["brokerctl", "--account", "work", "token", "--json"],
            &[
                "brokerctl",
                "token",
                "--socket",
                "/s.sock",
                "--account",
                "w",
            ],
            &[
                "brokerctl",
                "--socket",
                "/a b/s.sock",
                "token",
                "--account",
                "w",
                "--min-valid",
                "5",
            ],
        ];
        for args in accepted {
            let (global, token) = parse_plain(&os(args)).unwrap_or_else(|| panic!("{args:?}"));
            let cli = crate::ctl::Cli::try_parse_from(args).unwrap();
            let crate::ctl::Command::Token(clap_token) = cli.command else {
                panic!("not token: {args:?}")
            };
            assert_eq!(token, clap_token, "{args:?}");
            assert_eq!(global.socket, cli.global.socket, "{args:?}");
            assert_eq!(global.account, cli.global.account, "{args:?}");
        }
    }

    /// Everything else goes to clap (which may accept it, or report it).
    #[test]
    fn anything_unusual_is_left_to_clap() {
        for args in [
            &["brokerctl"][..],
            &["brokerctl", "status"],
            &["brokerctl", "token", "--help"],
            &["brokerctl", "--help"],
            &["brokerctl", "--version"],
            &["brokerctl", "token", "--min-valid=5"],
            &["brokerctl", "token", "--min-valid"],
            &["brokerctl", "token", "--min-valid", "-5"],
            &["brokerctl", "token", "--min-valid", "+5"],
            &["brokerctl", "token", "--min-valid", "1e3"],
            &["brokerctl", "token", "--min-valid", "99999999999999999999"],
            &["brokerctl", "token", "--json", "--json"],
            &["brokerctl", "token", "token"],
            &["brokerctl", "--json", "token"],
            &["brokerctl", "--socket", "token"],
            &["brokerctl", "--socket", "", "token"],
            &["brokerctl", "token", "extra"],
            &["brokerctl", "token", "-j"],
            &["brokerctl", "tokne"],
        ] {
            assert!(parse_plain(&os(args)).is_none(), "{args:?}");
        }
    }

    #[test]
    fn json_has_oauth_token_response_fields() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let value = token_json(&token(&["openid", "offline_access"], &[]), now);
        assert_eq!(
            value,
            json!({
                "access_token": "at-123",
                "token_type": "Bearer",
                "expires_in": 3600,
                "expires_at": 1_700_003_600u64,
                "scope": "openid offline_access",
                "token_id": "0123456789ab",
            })
        );
        // One line.
        assert!(!value.to_string().contains('\n'));
    }

    #[test]
    fn expires_in_is_what_is_left_now_never_negative() {
        let later = UNIX_EPOCH + Duration::from_secs(1_700_003_000);
        assert_eq!(token_json(&token(&[], &[]), later)["expires_in"], 600);
        let after_expiry = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(token_json(&token(&[], &[]), after_expiry)["expires_in"], 0);
    }

    #[test]
    fn no_scope_field_without_scopes_and_metadata_is_merged_but_never_overrides() {
        let now = UNIX_EPOCH;
        let value = token_json(
            &token(&[], &[("account_id", "acct-1"), ("access_token", "evil")]),
            now,
        );
        assert!(value.get("scope").is_none());
        assert_eq!(value["account_id"], "acct-1");
        assert_eq!(value["access_token"], "at-123");
    }
}
