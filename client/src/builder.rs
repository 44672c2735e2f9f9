//! Configuration of a client before it connects.

use crate::discovery;
use crate::Error;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::time::Duration;

/// Default bound on connecting to the socket and completing the handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default bound on one request. A token request may legitimately wait for one
/// refresh at the token endpoint, which a slow server can stretch to ~30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(45);

/// Default bound on a whole interactive login: the user needs time to open a
/// browser and type a code, but a login that never ends should not hang a script.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// Builds a client; see [`crate::Client::builder`].
///
/// The type parameter is the client it builds: [`crate::Client`] (blocking) or,
/// with the `tokio` feature, `oauth_broker_client::tokio::Client`, whose
/// `connect` is `async`. The setters are the same for both.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder<C = crate::Client> {
    pub(crate) options: Options,
    _client: PhantomData<fn() -> C>,
}

/// The settings a connected client keeps (it reconnects with them).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) socket: Option<PathBuf>,
    pub(crate) account: Option<String>,
    pub(crate) client_name: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) login_timeout: Duration,
    pub(crate) busy_budget: Duration,
}

impl<C> ClientBuilder<C> {
    pub(crate) fn new() -> Self {
        ClientBuilder {
            options: Options {
                socket: None,
                account: None,
                client_name: default_client_name(),
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                login_timeout: DEFAULT_LOGIN_TIMEOUT,
                busy_budget: crate::busy::DEFAULT_BUSY_BUDGET,
            },
            _client: PhantomData,
        }
    }

    /// Connect to this socket instead of discovering it.
    pub fn socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.options.socket = Some(path.into());
        self
    }

    /// Use this account's socket (overrides `OAUTH_BROKER_ACCOUNT`; ignored when a
    /// socket path is given or `OAUTH_BROKER_SOCKET` is set).
    pub fn account(mut self, name: impl Into<String>) -> Self {
        self.options.account = Some(name.into());
        self
    }

    /// The name the broker logs for this client (default: the program's name).
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.options.client_name = name.into();
        self
    }

    /// Bound on connecting and the handshake (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// Bound on each request (default 45 s: a token request may wait for one
    /// refresh at a slow token endpoint).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.options.request_timeout = timeout;
        self
    }

    /// Bound on a whole interactive login (default 20 minutes). Login events are
    /// not subject to the request timeout: the user may take minutes.
    pub fn login_timeout(mut self, timeout: Duration) -> Self {
        self.options.login_timeout = timeout;
        self
    }

    /// How long, in total, to wait out a broker that answers `busy` (at its
    /// connection limit) before reporting it (default 2 s). The client waits
    /// as long as the broker's `retry_after` asks and reconnects; zero turns
    /// the waiting off.
    pub fn busy_retry_budget(mut self, budget: Duration) -> Self {
        self.options.busy_budget = budget;
        self
    }

    /// The socket this builder would connect to (see [`crate::default_socket_path`]).
    pub fn socket_path(&self) -> Result<PathBuf, Error> {
        self.options.socket_path()
    }
}

impl Options {
    pub(crate) fn socket_path(&self) -> Result<PathBuf, Error> {
        discovery::resolve(
            self.socket.as_deref(),
            self.account.as_deref(),
            |name| std::env::var_os(name),
            discovery::fallback_runtime_dir,
        )
    }
}

/// The program's file name, so broker logs say who asked.
fn default_client_name() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(|path| path.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| concat!("oauth-broker-client/", env!("CARGO_PKG_VERSION")).to_string())
}
