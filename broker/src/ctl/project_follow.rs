//! `brokerctl project --follow --config FILE`: projection on a host without
//! the broker — a remote host reached through `ssh -R`, or a container with
//! the socket directory mounted.
//!
//! brokerd writes its `[[project]]` files only on its own host. Here the same
//! projection writers (`crate::projection`: the same `Target`, the same
//! formats, the same placeholder refresh token, backup and refusal rules) are
//! fed from the socket's `Token` answers instead of the manager's snapshot.
//! The answer carries everything the writers need (access token, expiry,
//! account id, id token, when the broker received the token, and the
//! refresh token's fingerprint); the refresh token itself never crosses the
//! socket, so it cannot reach this process or the files it writes.
//!
//! When it writes: at start, and whenever the broker's token changes. A
//! change is noticed by polling `Token` on the persistent connection — one
//! small round trip the broker answers from its ready-made frame, with no
//! refresh and no disk — every twentieth of the token's lifetime, at most
//! every 2 s (the interval at which brokerd's own targets check their file)
//! and at least every 100 ms. That keeps the file within the same 2 s of the
//! broker's token as a daemon target, without a streaming request in the
//! protocol. As in the daemon, a target whose token gets within its margin
//! of the tool's own refresh asks once per token for one valid at least the
//! margin longer (`min_valid`), which the broker honours up to a fifth of the
//! lifetime: never more than one refresh per lifetime.
//!
//! When the broker cannot be reached (the forward dropped, the broker
//! restarts) the files keep what they hold and the projector reconnects with
//! backoff. SIGTERM, SIGINT and SIGHUP (the ssh session ended) end it
//! cleanly between two writes; the files are left as they are, as Vault
//! Agent leaves its file sinks, unless `--restore-on-exit` gives each file
//! back to its tool.

use super::{exit, Global};
use crate::backoff::Backoff;
use crate::clock::Now;
use crate::config::Config;
use crate::manager::ServedToken;
use crate::projection::target::Target;
use crate::projection::{Projections, CHECK_INTERVAL};
use nix::sys::signal::{SigSet, Signal};
use oauth_broker_client::{Client, Error};
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The shortest poll interval, whatever the token's lifetime.
const MIN_POLL: Duration = Duration::from_millis(100);
/// The longest wait between two attempts to reach an absent broker.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Runs the projector until a signal; `config` holds the `[[project]]`
/// entries (broker config format).
pub fn run(global: &Global, config: &Path, restore_on_exit: bool) -> ExitCode {
    let targets = match load_targets(config) {
        Ok(targets) => targets,
        Err(why) => return exit::fail_with(exit::USAGE, why),
    };
    // Blocked before any thread exists, so every thread inherits the mask
    // and only the waiter below ever takes these signals.
    let stop = match Stop::install() {
        Ok(stop) => stop,
        Err(e) => return exit::fail_with(exit::OTHER, format!("cannot set up signals: {e}")),
    };
    crate::logging::init();
    for t in &targets {
        tracing::info!(kind = t.kind(), path = %t.path().display(), "following the broker's token into this file");
    }
    let last = Follower::new(global, targets.clone()).run(&stop);
    if restore_on_exit {
        let refresh_token_id = last.as_ref().map(|t| t.refresh_token_id.as_str());
        for t in &targets {
            match t.restore(refresh_token_id.filter(|id| !id.is_empty())) {
                Ok(restored) => {
                    tracing::info!(kind = t.kind(), path = %t.path().display(), outcome = ?restored.outcome, "gave the file back to the tool")
                }
                Err(why) => tracing::warn!(kind = t.kind(), "not restored: {why}"),
            }
        }
    }
    tracing::info!("stopped; the files keep the last token written");
    ExitCode::SUCCESS
}

/// The `[[project]]` entries of `config`, resolved (`~` is this host's
/// home). The file is read with the broker's own checks (size cap, not
/// writable by others: it decides where tokens are written).
fn load_targets(config: &Path) -> Result<Vec<Arc<Target>>, String> {
    let loaded = Config::load(Some(config), config).map_err(|e| format!("{e:#}"))?;
    if loaded.file.project.is_empty() {
        return Err(format!(
            "{} has no [[project]] entries; add one per tool file, e.g. [[project]] kind = \"codex\"",
            config.display()
        ));
    }
    Projections::resolve(&loaded.file.project)
        .map(|resolved| resolved.into_targets())
        .map_err(|e| format!("{}: {e:#}", config.display()))
}

/// The stop request: SIGTERM, SIGINT or SIGHUP, taken by a thread of its own
/// with `sigwait` and passed on as a message, so that waiting for the next
/// poll is waiting on that message.
struct Stop(Receiver<Signal>);

impl Stop {
    fn install() -> nix::Result<Stop> {
        let mut set = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            set.add(s);
        }
        set.thread_block()?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(signal) = set.wait() {
                let _ = tx.send(signal);
            }
        });
        Ok(Stop(rx))
    }

    /// Waits `d` or until a signal came; true on a signal.
    fn wait(&self, d: Duration) -> bool {
        match self.0.recv_timeout(d) {
            Ok(signal) => {
                tracing::info!(%signal, "stopping");
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            // The waiter thread is gone: no signal can come any more; stop
            // rather than run unstoppable.
            Err(RecvTimeoutError::Disconnected) => true,
        }
    }
}

/// One connection to the broker and the targets it feeds.
struct Follower<'a> {
    global: &'a Global,
    client: Option<Client>,
    targets: Vec<Arc<Target>>,
    /// Per target: the token for which a fresher one was already asked (once
    /// per token, as in the daemon, so a short lifetime cannot loop).
    asked_for: Vec<Option<String>>,
    /// Per target: the last write error reported (reported once, not per poll).
    reported: Vec<Option<String>>,
    backoff: Backoff,
    /// The last broker error reported, by kind (reported once per change).
    last_error: Option<String>,
}

impl<'a> Follower<'a> {
    fn new(global: &'a Global, targets: Vec<Arc<Target>>) -> Self {
        let n = targets.len();
        Follower {
            global,
            client: None,
            targets,
            asked_for: vec![None; n],
            reported: vec![None; n],
            backoff: Backoff::new(Duration::from_millis(250), MAX_RETRY),
            last_error: None,
        }
    }

    /// Polls and writes until `stop`; returns the last token seen.
    fn run(mut self, stop: &Stop) -> Option<ServedToken> {
        let mut last: Option<ServedToken> = None;
        loop {
            let pause = match self.token(Duration::ZERO) {
                Ok(token) => {
                    let (served, pause) =
                        self.feed(ServedToken::from_answer(&token, Now::system()));
                    last = Some(served);
                    pause
                }
                Err(err) => self.failed(&err),
            };
            if stop.wait(pause) {
                return last;
            }
        }
    }

    /// Writes every target from `served`; asks for a fresher token for a
    /// target within its margin. Returns how long to wait before the next
    /// poll, and the token written last.
    fn feed(&mut self, mut served: ServedToken) -> (ServedToken, Duration) {
        for i in 0..self.targets.len() {
            let target = self.targets[i].clone();
            self.sync(i, &served);
            let Some(deadline) = target.rewrite_deadline(&served) else {
                continue;
            };
            if deadline > SystemTime::now()
                || self.asked_for[i].as_deref() == Some(served.token_id())
            {
                continue;
            }
            self.asked_for[i] = Some(served.token_id().to_string());
            match self.token(target.margin()) {
                Ok(fresh) if fresh.token_id() != served.token_id() => {
                    // A newer token: every target gets it now.
                    served = ServedToken::from_answer(&fresh, Now::system());
                    for j in 0..=i {
                        self.sync(j, &served);
                    }
                }
                Ok(_) => target.warn_short_lifetime(&served),
                Err(err) => {
                    tracing::debug!(kind = target.kind(), error = %err, "no fresher token for the projection")
                }
            }
        }
        let pause = poll_interval(&served);
        (served, pause)
    }

    fn sync(&mut self, i: usize, served: &ServedToken) {
        let target = &self.targets[i];
        match target.sync(served, SystemTime::now()) {
            Ok(_) => self.reported[i] = None,
            Err(why) => {
                if self.reported[i].as_deref() != Some(why.as_str()) {
                    tracing::warn!(kind = target.kind(), "{why}");
                    self.reported[i] = Some(why);
                }
            }
        }
    }

    /// One `Token` request, connecting first when there is no connection.
    fn token(&mut self, min_valid: Duration) -> Result<oauth_broker_client::AccessToken, Error> {
        let client = match self.client.as_mut() {
            Some(client) => client,
            None => self.client.insert(self.global.connect()?),
        };
        let result = client.token_with_identity(min_valid);
        match &result {
            Ok(_) => {
                if self.last_error.take().is_some() {
                    tracing::info!("the broker answers again");
                }
                self.backoff.reset();
            }
            // A lost connection: the next attempt opens a new one.
            Err(err) if err.is_unreachable() || matches!(err, Error::Io { .. }) => {
                self.client = None;
            }
            Err(_) => {}
        }
        result
    }

    /// Reports a failed poll (once per kind of failure) and returns the wait
    /// before the next attempt; the files keep what they hold.
    fn failed(&mut self, err: &Error) -> Duration {
        if err.is_unreachable() || matches!(err, Error::Io { .. }) {
            self.client = None;
        }
        let kind = match err.code() {
            Some(code) => format!("{code:?}"),
            None if err.is_unreachable() => "unreachable".to_string(),
            None => "other".to_string(),
        };
        if self.last_error.as_deref() != Some(kind.as_str()) {
            tracing::warn!(error = %err, "no token from the broker; the files keep the last one written, retrying");
            self.last_error = Some(kind);
        }
        self.backoff.fail(SystemTime::now(), err.retry_after())
    }
}

/// How long until the next poll: a twentieth of the token's lifetime,
/// between [`MIN_POLL`] and [`CHECK_INTERVAL`].
fn poll_interval(served: &ServedToken) -> Duration {
    let lifetime = served.lifetime();
    if lifetime.is_zero() {
        return CHECK_INTERVAL;
    }
    (lifetime / 20).clamp(MIN_POLL, CHECK_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_client::proto::TokenGrant;
    use oauth_broker_client::{AccessToken, SecretString};

    fn answer(lifetime: u64, obtained_at: Option<u64>) -> AccessToken {
        let now = crate::clock::unix_secs(SystemTime::now());
        AccessToken::from(TokenGrant {
            access_token: SecretString::from("at-SECRET"),
            token_type: "Bearer".into(),
            expires_at: now + lifetime,
            token_id: "0123456789ab".into(),
            scopes: vec!["openid".into()],
            metadata: [("account_id".to_string(), "acct-1".to_string())].into(),
            id_token: Some(SecretString::from("id-SECRET")),
            obtained_at,
            refresh_token_id: Some("fedcba987654".into()),
        })
    }

    #[test]
    fn the_answer_carries_what_the_writers_need() {
        let now = Now::system();
        let served = ServedToken::from_answer(&answer(3600, Some(1)), now);
        assert_eq!(served.account_id.as_deref(), Some("acct-1"));
        assert!(served.id_token.is_some());
        assert_eq!(served.refresh_token_id, "fedcba987654");
        assert_eq!(served.obtained_at, crate::clock::from_unix_secs(1));
        assert!(served.remaining(now).is_some());
        assert!(served.frame().is_none());
        assert!(!format!("{served:?}").contains("SECRET"));
        // An older broker's answer: the lifetime counts from now.
        let served = ServedToken::from_answer(&answer(3600, None), now);
        assert!(served.lifetime() <= Duration::from_secs(3600));
        assert!(served.lifetime() >= Duration::from_secs(3598));
    }

    #[test]
    fn polls_a_twentieth_of_the_lifetime_within_bounds() {
        let now = Now::system();
        let at = |lifetime| {
            let unix = crate::clock::unix_secs(now.wall);
            poll_interval(&ServedToken::from_answer(
                &answer(lifetime, Some(unix)),
                now,
            ))
        };
        assert_eq!(at(3600), CHECK_INTERVAL);
        assert_eq!(at(20), Duration::from_secs(1));
        assert_eq!(at(1), MIN_POLL);
    }
}
