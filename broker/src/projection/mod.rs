//! Credential projection: feeding tools that refresh on their own.
//!
//! Codex CLI and Claude Code keep their own OAuth login in a file and refresh it
//! themselves, which is exactly what burns a shared rotating refresh token. A
//! projection target writes the broker's current access token into such a file
//! (one file per kind: [`codex`], [`claude_code`], [`hermes`],
//! [`copilot_cli`], [`openclaw`]), with a placeholder refresh
//! token, early enough that the tool adopts the file instead of refreshing.
//!
//! Projection is a subscriber: each target runs in a task of its own that
//! watches the manager's snapshots ([`TokenManager::subscribe`]); the manager
//! knows nothing about targets, and a target never holds the refresh token
//! (the snapshot carries only its fingerprint). A target's failure is logged
//! and shown in `status`, and never reaches token service. On a host without
//! the broker, `brokerctl project --follow` (`ctl/project_follow.rs`) drives
//! the same [`target::Target`]s from the socket's `Token` answers instead.
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
pub mod copilot_cli;
pub mod file;
pub mod hermes;
pub mod in_place;
pub mod json_object;
pub mod openclaw;
pub mod target;

use crate::clock::Clock;
use crate::config::{ProjectionConfig, ProjectionKind};
use crate::manager::TokenManager;
use oauth_broker_proto::{ErrorCode, ProjectionRestored, ProjectionStatus};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use target::{Target, ToolFormat};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often a target checks that its file is still the broker's (the tool
/// may wipe, replace or delete it) when no token change wakes it earlier.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Why a restore was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectionError {
    /// No `[[project]]` entries at all.
    #[error("this broker has no projection targets")]
    NoTargets,
    /// No target of that kind or path.
    #[error("no projection target {name:?}")]
    UnknownTarget {
        /// What was asked for.
        name: String,
        /// The targets there are, `kind (path)`.
        known: String,
    },
    /// Several targets of that kind.
    #[error("several projection targets are of kind {name:?}")]
    Ambiguous {
        /// What was asked for.
        name: String,
        /// The targets there are, `kind (path)`.
        known: String,
    },
    /// The target refused (the file is left as it is); says why.
    #[error("{0}")]
    RestoreRefused(String),
}

impl ProjectionError {
    /// The protocol code.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::BadRequest
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            ProjectionError::NoTargets => {
                "projection targets are [[project]] entries in the broker's config".to_string()
            }
            ProjectionError::UnknownTarget { known, .. } => {
                format!("name a kind or a path of: {known}")
            }
            ProjectionError::Ambiguous { known, .. } => {
                format!("name the file's path instead: {known}")
            }
            ProjectionError::RestoreRefused(_) => {
                "the file was left as it is and the broker keeps writing it".to_string()
            }
        })
    }
}

/// The running targets.
#[derive(Clone)]
pub struct Projections {
    targets: Arc<[Arc<Target>]>,
    tasks: TaskTracker,
}

/// The configured targets, resolved but not started yet.
pub struct Resolved(Vec<Arc<Target>>);

impl Resolved {
    /// The targets themselves, for a runner other than the daemon's
    /// (`brokerctl project --follow`).
    pub fn into_targets(self) -> Vec<Arc<Target>> {
        self.0
    }
}

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
                ProjectionKind::CopilotCli => Box::new(copilot_cli::CopilotCli),
                ProjectionKind::OpenClaw => Box::new(openclaw::OpenClaw),
            };
            let margin = config.refresh_margin_secs.map(Duration::from_secs);
            targets.push(Arc::new(
                Target::new(format, path, margin).with_write_mode(config.write),
            ));
        }
        Ok(Resolved(targets))
    }

    /// Starts one task per target, subscribed to `manager`, until `shutdown`.
    pub fn start(
        manager: &TokenManager,
        clock: Arc<dyn Clock>,
        Resolved(targets): Resolved,
        shutdown: CancellationToken,
    ) -> Projections {
        let tasks = TaskTracker::new();
        for target in &targets {
            tasks.spawn(run(
                target.clone(),
                manager.clone(),
                clock.clone(),
                shutdown.clone(),
            ));
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

impl Projections {
    /// One line per target. Never blocks on I/O.
    pub fn status(&self) -> Vec<ProjectionStatus> {
        self.targets.iter().map(|t| t.status()).collect()
    }

    /// Stops writing `name` (a kind or a path) and gives the file back to the
    /// tool. `broker_refresh_token_id` is the fingerprint of the refresh token
    /// the broker holds (a backup holding that token is refused). Blocking
    /// file I/O: call it on the blocking pool.
    pub fn restore(
        &self,
        name: &str,
        broker_refresh_token_id: Option<&str>,
    ) -> Result<ProjectionRestored, ProjectionError> {
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
            ([], []) if self.targets.is_empty() => return Err(ProjectionError::NoTargets),
            ([], []) => {
                return Err(ProjectionError::UnknownTarget {
                    name: name.to_string(),
                    known: names(),
                })
            }
            _ => {
                return Err(ProjectionError::Ambiguous {
                    name: name.to_string(),
                    known: names(),
                })
            }
        };
        target
            .restore(broker_refresh_token_id)
            .map_err(ProjectionError::RestoreRefused)
    }
}

/// One target's task: write on every token change and whenever the file is
/// no longer the broker's last write; ask for a fresher token when the file's
/// token gets within the margin of the tool's own refresh.
async fn run(
    target: Arc<Target>,
    manager: TokenManager,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    // The token for which a fresher one was already asked: ask once per token,
    // so a lifetime shorter than the margin cannot cause a refresh loop.
    let mut asked_for: Option<String> = None;
    let mut changes = manager.subscribe();
    loop {
        if target.is_stopped() {
            shutdown.cancelled().await;
            return;
        }
        // Marks this snapshot seen: a newer one wakes `changed()` below.
        let token = changes.borrow_and_update().token.clone();
        let mut wake = crate::clock::add(clock.now(), CHECK_INTERVAL);
        if let Some(token) = token {
            let t = target.clone();
            let served = token.clone();
            let now = clock.now();
            let synced = tokio::task::spawn_blocking(move || t.sync(&served, now)).await;
            match synced {
                Ok(Ok(_)) => {}
                Ok(Err(why)) => tracing::warn!(kind = target.kind(), "{why}"),
                Err(e) => {
                    tracing::warn!(kind = target.kind(), error = %e, "projection write task failed")
                }
            }
            if let Some(deadline) = target.rewrite_deadline(&token) {
                let now = clock.now();
                if deadline > now {
                    wake = wake.min(deadline);
                } else if asked_for.as_deref() != Some(token.token_id()) {
                    asked_for = Some(token.token_id().to_string());
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        fresher = manager.token(target.margin()) => match fresher {
                            Ok(fresh) if fresh.token_id() != token.token_id() => continue,
                            Ok(_) => target.warn_short_lifetime(&token),
                            // The manager reports its own failures in status.
                            Err(e) => tracing::debug!(kind = target.kind(), error = %e, "no fresher token for the projection"),
                        },
                    }
                }
            }
        }
        let sleep = crate::clock::saturating_diff(wake, clock.now()).min(CHECK_INTERVAL);
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
