//! Credential projection: feeding tools that refresh on their own.
//!
//! Codex CLI and Claude Code keep their own OAuth login in a file and refresh it
//! themselves, which is exactly what burns a shared rotating refresh token. A
//! projection target writes the broker's current access token into such a file
//! (one file per kind: [`codex`], [`claude_code`], [`hermes`]), with a placeholder refresh
//! token, early enough that the tool adopts the file instead of refreshing.
//!
//! Projection is a subscriber: each target runs in a task of its own that
//! watches [`TokenManager::subscribe`]; the manager knows nothing about
//! targets. A target's failure is logged and shown in `status`, and never
//! reaches token service.
//!
//! Timing: the manager refreshes proactively at 75–80 % of a token's lifetime.
//! A target additionally wakes at `expiry − margin` (expiry as the tool sees
//! it) and, if the file's token is still the same then, asks the manager for a
//! token valid at least `margin` longer — the `min_valid` mechanism every
//! client has. The manager honours `min_valid` up to a fifth of the lifetime,
//! which is what its proactive refresh leaves anyway: with ChatGPT's or
//! Claude's access tokens (an hour and more) the 10-minute default margins are
//! always met; a token that lives shorter than five margins is reported in
//! `status` as too short for the margin.

pub mod claude_code;
pub mod codex;
pub mod file;
pub mod hermes;
pub mod target;

use crate::config::{ProjectionConfig, ProjectionKind};
use crate::manager::TokenManager;
use oauth_broker_proto::{
    ErrorCode, ErrorFrame, ProjectionRestored, ProjectionStatus, SecretString,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use target::{Target, ToolFormat};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often a target checks that its file is still the broker's (the tool
/// may wipe, replace or delete it) when no token change wakes it earlier.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// What the rest of the broker may ask of the projection targets; the
/// manager holds it opaquely so that `status` and the `ProjectRestore`
/// request can reach it.
pub trait ProjectionControl: Send + Sync {
    /// One line per target. Never blocks on I/O.
    fn status(&self) -> Vec<ProjectionStatus>;
    /// Stops writing `target` (a kind or a path) and gives the file back to
    /// the tool. Blocking file I/O: call it on the blocking pool.
    fn restore(
        &self,
        target: &str,
        broker_refresh_token: Option<&SecretString>,
    ) -> Result<ProjectionRestored, ErrorFrame>;
}

/// The running targets.
#[derive(Clone)]
pub struct Projections {
    targets: Arc<[Arc<Target>]>,
    tasks: TaskTracker,
}

/// The configured targets, resolved but not started yet.
pub struct Resolved(Vec<Arc<Target>>);

impl Projections {
    /// Resolves the `[[project]]` entries. Configuration mistakes (two targets
    /// on one file, a path that cannot be resolved) are errors, reported before
    /// anything starts; everything at run time is only reported in `status`.
    pub fn resolve(configs: &[ProjectionConfig]) -> anyhow::Result<Resolved> {
        let mut seen = BTreeSet::new();
        let mut targets = Vec::new();
        for config in configs {
            let path = config.resolved_path(|name| std::env::var(name).ok())?;
            if !seen.insert(path.clone()) {
                anyhow::bail!(
                    "two [[project]] entries write {}; remove one of them",
                    path.display()
                );
            }
            let format: Box<dyn ToolFormat> = match config.kind {
                ProjectionKind::Codex => Box::new(codex::Codex),
                ProjectionKind::ClaudeCode => Box::new(claude_code::ClaudeCode),
                ProjectionKind::Hermes => Box::new(hermes::Hermes),
            };
            let margin = config.refresh_margin_secs.map(Duration::from_secs);
            targets.push(Arc::new(Target::new(format, path, margin)));
        }
        Ok(Resolved(targets))
    }

    /// Starts one task per target, subscribed to `manager`, until `shutdown`.
    pub fn start(
        manager: &TokenManager,
        Resolved(targets): Resolved,
        shutdown: CancellationToken,
    ) -> Projections {
        let tasks = TaskTracker::new();
        for target in &targets {
            tasks.spawn(run(target.clone(), manager.clone(), shutdown.clone()));
        }
        tasks.close();
        Projections {
            targets: targets.into(),
            tasks,
        }
    }

    /// Whether any target is configured.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Waits for the target tasks to end (after the shutdown token fired).
    pub async fn stopped(&self) {
        self.tasks.wait().await;
    }
}

impl ProjectionControl for Projections {
    fn status(&self) -> Vec<ProjectionStatus> {
        self.targets.iter().map(|t| t.status()).collect()
    }

    fn restore(
        &self,
        name: &str,
        broker_refresh_token: Option<&SecretString>,
    ) -> Result<ProjectionRestored, ErrorFrame> {
        let by_kind: Vec<_> = self.targets.iter().filter(|t| t.kind() == name).collect();
        let by_path: Vec<_> = self
            .targets
            .iter()
            .filter(|t| t.path() == std::path::Path::new(name))
            .collect();
        let names = || {
            self.targets
                .iter()
                .map(|t| format!("{} ({})", t.kind(), t.path().display()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let target = match (by_path.as_slice(), by_kind.as_slice()) {
            ([one], _) | ([], [one]) => one,
            ([], []) if self.targets.is_empty() => {
                return Err(ErrorFrame::new(
                    ErrorCode::BadRequest,
                    "this broker has no projection targets",
                )
                .with_hint("projection targets are [[project]] entries in the broker's config"))
            }
            ([], []) => {
                return Err(ErrorFrame::new(
                    ErrorCode::BadRequest,
                    format!("no projection target {name:?}"),
                )
                .with_hint(format!("name a kind or a path of: {}", names())))
            }
            _ => {
                return Err(ErrorFrame::new(
                    ErrorCode::BadRequest,
                    format!("several projection targets are of kind {name:?}"),
                )
                .with_hint(format!("name the file's path instead: {}", names())))
            }
        };
        target.restore(broker_refresh_token).map_err(|why| {
            ErrorFrame::new(ErrorCode::BadRequest, why)
                .with_hint("the file was left as it is and the broker keeps writing it")
        })
    }
}

/// One target's task: write on every token change and whenever the file is
/// no longer the broker's last write; ask for a fresher token when the file's
/// token gets within the margin of the tool's own refresh.
async fn run(target: Arc<Target>, manager: TokenManager, shutdown: CancellationToken) {
    // The token for which a fresher one was already asked: ask once per token,
    // so a lifetime shorter than the margin cannot cause a refresh loop.
    let mut asked_for: Option<String> = None;
    loop {
        if target.is_stopped() {
            shutdown.cancelled().await;
            return;
        }
        let mut changes = manager.subscribe();
        let creds = manager
            .current_credentials()
            .filter(|c| c.access_token.is_some());
        let mut wake = SystemTime::now() + CHECK_INTERVAL;
        if let Some(creds) = creds {
            let t = target.clone();
            let c = creds.clone();
            let synced = tokio::task::spawn_blocking(move || t.sync(&c, SystemTime::now())).await;
            match synced {
                Ok(Ok(_)) => {}
                Ok(Err(why)) => tracing::warn!(kind = target.kind(), "{why}"),
                Err(e) => {
                    tracing::warn!(kind = target.kind(), error = %e, "projection write task failed")
                }
            }
            if let Some(deadline) = target.rewrite_deadline(&creds) {
                let now = SystemTime::now();
                if deadline > now {
                    wake = wake.min(deadline);
                } else if asked_for != creds.token_id() {
                    asked_for = creds.token_id();
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        fresher = manager.token(target.margin()) => match fresher {
                            Ok(grant) if Some(&grant.token_id) != asked_for.as_ref() => continue,
                            Ok(_) => target.warn_short_lifetime(&creds),
                            // The manager reports its own failures in status.
                            Err(e) => tracing::debug!(kind = target.kind(), error = %e.message, "no fresher token for the projection"),
                        },
                    }
                }
            }
        }
        let sleep = wake
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(CHECK_INTERVAL);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    // The manager is gone: the broker is stopping.
                    shutdown.cancelled().await;
                    return;
                }
            }
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
