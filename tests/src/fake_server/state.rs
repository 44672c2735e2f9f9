//! The server's single source of truth, and waiting for it to change.
//!
//! Why one lock: counters must be exact. Every handler does its whole
//! decision (pop a fault, check a token, rotate, count) inside one critical
//! section, so concurrent requests are serialised exactly like on a server
//! with a transactional store, and a [`Stats`] snapshot never sees half of an
//! outcome. Nothing awaits while holding the lock.
//!
//! Why two wake-up mechanisms: tests may wait from a plain thread (a
//! `Condvar`) or from an async test (a `tokio::sync::watch` version counter,
//! which works across runtimes). Both fire after every change, so waits never
//! poll on a timer.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::authcode::AuthCodes;
use super::config::FakeConfig;
use super::copilot::Copilot;
use super::device::DeviceGrants;
use super::families::{Families, MintSpec};
use super::fault::FaultQueue;
use super::openai_device::OpenAiDevice;
use super::stats::{Stats, TokenRequestRecord, WaitTimeout};

/// Everything the server knows.
#[derive(Debug)]
pub(crate) struct Inner {
    pub cfg: FakeConfig,
    pub base_url: String,
    pub families: Families,
    pub device: DeviceGrants,
    pub codes: AuthCodes,
    pub copilot: Copilot,
    pub faults: FaultQueue,
    pub copilot_faults: FaultQueue,
    pub stats: Stats,
    pub token_log: Vec<TokenRequestRecord>,
    pub device_polls: Vec<Instant>,
    pub revoked_tokens: Vec<String>,
    pub authorize_log: Vec<BTreeMap<String, String>>,
    /// OpenAI's device login scheme.
    pub openai_device: OpenAiDevice,
    /// Arrival instants of OpenAI-scheme device polls.
    pub openai_device_polls: Vec<Instant>,
    /// Non-secret fields (and the User-Agent) of every token request.
    pub token_params: Vec<BTreeMap<String, String>>,
    /// `Editor-Version`, `User-Agent` and the auth scheme of every Copilot
    /// exchange request.
    pub copilot_headers: Vec<BTreeMap<String, String>>,
}

impl Inner {
    /// Parameters for minting tokens under the current configuration.
    /// A free function over the fields so `families` can be borrowed mutably
    /// next to it.
    pub(crate) fn mint_spec<'a>(cfg: &'a FakeConfig, base_url: &'a str) -> MintSpec<'a> {
        MintSpec {
            jwt: cfg.jwt_access_tokens,
            ttl: cfg.access_ttl,
            exp_slack: cfg.jwt_exp_slack,
            issuer: base_url,
            client_id: &cfg.client_id,
            account_id: &cfg.account_id,
            with_refresh: cfg.issue_refresh_tokens,
            access_prefix: &cfg.access_token_prefix,
        }
    }

    /// Revokes the family of a refresh token and counts it.
    pub(crate) fn revoke_family_of(&mut self, refresh_token: &str) -> bool {
        match self.families.family_of_refresh(refresh_token) {
            Some(f) => {
                if self.families.revoke_family(f) {
                    self.stats.families_revoked += 1;
                }
                true
            }
            None => false,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    changed_cv: Condvar,
    changed_tx: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn new(cfg: FakeConfig, base_url: String) -> Self {
        Self {
            inner: Mutex::new(Inner {
                cfg,
                base_url,
                families: Families::default(),
                device: DeviceGrants::default(),
                codes: AuthCodes::default(),
                copilot: Copilot::default(),
                faults: FaultQueue::default(),
                copilot_faults: FaultQueue::default(),
                stats: Stats::default(),
                token_log: Vec::new(),
                device_polls: Vec::new(),
                revoked_tokens: Vec::new(),
                authorize_log: Vec::new(),
                openai_device: OpenAiDevice::default(),
                openai_device_polls: Vec::new(),
                token_params: Vec::new(),
                copilot_headers: Vec::new(),
            }),
            changed_cv: Condvar::new(),
            changed_tx: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not poison the server for others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` under the lock, then wakes every waiter.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed_cv.notify_all();
        self.changed_tx.send_modify(|v| *v = v.wrapping_add(1));
        r
    }

    /// Runs `f` under the lock without waking anyone.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Inner) -> R) -> R {
        f(&self.lock())
    }

    /// Blocks the calling thread until `pred(stats)` holds.
    pub(crate) fn wait_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Stats) -> bool,
    ) -> Result<Stats, WaitTimeout> {
        let guard = self.lock();
        let (guard, result) = self
            .changed_cv
            .wait_timeout_while(guard, timeout, |inner| !pred(&inner.stats))
            .unwrap_or_else(|e| e.into_inner());
        if result.timed_out() && !pred(&guard.stats) {
            return Err(WaitTimeout {
                waited: timeout,
                last: Box::new(guard.stats.clone()),
            });
        }
        Ok(guard.stats.clone())
    }

    /// Awaits until `pred(stats)` holds, from any tokio runtime.
    pub(crate) async fn wait_until_async(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Stats) -> bool,
    ) -> Result<Stats, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.changed_tx.subscribe();
        loop {
            // Mark the current version seen *before* checking, so a change
            // between the check and the await is not lost.
            rx.borrow_and_update();
            let stats = self.read(|i| i.stats.clone());
            if pred(&stats) {
                return Ok(stats);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    let last = self.read(|i| i.stats.clone());
                    return if pred(&last) {
                        Ok(last)
                    } else {
                        Err(WaitTimeout {
                            waited: timeout,
                            last: Box::new(last),
                        })
                    };
                }
            }
        }
    }
}
