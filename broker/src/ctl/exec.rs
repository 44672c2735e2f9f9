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
//! Some tools need the token's non-secret metadata beside it, e.g. the Copilot
//! API base (`api_base`) the `github-copilot` exchange returned, which differs
//! between individual and business accounts. `--env-metadata NAME=KEY` puts it
//! in the environment from the same answer as the token, so a recipe needs
//! neither a second request nor a JSON parser; a missing key is an error rather
//! than an empty variable, because the tool would then fall back to a default
//! endpoint that may be the wrong one for the account.
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
  brokerctl --account copilot exec --env LLM_API_KEY \\
      --env-metadata LLM_BASE_URL=api_base -- ironclaw -m 'hi'

The token is not renewed while the command runs: for programs that run longer
than a token lives, use `brokerctl token` as their auth command or a client
library.")]
pub struct ExecArgs {
    /// Environment variable that receives the token (repeat to set several).
    #[arg(long = "env", value_name = "NAME", default_value = DEFAULT_ENV)]
    pub env: Vec<String>,
    /// Environment variable NAME receives the token's metadata value KEY, e.g.
    /// `LLM_BASE_URL=api_base` (repeatable; `brokerctl token --json` shows the keys).
    #[arg(long = "env-metadata", value_name = "NAME=KEY", value_parser = parse_env_metadata)]
    pub env_metadata: Vec<EnvMetadata>,
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
    for wanted in &args.env_metadata {
        let Some(value) = token.metadata().get(&wanted.key) else {
            return exit::fail_with(exit::OTHER, missing_metadata(wanted, token.metadata()));
        };
        command.env(&wanted.name, value);
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

/// One `--env-metadata NAME=KEY`: variable `name` gets metadata value `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvMetadata {
    /// The environment variable to set.
    pub name: String,
    /// The metadata key whose value it gets.
    pub key: String,
}

/// Parses `NAME=KEY` (clap value parser), naming the fix when it is malformed.
pub fn parse_env_metadata(arg: &str) -> Result<EnvMetadata, String> {
    let Some((name, key)) = arg.split_once('=') else {
        return Err("expected NAME=KEY, e.g. LLM_BASE_URL=api_base".into());
    };
    if !is_env_name(name) {
        return Err(format!(
            "invalid variable name {name:?}: use letters, digits and '_', not starting with a digit"
        ));
    }
    if key.is_empty() {
        return Err(format!(
            "no metadata key after {name}=; `brokerctl token --json` shows the keys"
        ));
    }
    Ok(EnvMetadata {
        name: name.into(),
        key: key.into(),
    })
}

/// The one-line error for a metadata key the token does not carry. Metadata is
/// not secret (account id, API base), so listing the keys that exist is safe.
fn missing_metadata(
    wanted: &EnvMetadata,
    present: &std::collections::BTreeMap<String, String>,
) -> String {
    let keys: Vec<&str> = present.keys().map(String::as_str).collect();
    let keys = if keys.is_empty() {
        "none".to_string()
    } else {
        keys.join(", ")
    };
    format!(
        "the token has no metadata {:?} for {} (it has: {keys}); the command was not run",
        wanted.key, wanted.name
    )
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

    #[test]
    fn env_metadata_arguments() {
        assert_eq!(
            parse_env_metadata("LLM_BASE_URL=api_base"),
            Ok(EnvMetadata {
                name: "LLM_BASE_URL".into(),
                key: "api_base".into()
            })
        );
        // Only the first '=' separates: a key may contain one.
        assert_eq!(parse_env_metadata("A=b=c").unwrap().key, "b=c");
        for (bad, says) in [
            ("LLM_BASE_URL", "expected NAME=KEY"),
            ("=api_base", "invalid variable name"),
            ("BAD-NAME=api_base", "invalid variable name"),
            ("LLM_BASE_URL=", "no metadata key"),
        ] {
            let err = parse_env_metadata(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn a_missing_key_names_the_keys_present() {
        let wanted = parse_env_metadata("LLM_BASE_URL=api_base").unwrap();
        let present = [("account_id".to_string(), "acct".to_string())].into();
        let text = missing_metadata(&wanted, &present);
        assert!(text.contains("\"api_base\""), "{text}");
        assert!(text.contains("it has: account_id"), "{text}");
        assert!(
            missing_metadata(&wanted, &Default::default()).contains("it has: none"),
            "no metadata at all"
        );
    }
}
