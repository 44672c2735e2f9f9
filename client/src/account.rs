//! The one rule for account names, shared by the clients and `brokerd`.
//!
//! An account name becomes a file name (its socket, config file and state
//! directory), so it is kept to a small, safe alphabet: nothing that could
//! escape a directory, hide a file or confuse a shell. Clients check it before
//! they build a socket path, and brokerd checks it at start — with this very
//! function, so a name one side accepts the other never refuses. (The Python
//! client mirrors it; its tests pin the same cases.)

use crate::Error;

/// Longest account name, in bytes.
pub const MAX_ACCOUNT_LEN: usize = 64;

/// Checks an account name: 1 to [`MAX_ACCOUNT_LEN`] ASCII letters, digits,
/// `-`, `_` or `.`, not starting with `.`.
///
/// ```
/// use oauth_broker_client::validate_account_name;
/// assert!(validate_account_name("work-2").is_ok());
/// assert!(validate_account_name("../etc").is_err());
/// ```
pub fn validate_account_name(account: &str) -> Result<(), Error> {
    let ok = !account.is_empty()
        && account.len() <= MAX_ACCOUNT_LEN
        && !account.starts_with('.')
        && account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config {
            message: format!(
                "invalid account name {account:?}: use 1-{MAX_ACCOUNT_LEN} letters, digits, '-', '_' or '.' (not starting with '.')"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_pass() {
        for good in [
            "default",
            "work",
            "a",
            "Work-2_x.y",
            "a..b",
            &"x".repeat(64),
        ] {
            assert!(validate_account_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn anything_that_could_escape_hide_or_confuse_is_refused() {
        let too_long = "x".repeat(65);
        for bad in [
            "", "../x", "a/b", ".hidden", ".", "..", "a\0b", "a\nb", "a b", "ä", "a:b", "a*",
            "~user", &too_long,
        ] {
            let err = validate_account_name(bad).unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{bad:?}");
            let text = err.to_string();
            assert!(text.starts_with("invalid account name"), "{text}");
            assert!(!text.contains('\n'), "{text}");
        }
    }
}
