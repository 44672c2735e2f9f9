//! Prints what a program would get from the broker, without printing the token.
//!
//! ```sh
//! cargo run -p oauth-broker-client --example token [-- SOCKET]
//! ```

use oauth_broker_client::Client;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let mut builder = Client::builder().client_name("token-example");
    if let Some(socket) = std::env::args_os().nth(1) {
        builder = builder.socket(socket);
    }
    let result = builder
        .connect()
        .and_then(|mut client| client.token(Duration::from_secs(60)));
    match result {
        Ok(token) => {
            println!(
                "{} token {} valid for {} more seconds",
                token.token_type(),
                token.token_id(),
                token.remaining().as_secs()
            );
            ExitCode::SUCCESS
        }
        Err(err) if err.needs_login() => {
            eprintln!("no usable login, a fallback provider would be used now: {err}");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}
