//! `brokerctl`: the command-line face of the broker (one file per subcommand).
//!
//! brokerctl talks to the daemon only through `oauth-broker-client`, the same
//! path every agent uses, and never reads or writes the state file: whatever it
//! can do, any client can do, and the broker stays the only owner of the
//! refresh token.

pub mod colour;
pub mod complete_login;
pub mod completions;
pub mod doctor;
pub mod exec;
pub mod exec_credential;
pub mod exit;
pub mod git_credential;
pub mod import;
pub mod import_codex;
pub mod logout;
pub mod output;
pub mod project;
pub mod project_follow;
pub mod proxy;
pub mod relogin;
pub mod service;
pub mod ssh_forward;
pub mod start;
pub mod status;
pub mod token;

use clap::{Args, Parser, Subcommand};
use oauth_broker_client::{Client, ClientBuilder, Error};
use std::path::PathBuf;
use std::process::ExitCode;

/// Talk to the oauth-broker daemon: get tokens, check health, log in and out.
#[derive(Debug, Parser)]
#[command(name = "brokerctl", version, after_help = exit::HELP)]
pub struct Cli {
    /// Which broker to talk to.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every subcommand: where the broker is.
#[derive(Debug, Clone, Args)]
pub struct Global {
    // The environment variables are read by the client's socket discovery rather
    // than by clap, which would reject an empty `OAUTH_BROKER_SOCKET=` as a
    // missing value; the client treats empty as unset.
    /// The broker's socket [env: OAUTH_BROKER_SOCKET] [default:
    /// $XDG_RUNTIME_DIR/oauth-broker/<account>.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The account whose broker to use [env: OAUTH_BROKER_ACCOUNT] [default: default]
    #[arg(long, global = true, value_name = "NAME")]
    pub account: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the broker's state (exit 0 healthy, 2 login needed, 3 unreachable).
    #[command(after_help = exit::HELP)]
    Status(status::StatusArgs),
    /// Print a valid access token (and only that) on stdout.
    #[command(after_help = exit::HELP)]
    Token(token::TokenArgs),
    /// Hand existing tokens (JSON with at least "refresh_token") to the broker.
    Import(import::ImportArgs),
    /// Forget the login, revoking it at the server when possible.
    #[command(after_help = exit::HELP)]
    Logout(logout::LogoutArgs),
    /// Log in again; the broker runs the login and keeps the tokens.
    #[command(after_help = exit::HELP)]
    Relogin(relogin::ReloginArgs),
    /// Finish a waiting browser login with the redirect URL (or `code#state`).
    #[command(after_help = exit::HELP)]
    CompleteLogin(complete_login::CompleteLoginArgs),
    /// Run a command with an access token in an environment variable.
    Exec(exec::ExecArgs),
    /// Print a Kubernetes ExecCredential (client-go credential plugin).
    ExecCredential(exec_credential::ExecCredentialArgs),
    /// Act as a git credential helper (get, store, erase).
    GitCredential(git_credential::GitCredentialArgs),
    /// Install the systemd user units (socket activation).
    Service(service::ServiceArgs),
    /// Print a shell completion script (bash, zsh, fish, …).
    Completions(completions::CompletionsArgs),
    /// Show the tool credential files the broker feeds, or give one back;
    /// `--follow` feeds them on a host without the broker.
    Project(project::ProjectArgs),
    /// Print the `ssh -R` command that forwards this broker to a remote host.
    SshForward(ssh_forward::SshForwardArgs),
    /// Issue or revoke keys of the header-injecting proxy.
    Proxy(proxy::ProxyArgs),
    /// Check the whole chain (socket, broker, login, clock, projected files,
    /// permissions) and say what to fix, one line each.
    #[command(after_help = exit::HELP)]
    Doctor(doctor::DoctorArgs),
}

impl Global {
    /// Connects to the broker these options point at.
    pub fn connect(&self) -> Result<Client, Error> {
        self.client_builder().connect()
    }

    /// A client builder for the broker these options point at.
    pub fn client_builder(&self) -> ClientBuilder<Client> {
        let mut builder =
            Client::builder().client_name(concat!("brokerctl/", env!("CARGO_PKG_VERSION")));
        if let Some(socket) = &self.socket {
            builder = builder.socket(socket);
        }
        if let Some(account) = &self.account {
            builder = builder.account(account);
        }
        builder
    }
}

/// brokerctl's `main`.
pub fn main() -> ExitCode {
    // `brokerctl token` runs once per token: its plain forms skip building
    // clap's parser for the whole command tree (see `token::parse_plain`).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some((global, token)) = token::parse_plain(&args) {
        return token::run(&global, &token);
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            // --help and --version are not errors.
            return if err.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    run(&cli)
}

/// Runs a parsed command line.
pub fn run(cli: &Cli) -> ExitCode {
    match &cli.command {
        Command::Status(args) => status::run(&cli.global, args),
        Command::Token(args) => token::run(&cli.global, args),
        Command::Import(args) => import::run(&cli.global, args),
        Command::Logout(args) => logout::run(&cli.global, args),
        Command::Relogin(args) => relogin::run(&cli.global, args),
        Command::CompleteLogin(args) => complete_login::run(&cli.global, args),
        Command::Exec(args) => exec::run(&cli.global, args),
        Command::ExecCredential(args) => exec_credential::run(&cli.global, args),
        Command::GitCredential(args) => git_credential::run(&cli.global, args),
        Command::Service(args) => service::run(&cli.global, args),
        Command::Completions(args) => completions::run(args),
        Command::Project(args) => project::run(&cli.global, args),
        Command::SshForward(args) => ssh_forward::run(&cli.global, args),
        Command::Proxy(args) => proxy::run(&cli.global, args),
        Command::Doctor(args) => doctor::run(&cli.global, args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_global_options_anywhere() {
        let cli = Cli::try_parse_from([
            "brokerctl",
            "token",
            "--socket",
            "/s.sock",
            "--min-valid",
            "300",
            "--json",
        ])
        .unwrap();
        assert_eq!(
            cli.global.socket.as_deref(),
            Some(std::path::Path::new("/s.sock"))
        );
        let Command::Token(args) = cli.command else {
            panic!("not token")
        };
        assert_eq!((args.min_valid, args.json), (300, true));

        let cli = Cli::try_parse_from(["brokerctl", "--account", "work", "status"]).unwrap();
        assert_eq!(cli.global.account.as_deref(), Some("work"));
    }

    #[test]
    fn defaults_and_conflicts() {
        let cli = Cli::try_parse_from(["brokerctl", "token"]).unwrap();
        let Command::Token(args) = cli.command else {
            panic!("not token")
        };
        assert_eq!(args.min_valid, 60);
        assert!(Cli::try_parse_from(["brokerctl", "relogin", "--device", "--browser"]).is_err());
        assert!(Cli::try_parse_from(["brokerctl", "import", "-"]).is_ok());
        assert!(Cli::try_parse_from(["brokerctl"]).is_err());
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:") && help.contains("64  usage error"));
    }
}
