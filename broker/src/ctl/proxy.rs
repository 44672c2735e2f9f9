//! `brokerctl proxy key [--name N]` and `brokerctl proxy revoke N`: the
//! capability keys of the header-injecting proxy (`[[proxy]]` tables).
//!
//! The key is printed once, on stdout alone (so that `$(brokerctl proxy key)`
//! captures it); the broker keeps only its hash, so a lost key is revoked and
//! replaced, never shown again.

use super::{exit, Global};
use clap::{Args, Subcommand};
use oauth_broker_client::proto::ExposeSecret;
use std::process::ExitCode;

/// Issue or revoke proxy keys.
#[derive(Debug, Args)]
#[command(after_help = "\
A tool sends the key where it would send its API key (Authorization: Bearer <key>,
or x-api-key: <key>) to the proxy's address (`brokerctl status` lists it); the
proxy replaces it with the account's current access token. `brokerctl status`
lists the keys with their request counts.")]
pub struct ProxyArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ProxyCommand,
}

/// `proxy` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Issue a new key and print it (once; only its hash is kept).
    Key {
        /// A name for the key, e.g. the tool using it [default: key-N].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Print {"name":…,"key":…} instead of the key alone.
        #[arg(long)]
        json: bool,
    },
    /// Revoke the key named NAME; the proxy refuses it at once.
    Revoke {
        /// The key's name (`brokerctl status` lists them).
        name: String,
    },
}

/// Runs the subcommand.
pub fn run(global: &Global, args: &ProxyArgs) -> ExitCode {
    let mut client = match global.connect() {
        Ok(client) => client,
        Err(err) => return exit::fail(&err),
    };
    match &args.command {
        ProxyCommand::Key { name, json } => match client.proxy_key(name.as_deref()) {
            Ok(issued) if *json => exit::print(
                &(serde_json::json!({
                    "name": issued.name,
                    "key": issued.key.expose_secret(),
                })
                .to_string()
                    + "\n"),
            ),
            Ok(issued) => {
                eprintln!(
                    "proxy key {:?} issued; it is shown only this once",
                    issued.name
                );
                exit::print(&format!("{}\n", issued.key.expose_secret()))
            }
            Err(err) => exit::fail(&err),
        },
        ProxyCommand::Revoke { name } => match client.proxy_revoke(name) {
            Ok(name) => exit::print(&format!("proxy key {name:?} revoked\n")),
            Err(err) => exit::fail(&err),
        },
    }
}
