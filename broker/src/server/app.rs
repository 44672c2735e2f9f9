//! The one handle every server command receives, composed by the daemon:
//! the token manager, the login runner, the projection targets, the proxies
//! and the clock.
//! Cheap to clone (like mini-redis's `Db`): every part is shared.
//!
//! The server is where these meet: the manager knows nothing about logins or
//! projection; a command that needs both (`Status`, `ProjectRestore`) composes
//! them here, on the server's side.

use crate::clock::Clock;
use crate::login::LoginRunner;
use crate::manager::TokenManager;
use crate::projection::Projections;
use crate::proxy::Proxies;
use std::sync::Arc;

/// What the server commands work with.
#[derive(Clone)]
pub struct App {
    /// The only spender of the refresh token.
    pub manager: TokenManager,
    /// Runs the logins `Relogin` asks for.
    pub login: Arc<LoginRunner>,
    /// The projection targets (possibly none).
    pub projections: Projections,
    /// The header-injecting proxies and their keys.
    pub proxies: Proxies,
    /// Source of "now" for decisions taken outside the manager.
    pub clock: Arc<dyn Clock>,
    /// Where the broker's config and state live, for `status` (and so for
    /// `brokerctl doctor`'s permission checks).
    pub files: BrokerFiles,
}

/// The broker's own files, as `status` reports them.
#[derive(Clone, Debug, Default)]
pub struct BrokerFiles {
    /// The config file; `None` for the embedded default.
    pub config_file: Option<std::path::PathBuf>,
    /// The state directory.
    pub state_dir: Option<std::path::PathBuf>,
}
