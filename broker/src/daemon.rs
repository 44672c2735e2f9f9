//! `brokerd`: wires config, store, manager and server together and handles
//! signals.

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::manager::TokenManager;
use crate::oauth::{build_http_client, Refresher};
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

/// How long shutdown may take in all: letting an in-flight refresh finish and
/// persist — two whole token-endpoint requests (the attempt and its prompt
/// retry after an ambiguous failure) plus time for the state write — and,
/// while the state directory is full or read-only, retrying the write of a
/// rotated refresh token. Abandoning either would burn the refresh token.
/// Stays below the unit's `TimeoutStopSec=90` with the default 30 s timeout.
fn shutdown_grace(http_timeout: Duration) -> Duration {
    http_timeout * 2 + Duration::from_secs(5)
}

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let account = args.account.clone().unwrap_or_else(paths::account_from_env);
    paths::validate_account(&account)?;
    let config_path = paths::default_config_file(&account)?;
    let config = Config::load(args.config.as_deref(), &config_path)?;
    let provider = Arc::new(ProviderSpec::from_config(&config)?);
    let projection_targets = crate::projection::Projections::resolve(&config.file.project)?;
    let proxy_tables = crate::proxy::check(&config.file.proxy, &provider.preset)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.source_name()))?;
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => paths::default_state_dir(&account)?,
    };
    let socket_path = match &args.socket {
        Some(path) => path.clone(),
        None => paths::default_socket_path(&account)?,
    };

    let store = Store::open_with(&state_dir, &account, config.file.state.writes)?;
    let proxy_keys = Arc::new(crate::proxy::keys::KeyStore::load(&state_dir)?);
    let persisted = store.load()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let http = build_http_client(config.file.refresh.http_timeout())?;
    // An RFC 6749 refresh, or GitHub Copilot's session-token exchange.
    let refresher: Arc<dyn Refresher> =
        crate::oauth::refresher_for(http.clone(), provider.clone(), clock.clone());

    // Socket activation: systemd owns the socket file; never bind or unlink it.
    let (listener, bound) = match crate::systemd::take_listener()? {
        Some(inherited) => {
            if args.socket.is_some() && inherited.path != socket_path {
                tracing::warn!(
                    passed = %inherited.path.display(),
                    ignored = %socket_path.display(),
                    "socket-activated: serving the socket systemd passed, not --socket/OAUTH_BROKER_SOCKET"
                );
            }
            tracing::info!(
                socket = %inherited.path.display(),
                name = %inherited.name,
                "socket-activated: using the socket passed by systemd"
            );
            let listener = tokio::net::UnixListener::from_std(inherited.listener).map_err(|e| {
                anyhow::anyhow!("socket activation: cannot use the passed socket: {e}")
            })?;
            (
                listener,
                server::socket::BoundSocket::inherited(inherited.path),
            )
        }
        None => server::socket::bind(&socket_path)?,
    };
    // Refreshes run on a thread of their own (see manager/refresh_thread.rs).
    let refresh_thread = crate::manager::refresh_thread::spawn()
        .map_err(|e| anyhow::anyhow!("cannot start the refresh thread: {e}"))?;
    // Bound before any task runs (see proxy::bind).
    let proxy_listeners = crate::proxy::bind(proxy_tables)?;
    let manager = TokenManager::start(
        account.clone(),
        provider.clone(),
        config.file.refresh.clone(),
        store,
        persisted,
        // Beside the socket: in $XDG_RUNTIME_DIR (tmpfs), writable when the
        // state directory is not.
        crate::manager::runtime_record::RuntimeRecordFile::beside_socket(bound.path()),
        refresher.clone(),
        clock.clone(),
        Some(refresh_thread),
    );
    // Logins run in the daemon; their result goes through `manager.adopt`.
    let login = crate::login::LoginRunner::new(
        account.clone(),
        provider.clone(),
        http,
        manager.clone(),
        refresher,
        clock.clone(),
        config.file.login.clone(),
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
    // Projection targets are subscribers of the manager (see projection/).
    let projections = crate::projection::Projections::start(
        &manager,
        clock.clone(),
        projection_targets,
        shutdown.clone(),
    );
    // So are the header-injecting proxies (see proxy/).
    let proxies = crate::proxy::Proxies::start(
        proxy_listeners,
        &provider.preset,
        proxy_keys,
        &manager,
        clock.clone(),
        shutdown.clone(),
    )?;
    // The one handle every server command receives.
    let app = server::App {
        manager: manager.clone(),
        login,
        projections: projections.clone(),
        proxies: proxies.clone(),
        clock: clock.clone(),
        files: server::app::BrokerFiles {
            config_file: config.source.clone(),
            state_dir: Some(state_dir.clone()),
        },
    };
    let server = tokio::spawn(server::serve(
        listener,
        app,
        config.file.server.clone(),
        shutdown.clone(),
    ));
    // The listener is bound and being served: clients may come (READY=1).
    crate::systemd::notify_ready(
        bound.path(),
        &crate::systemd::status_line(&manager.snapshot(), clock.read()),
    );
    let status_updates =
        crate::systemd::spawn_status_updates(manager.subscribe(), clock.clone(), shutdown.clone());

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    crate::systemd::notify_stopping(manager.snapshot().degraded.is_some());
    shutdown.cancel();
    if let Some(task) = status_updates {
        let _ = task.await;
    }
    projections.stopped().await;
    proxies.stopped().await;
    // Stop accepting first (the socket file goes away with `bound`), then let an
    // in-flight refresh finish so its rotated token is persisted.
    let _ = server.await;
    drop(bound);
    manager
        .shutdown(shutdown_grace(config.file.refresh.http_timeout()))
        .await;
    tracing::info!("stopped");
    Ok(())
}
