//! `brokerctl exec [--env NAME] -- CMD ARGS…`: run a command with an access
//! token in its environment.
//!
//! For tools that read a token from an environment variable and have no "auth
//! command" hook. brokerctl asks the broker for a token and then `exec(2)`s the
//! command in its own place: the command gets brokerctl's pid, its signals
//! (Ctrl-C, SIGTERM from a supervisor) and its exit status, with nothing in
//! between that could swallow them.
//!
//! The default variable is `OAUTH_BROKER_ACCESS_TOKEN` for every preset, on
//! purpose: the obvious names are wrong more often than not. A ChatGPT login's
//! access token is not an `OPENAI_API_KEY` (the API refuses it), a Copilot
//! session token is not a `GITHUB_TOKEN`, and an Anthropic OAuth token is not an
//! `ANTHROPIC_API_KEY`. Setting one of those by default would send the token to
//! the wrong endpoint as the wrong kind of credential; `--env` names the variable
//! the tool really reads (e.g. `CLAUDE_CODE_OAUTH_TOKEN`).
//!
//! The token is fixed for the command's lifetime: brokerctl is gone once the
//! command runs. Long-running programs should use an auth-command hook
//! (`brokerctl token`) or a client library instead.

use super::{exit, Global};
use clap::Args;
use oauth_broker_client::ExposeSecret;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::time::Duration;

/// The variable set when `--env` is not given.
pub const DEFAULT_ENV: &str = "OAUTH_BROKER_ACCESS_TOKEN";

/// Exit status when the command cannot be found (as in POSIX shells).
pub const NOT_FOUND: u8 = 127;
/// Exit status when the command exists but cannot be run (as in POSIX shells).
pub const CANNOT_RUN: u8 = 126;

/// Run a command with an access token in an environment variable.
#[derive(Debug, Args)]
#[command(after_help = "\
The command replaces brokerctl (exec), so it keeps the pid, receives signals
directly and its exit status is brokerctl's. If no token can be had, the command
is not run and brokerctl exits 2/3/4 like `brokerctl token`; 127 means the
command was not found, 126 that it could not be run.

Examples:
  brokerctl exec -- ./my-agent
  brokerctl --account claude exec --env CLAUDE_CODE_OAUTH_TOKEN -- claude -p 'hi'

The token is not renewed while the command runs: for programs that run longer
than a token lives, use `brokerctl token` as their auth command or a client
library.")]
pub struct ExecArgs {
    /// Environment variable that receives the token (repeat to set several).
    #[arg(long = "env", value_name = "NAME", default_value = DEFAULT_ENV)]
    pub env: Vec<String>,
    /// The token must stay valid at least this many more seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub min_valid: u64,
    /// The command to run and its arguments (put them after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// Runs the subcommand. Returns only if the command could not be started.
pub fn run(global: &Global, args: &ExecArgs) -> ExitCode {
    if let Some(bad) = args.env.iter().find(|name| !is_env_name(name)) {
        return exit::fail_with(
            exit::USAGE,
            format_args!(
                "invalid --env name {bad:?}: use letters, digits and '_', not starting with a digit"
            ),
        );
    }
    let Some((program, rest)) = args.command.split_first() else {
        return exit::fail_with(
            exit::USAGE,
            "no command given (hint: brokerctl exec -- CMD ARGS…)",
        );
    };
    let token = match global.connect().and_then(|mut client| {
        // The connection is dropped before exec: the command inherits nothing of it.
        client.token(Duration::from_secs(args.min_valid))
    }) {
        Ok(token) => token,
        Err(err) => return exit::fail(&err),
    };
    let mut command = Command::new(program);
    command.args(rest);
    for name in &args.env {
        command.env(name, token.expose_secret());
    }
    let err = command.exec();
    // Only the program name: the arguments may be secret, the environment is.
    exit::report(format_args!(
        "cannot run {}: {err}",
        program.to_string_lossy()
    ));
    ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound {
        NOT_FOUND
    } else {
        CANNOT_RUN
    })
}

/// A portable environment variable name (POSIX: `[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        for good in ["OAUTH_BROKER_ACCESS_TOKEN", "_x", "a1"] {
            assert!(is_env_name(good), "{good}");
        }
        for bad in ["", "1A", "A-B", "A=B", "A B", "Ä"] {
            assert!(!is_env_name(bad), "{bad}");
        }
    }
}
