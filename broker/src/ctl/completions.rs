//! `brokerctl completions SHELL`: shell completion scripts.
//!
//! Generated from the same clap definition that parses the command line, so the
//! completions can never drift from the real options.

use super::{exit, Cli};
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::process::ExitCode;

/// Print a shell completion script.
#[derive(Debug, Args)]
#[command(after_help = "\
Install, for example:
  bash:  brokerctl completions bash > ~/.local/share/bash-completion/completions/brokerctl
  zsh:   brokerctl completions zsh > ~/.zfunc/_brokerctl   (with fpath+=(~/.zfunc) before compinit)
  fish:  brokerctl completions fish > ~/.config/fish/completions/brokerctl.fish")]
pub struct CompletionsArgs {
    /// The shell to generate the script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Runs the subcommand.
pub fn run(args: &CompletionsArgs) -> ExitCode {
    exit::print(&script(args.shell))
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> String {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "brokerctl", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_the_subcommands() {
        for (shell, marker) in [
            (Shell::Bash, "_brokerctl()"),
            (Shell::Zsh, "#compdef brokerctl"),
            (Shell::Fish, "complete -c brokerctl"),
        ] {
            let text = script(shell);
            assert!(text.contains(marker), "{shell}: no {marker:?}");
            for sub in ["status", "token", "exec", "git-credential", "service"] {
                assert!(text.contains(sub), "{shell}: no {sub}");
            }
        }
    }

    #[test]
    fn bash_script_is_valid_bash() {
        let Ok(out) = std::process::Command::new("bash")
            .arg("-n")
            .arg("-c")
            .arg(script(Shell::Bash))
            .output()
        else {
            return; // no bash on this machine: nothing to check against
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
