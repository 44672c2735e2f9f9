//! `brokerctl logout`: the broker forgets the login and revokes it at the server
//! when the provider supports that.

use super::{exit, Global};
use clap::Args;
use std::process::ExitCode;

/// Forget the login (revoking the tokens at the server when possible).
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Print `{"logged_out":true,"revoked":BOOL}` instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(global: &Global, args: &LogoutArgs) -> ExitCode {
    match global.connect().and_then(|mut client| client.logout()) {
        Ok(revoked) if args.json => {
            let text = format!(
                "{}\n",
                serde_json::json!({"logged_out": true, "revoked": revoked})
            );
            exit::print(&text)
        }
        Ok(revoked) => exit::print(message(revoked)),
        Err(err) => exit::fail(&err),
    }
}

/// What happened, including whether the old tokens are dead or merely forgotten.
pub fn message(revoked: bool) -> &'static str {
    if revoked {
        "logged out; the server confirmed the revocation\n"
    } else {
        "logged out; the server did not confirm a revocation, so tokens already issued stay valid until they expire\n"
    }
}
