//! Colour for humans, never for programs.
//!
//! Only the state word of `brokerctl status` is coloured, and only when stdout
//! is a terminal, `NO_COLOR` is unset or empty (<https://no-color.org>) and
//! `TERM` is not `dumb`: piped output, `--json` and logs stay plain bytes.

use oauth_broker_client::proto::TokenState;
use std::io::IsTerminal;

/// Whether stdout should get ANSI colours.
pub fn stdout_enabled() -> bool {
    enabled(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
}

/// The rule, with its inputs passed in.
pub fn enabled(
    is_terminal: bool,
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

/// The state word in its colour: green when tokens flow, yellow while
/// refreshing or retrying, red when a human must act.
pub fn state(state: TokenState) -> String {
    let code = match state {
        TokenState::Valid => "32",
        TokenState::Refreshing | TokenState::Expired => "33",
        TokenState::LoggedOut | TokenState::ReloginRequired => "31",
    };
    format!("\x1b[1;{code}m{}\x1b[0m", state.as_str())
}

/// Colours the value of the `state:` line of a rendered status report.
pub fn highlight_state_line(text: &str, token_state: TokenState) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut done = false;
    for line in text.split_inclusive('\n') {
        if !done && line.starts_with("state:") {
            if let Some(at) = line.rfind(token_state.as_str()) {
                out.push_str(&line[..at]);
                out.push_str(&state(token_state));
                out.push_str(&line[at + token_state.as_str().len()..]);
                done = true;
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn only_on_a_terminal_without_no_color() {
        let s = |v: &'static str| Some(OsStr::new(v));
        assert!(enabled(true, None, s("xterm-256color")));
        assert!(enabled(true, s(""), None));
        assert!(!enabled(false, None, s("xterm")));
        assert!(!enabled(true, s("1"), s("xterm")));
        assert!(!enabled(true, None, s("dumb")));
    }

    #[test]
    fn colours_the_state_word_only() {
        let text = "account:        default\nstate:          valid\nlast error:     valid\n";
        let out = highlight_state_line(text, TokenState::Valid);
        assert_eq!(
            out,
            "account:        default\nstate:          \x1b[1;32mvalid\x1b[0m\nlast error:     valid\n"
        );
        assert!(state(TokenState::ReloginRequired).contains("31m"));
    }
}
