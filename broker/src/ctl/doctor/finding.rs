//! One line of `brokerctl doctor`: a check, its verdict, and what to do.

use super::super::exit;
use serde::Serialize;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but something deserves a look.
    Warn,
    /// Broken: the fix says what to do.
    Fail,
}

impl Level {
    /// The word that starts the line.
    pub fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        }
    }
}

/// One finding. Never holds a token: messages are built from the status
/// report (fingerprints, times, paths) and from file metadata.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was checked: `socket`, `broker`, `login`, `clock`, `config`,
    /// `state`, `projection`.
    pub check: &'static str,
    /// The verdict.
    pub level: Level,
    /// What was found, one line.
    pub message: String,
    /// What to do about it, one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The exit code this finding asks for (`status`'s codes), when it fails.
    #[serde(skip)]
    pub exit_code: u8,
}

impl Finding {
    /// A passed check.
    pub fn ok(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            level: Level::Ok,
            message: message.into(),
            fix: None,
            exit_code: exit::OK,
        }
    }

    /// A check that deserves a look but breaks nothing (exit code unaffected).
    pub fn warn(
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            level: Level::Warn,
            message: message.into(),
            fix: Some(fix.into()),
            exit_code: exit::OK,
        }
    }

    /// A failed check, with the exit code it asks for.
    pub fn fail(
        check: &'static str,
        exit_code: u8,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            level: Level::Fail,
            message: message.into(),
            fix: Some(fix.into()),
            exit_code,
        }
    }
}

/// The exit code of a whole run, like `status`'s: 3 when no broker answers,
/// 2 when a login is needed, 4 when the token endpoint fails without a valid
/// token, 1 for any other failed check, 0 when nothing failed (warnings
/// included).
pub fn exit_code(findings: &[Finding]) -> u8 {
    let failed: Vec<u8> = findings
        .iter()
        .filter(|f| f.level == Level::Fail)
        .map(|f| f.exit_code)
        .collect();
    for code in [
        exit::UNREACHABLE,
        exit::NEEDS_LOGIN,
        exit::UPSTREAM_UNAVAILABLE,
    ] {
        if failed.contains(&code) {
            return code;
        }
    }
    if failed.is_empty() {
        exit::OK
    } else {
        exit::OTHER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_actionable_failure_decides_the_exit_code() {
        let ok = Finding::ok("login", "fine");
        let warn = Finding::warn("clock", "off by 40s", "enable NTP");
        let other = Finding::fail("state", exit::OTHER, "0644", "chmod 600");
        let login = Finding::fail("login", exit::NEEDS_LOGIN, "logged out", "relogin");
        let gone = Finding::fail("socket", exit::UNREACHABLE, "no socket", "start it");
        assert_eq!(exit_code(&[ok.clone(), warn.clone()]), exit::OK);
        assert_eq!(exit_code(&[ok.clone(), other.clone()]), exit::OTHER);
        assert_eq!(
            exit_code(&[other.clone(), login.clone()]),
            exit::NEEDS_LOGIN
        );
        assert_eq!(exit_code(&[login, gone, other]), exit::UNREACHABLE);
    }
}
