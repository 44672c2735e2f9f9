//! `brokerctl complete-login URL|-`: finish a browser login that waits in the
//! broker by handing it the address the browser ended on (or the `code#state`
//! Anthropic's page shows).
//!
//! For machines where the browser cannot reach the broker's loopback listener
//! (SSH, containers) and for scripts: `brokerctl relogin --json` prints the
//! authorization URL, something approves it, and this command delivers the
//! redirect. `-` reads it from stdin, which keeps the code out of the process
//! list and shell history.

use super::{exit, relogin, Global};
use clap::Args;
use std::io::BufRead;
use std::process::ExitCode;
use std::time::SystemTime;

/// Finish a waiting browser login with the redirect URL (or `code#state`).
#[derive(Debug, Args)]
pub struct CompleteLoginArgs {
    /// The address the browser was sent to after approving, or `code#state`;
    /// `-` reads one line from standard input.
    #[arg(value_name = "URL|-")]
    pub redirect_url: String,
    /// Print the login's final event as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(global: &Global, args: &CompleteLoginArgs) -> ExitCode {
    let redirect = if args.redirect_url == "-" {
        let mut line = String::new();
        if let Err(err) = std::io::stdin().lock().read_line(&mut line) {
            return exit::fail_with(
                exit::OTHER,
                format_args!("cannot read standard input: {err}"),
            );
        }
        line.trim().to_string()
    } else {
        args.redirect_url.trim().to_string()
    };
    let event = match global
        .connect()
        .and_then(|mut client| client.complete_login(&redirect))
    {
        Ok(event) => event,
        Err(err) => return exit::fail(&err),
    };
    let text = if args.json {
        match serde_json::to_string(&event) {
            Ok(line) => line + "\n",
            Err(err) => {
                return exit::fail_with(
                    exit::OTHER,
                    format_args!("cannot encode the event as JSON: {err}"),
                )
            }
        }
    } else {
        relogin::describe(&event, SystemTime::now()).unwrap_or_default()
    };
    exit::print(&text)
}
