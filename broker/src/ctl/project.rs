//! `brokerctl project [--restore TARGET]`: the tool credential files the broker
//! keeps fed (`[[project]]` entries), and giving one back to its tool.
//! `brokerctl project --follow --config FILE` feeds such files on a host
//! without the broker (see `project_follow.rs`).
//!
//! The restore is done by the daemon: it is the one writing the file, so only
//! it can stop its own writes, and only it can check that the backup does not
//! hold the refresh token it now spends (brokerctl never sees that token).

use super::{exit, output, Global};
use clap::Args;
use oauth_broker_client::proto::{ProjectionRestored, ProjectionStatus, RestoreOutcome};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::SystemTime;

/// Show the projection targets, or give one's file back to its tool.
#[derive(Debug, Args)]
#[command(after_help = "\
Without options: one line per target (kind, file, last write, last error).

--restore stops brokerd writing the target's file and puts back what was there
before its first write (kept as <file>.oauth-broker-backup); with no backup, the
broker's file is removed, so the tool is logged out. brokerd writes the file
again after a restart unless the [[project]] entry is removed from its config.

--follow --config FILE runs where the broker is not (a remote host behind
`brokerctl ssh-forward`, a container): it writes the [[project]] entries of
FILE (the broker's config format) with the broker's current access token,
fetched through the socket, and keeps them fed until SIGTERM, SIGINT or SIGHUP.
The files keep the last token on exit unless --restore-on-exit is given.")]
pub struct ProjectArgs {
    /// The target to restore: its kind (`codex`, `claude-code`, `hermes`, `openclaw`) or its file.
    #[arg(long, value_name = "TARGET", conflicts_with = "follow")]
    pub restore: Option<String>,
    /// Print JSON instead of sentences.
    #[arg(long, conflicts_with = "follow")]
    pub json: bool,
    /// Write the [[project]] entries of --config on this host, fed through the
    /// socket, until stopped.
    #[arg(long, requires = "config")]
    pub follow: bool,
    /// With --follow: the config file (broker format) whose [[project]] entries to write.
    #[arg(long, value_name = "FILE", requires = "follow")]
    pub config: Option<std::path::PathBuf>,
    /// With --follow: on exit, give each file back to its tool (as --restore does).
    #[arg(long, requires = "follow")]
    pub restore_on_exit: bool,
}

/// Runs the subcommand.
pub fn run(global: &Global, args: &ProjectArgs) -> ExitCode {
    if let (true, Some(config)) = (args.follow, &args.config) {
        return super::project_follow::run(global, config, args.restore_on_exit);
    }
    let mut client = match global.connect() {
        Ok(client) => client,
        Err(err) => return exit::fail(&err),
    };
    let text = match &args.restore {
        Some(target) => match client.project_restore(target) {
            Ok(restored) if args.json => json_line(&restored),
            Ok(restored) => restored_message(&restored),
            Err(err) => return exit::fail(&err),
        },
        None => match client.status() {
            Ok(report) if args.json => json_line(&report.projections),
            Ok(report) => list(&report.projections, output::unix_secs(SystemTime::now())),
            Err(err) => return exit::fail(&err),
        },
    };
    exit::print(&text)
}

fn json_line(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default() + "\n"
}

/// One line per target; `now` in unix seconds.
pub fn list(targets: &[ProjectionStatus], now: u64) -> String {
    if targets.is_empty() {
        return "no projection targets ([[project]] entries in the broker's config)\n".to_string();
    }
    let mut out = String::new();
    for target in targets {
        let _ = write!(out, "{} {}", target.kind, target.path);
        match target.last_write_at {
            Some(at) => {
                let _ = write!(out, ", written {}", output::relative(at, now));
            }
            None => out.push_str(", not written yet"),
        }
        if let Some(err) = &target.last_error {
            let _ = write!(out, ", {err}");
        }
        out.push('\n');
    }
    out
}

/// What the restore did, in a sentence.
pub fn restored_message(restored: &ProjectionRestored) -> String {
    let what = match restored.outcome {
        RestoreOutcome::BackupRestored => format!(
            "restored {} from its backup (the {} login that was there before the broker)",
            restored.path, restored.kind
        ),
        RestoreOutcome::Removed => format!(
            "removed the broker's {} (there was no file before it), so {} is logged out",
            restored.path, restored.kind
        ),
        RestoreOutcome::LeftAlone => format!(
            "left {} as it is (neither a backup nor a file of the broker's)",
            restored.path
        ),
    };
    format!(
        "{what}; brokerd no longer writes it, until it restarts: remove the [[project]] entry for {} from its config first\n",
        restored.kind
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_needs_a_config_and_excludes_restore() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            crate::ctl::Cli::try_parse_from([&["brokerctl", "project"], args].concat())
        };
        let cli = parse(&["--follow", "--config", "/r/p.toml", "--restore-on-exit"]).unwrap();
        let crate::ctl::Command::Project(args) = cli.command else {
            panic!("not project")
        };
        assert!(args.follow && args.restore_on_exit);
        assert_eq!(
            args.config.as_deref(),
            Some(std::path::Path::new("/r/p.toml"))
        );
        assert!(parse(&["--follow"]).is_err(), "--follow without --config");
        assert!(
            parse(&["--config", "/r/p.toml"]).is_err(),
            "--config without --follow"
        );
        assert!(parse(&["--follow", "--config", "/c", "--restore", "codex"]).is_err());
        assert!(parse(&["--follow", "--config", "/c", "--json"]).is_err());
        assert!(parse(&["--restore", "codex"]).is_ok());
    }

    #[test]
    fn lists_targets_and_explains_restores() {
        let targets = vec![
            ProjectionStatus {
                kind: "codex".into(),
                path: "/h/.codex/auth.json".into(),
                last_write_at: Some(1000),
                last_error: None,
                write: None,
                write_reason: None,
                token_id: None,
                tool_wrote: None,
            },
            ProjectionStatus {
                kind: "claude-code".into(),
                path: "/h/.claude/.credentials.json".into(),
                last_write_at: None,
                last_error: Some("cannot write: permission denied".into()),
                write: None,
                write_reason: None,
                token_id: None,
                tool_wrote: None,
            },
        ];
        assert_eq!(
            list(&targets, 1060),
            "codex /h/.codex/auth.json, written 1m ago\nclaude-code /h/.claude/.credentials.json, not written yet, cannot write: permission denied\n"
        );
        assert!(list(&[], 0).contains("no projection targets"));
        let text = restored_message(&ProjectionRestored {
            kind: "codex".into(),
            path: "/h/.codex/auth.json".into(),
            outcome: RestoreOutcome::BackupRestored,
        });
        assert!(text.starts_with("restored /h/.codex/auth.json from its backup"));
        assert!(text.contains("remove the [[project]] entry for codex"));
    }
}
