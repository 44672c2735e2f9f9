//! `brokerd`: wires config, store, manager and server together and handles
//! signals.

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::manager::TokenManager;
use crate::oauth::{build_http_client, OAuthRefresher, Refresher};
use crate::provider::ProviderSpec;
use crate::store::Store;
use crate::{paths, server};
use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Command line of `brokerd`.
#[derive(Debug, Parser)]
#[command(
    name = "brokerd",
    version,
    about = "Holds and rotates one account's OAuth refresh token and serves access tokens over a Unix socket",
    after_help = "Files: config $XDG_CONFIG_HOME/oauth-broker/<account>.toml (embedded openai-codex default when absent), \
state $XDG_STATE_HOME/oauth-broker/<account>/, socket $XDG_RUNTIME_DIR/oauth-broker/<account>.sock.\n\
Logs go to stderr; filter them with RUST_LOG (e.g. RUST_LOG=debug)."
)]
pub struct Args {
    /// Config file (default: $XDG_CONFIG_HOME/oauth-broker/<account>.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Account name; one broker per account [default: $OAUTH_BROKER_ACCOUNT, else "default"].
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Socket path [default: $OAUTH_BROKER_SOCKET, else $XDG_RUNTIME_DIR/oauth-broker/<account>.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// State directory of the account (default: $XDG_STATE_HOME/oauth-broker/<account>).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// How long shutdown waits for an in-flight refresh to finish and persist.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let account = args.account.clone().unwrap_or_else(paths::account_from_env);
    paths::validate_account(&account)?;
    let config_path = paths::default_config_file(&account)?;
    let config = Config::load(args.config.as_deref(), &config_path)?;
    let provider = Arc::new(ProviderSpec::from_config(&config)?);
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => paths::default_state_dir(&account)?,
    };
    let socket_path = match &args.socket {
        Some(path) => path.clone(),
        None => paths::default_socket_path(&account)?,
    };

    let store = Store::open(&state_dir)?;
    let persisted = store.load()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let http = build_http_client(config.file.refresh.http_timeout())?;
    let refresher: Arc<dyn Refresher> =
        Arc::new(OAuthRefresher::new(http, provider.clone(), clock.clone()));

    let (listener, bound) = server::socket::bind(&socket_path)?;
    let manager = TokenManager::start(
        account.clone(),
        provider.clone(),
        config.file.refresh.clone(),
        store,
        persisted,
        refresher,
        clock,
    );
    let status = manager.status();
    tracing::info!(
        account = %account,
        provider = %provider.preset,
        config = %config.source_name(),
        socket = %bound.path().display(),
        state = status.state.as_str(),
        "brokerd ready"
    );

    let shutdown = CancellationToken::new();
    let server = tokio::spawn(server::serve(
        listener,
        manager.clone(),
        config.file.server.clone(),
        shutdown.clone(),
    ));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
    // Stop accepting first (the socket file goes away with `bound`), then let an
    // in-flight refresh finish so its rotated token is persisted.
    let _ = server.await;
    drop(bound);
    manager.shutdown(SHUTDOWN_GRACE).await;
    tracing::info!("stopped");
    Ok(())
}
