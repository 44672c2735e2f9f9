//! Interactive logins, run by the daemon so that the refresh token never
//! leaves it: `brokerctl relogin` only shows what the user must do and waits.
//!
//! One file per flow: [`device`] (RFC 8628), [`openai_device`] (OpenAI's own
//! device scheme), [`browser`] (authorization code + PKCE with a [`loopback`]
//! redirect or a pasted one), with [`pkce`], [`redirect`], [`pacing`] and
//! [`exchange`] as their parts. [`LoginRunner`] starts a flow in a task of its
//! own, streams its [`LoginEvent`]s to the connection that asked, and hands the
//! result to [`TokenManager::adopt`]: persisted first, then served, so clients
//! switch to the new tokens on their open connections. A login that fails or
//! is cancelled never touches the existing state.
//!
//! Only one login runs at a time; a second `Relogin` gets `busy`. A client that
//! disconnects cancels its login while the login only waits (for the user, the
//! browser, the next poll); once tokens have been issued the login always
//! finishes and persists them, so nothing the server handed out is lost.

pub mod browser;
pub mod device;
pub mod exchange;
pub mod failure;
pub mod loopback;
pub mod openai_device;
pub mod pacing;
pub mod pkce;
pub mod redirect;

use crate::clock::Clock;
use crate::config::LoginSettings;
use crate::manager::TokenManager;
use crate::oauth::{Discovery, ErrorClass, RefreshError, Refresher};
use crate::provider::{DeviceScheme, ProviderSpec, RefreshKind};
use failure::LoginFailure;
use oauth_broker_proto::{ErrorCode, LoginEvent, LoginMethod};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

/// A redirect URL (or `code#state`) pasted by the user, with the channel that
/// says whether it could be read.
pub struct Paste {
    /// What was pasted.
    pub text: String,
    /// `Ok` once accepted for this login (the outcome follows as the final
    /// event); `Err` when it cannot be read (the login keeps waiting).
    pub reply: oneshot::Sender<Result<(), PasteError>>,
}

/// Why a pasted redirect was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasteError {
    /// No login runs.
    #[error("no login is waiting for a redirect")]
    NoLoginWaiting,
    /// The running login is a device login.
    #[error("the running login is a device login; there is nothing to paste")]
    DeviceLogin,
    /// The login ended meanwhile.
    #[error("the login ended before the redirect could be used")]
    LoginEnded,
    /// The paste is not a redirect (or `code#state`); says why.
    #[error("{0}")]
    Unreadable(String),
    /// The login task went away without a final event (a bug).
    #[error("the login ended without an outcome")]
    NoOutcome,
}

impl PasteError {
    /// The protocol code.
    pub fn code(&self) -> ErrorCode {
        match self {
            PasteError::NoOutcome => ErrorCode::Internal,
            _ => ErrorCode::BadRequest,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            PasteError::NoLoginWaiting => {
                Some("start one with `brokerctl relogin --browser` and paste while it waits")
            }
            PasteError::DeviceLogin => Some("approve the code it shows instead"),
            PasteError::LoginEnded => Some("start a new one with `brokerctl relogin --browser`"),
            PasteError::Unreadable(_) => Some("paste the whole address the browser ended on, or the `code#state` the provider's page shows"),
            PasteError::NoOutcome => None,
        }
    }
}

/// The login that is running.
struct Active {
    id: u64,
    /// Where pastes go; `None` for device logins.
    paste: Option<mpsc::Sender<Paste>>,
    /// The final event, once there is one.
    outcome: watch::Receiver<Option<LoginEvent>>,
}

/// Runs logins for one account. Cheap to share behind an `Arc`.
pub struct LoginRunner {
    account: String,
    provider: Arc<ProviderSpec>,
    http: reqwest::Client,
    discovery: Discovery,
    manager: TokenManager,
    refresher: Arc<dyn Refresher>,
    clock: Arc<dyn Clock>,
    settings: LoginSettings,
    active: Arc<Mutex<Option<Active>>>,
    next_id: AtomicU64,
}

/// Frees the "active login" slot of login `id` when dropped: however the
/// login's task ends — its final event, a panic, or the runtime dropping it —
/// the next `Relogin` is never refused as `busy` by a login that is gone.
struct ReleaseSlot {
    active: Arc<Mutex<Option<Active>>>,
    id: u64,
}

impl Drop for ReleaseSlot {
    fn drop(&mut self) {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if active.as_ref().is_some_and(|a| a.id == self.id) {
            *active = None;
        }
    }
}

/// The events of a started login. Dropping it cancels the login (while it
/// waits; see the module docs).
pub struct LoginStream {
    /// Progress events, ending with exactly one final `logged_in` or `error`.
    pub events: mpsc::UnboundedReceiver<LoginEvent>,
    _cancel_on_drop: DropGuard,
}

/// What a flow gets to work with.
pub struct Ctx<'a> {
    runner: &'a LoginRunner,
    events: &'a mpsc::UnboundedSender<LoginEvent>,
    cancel: &'a CancellationToken,
    paste: Option<mpsc::Receiver<Paste>>,
}

impl Ctx<'_> {
    /// Streams a progress event (a client that went away is not an error here:
    /// the cancellation handles that).
    fn emit(&self, event: LoginEvent) {
        let _ = self.events.send(event);
    }
}

impl LoginRunner {
    /// A runner for the provider `manager` serves. `refresher` is the one the
    /// manager uses (for GitHub Copilot the first session-token exchange runs
    /// right after the login, so that a missing entitlement shows at once).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        account: String,
        provider: Arc<ProviderSpec>,
        http: reqwest::Client,
        manager: TokenManager,
        refresher: Arc<dyn Refresher>,
        clock: Arc<dyn Clock>,
        settings: LoginSettings,
    ) -> Arc<LoginRunner> {
        Arc::new(LoginRunner {
            account,
            provider,
            http,
            discovery: Discovery::new(),
            manager,
            refresher,
            clock,
            settings,
            active: Arc::new(Mutex::new(None)),
            next_id: AtomicU64::new(1),
        })
    }

    fn active(&self) -> std::sync::MutexGuard<'_, Option<Active>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a login (`method` `None` = the provider's default). Errs with the
    /// final `busy` event when a login is already running.
    pub fn start(self: &Arc<Self>, method: Option<LoginMethod>) -> Result<LoginStream, LoginEvent> {
        let method = method.unwrap_or(self.provider.default_login);
        let mut active = self.active();
        if active.is_some() {
            return Err(LoginFailure::new(
                ErrorCode::Busy,
                "another login is already running for this account",
            )
            .with_hint("finish or cancel it (Ctrl-C in its terminal), then try again")
            .into_event());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (outcome_tx, outcome_rx) = watch::channel(None);
        let (paste_tx, paste_rx) = match method {
            LoginMethod::Browser => {
                let (tx, rx) = mpsc::channel(4);
                (Some(tx), Some(rx))
            }
            LoginMethod::Device => (None, None),
        };
        *active = Some(Active {
            id,
            paste: paste_tx,
            outcome: outcome_rx,
        });
        drop(active);
        let cancel = CancellationToken::new();
        let runner = self.clone();
        let token = cancel.clone();
        let slot = ReleaseSlot {
            active: self.active.clone(),
            id,
        };
        tokio::spawn(async move {
            tracing::info!(account = %runner.account, method = ?method, "login started");
            let final_event = runner.run(method, &events_tx, &token, paste_rx).await;
            match &final_event {
                LoginEvent::LoggedIn { .. } => {
                    tracing::info!(account = %runner.account, "login succeeded; new tokens persisted and served")
                }
                LoginEvent::Error { code, message, .. } => {
                    tracing::warn!(account = %runner.account, code, error = %message, "login failed; the previous login (if any) is untouched")
                }
                _ => {}
            }
            // Publish the outcome, free the slot, then end the stream: a client
            // that starts another login after the final event is never busy.
            let _ = outcome_tx.send(Some(final_event.clone()));
            drop(slot);
            let _ = events_tx.send(final_event);
        });
        Ok(LoginStream {
            events: events_rx,
            _cancel_on_drop: cancel.drop_guard(),
        })
    }

    /// Hands a pasted redirect to the running browser login. `Ok` means it was
    /// accepted; the receiver then yields the login's final event.
    pub async fn submit_paste(
        &self,
        text: &str,
    ) -> Result<watch::Receiver<Option<LoginEvent>>, PasteError> {
        let (paste, outcome) = {
            let active = self.active();
            let Some(active) = active.as_ref() else {
                return Err(PasteError::NoLoginWaiting);
            };
            let Some(paste) = active.paste.clone() else {
                return Err(PasteError::DeviceLogin);
            };
            (paste, active.outcome.clone())
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let gone = || PasteError::LoginEnded;
        paste
            .send(Paste {
                text: text.to_string(),
                reply: reply_tx,
            })
            .await
            .map_err(|_| gone())?;
        reply_rx.await.map_err(|_| gone())??;
        Ok(outcome)
    }

    /// `CompleteLogin` from any connection: pastes, then waits for the login's
    /// final event.
    pub async fn complete(&self, text: &str) -> Result<LoginEvent, PasteError> {
        let mut outcome = self.submit_paste(text).await?;
        loop {
            if let Some(event) = outcome.borrow_and_update().clone() {
                return Ok(event);
            }
            if outcome.changed().await.is_err() {
                return outcome.borrow().clone().ok_or(PasteError::NoOutcome);
            }
        }
    }

    /// Runs one login to its final event.
    async fn run(
        &self,
        method: LoginMethod,
        events: &mpsc::UnboundedSender<LoginEvent>,
        cancel: &CancellationToken,
        paste: Option<mpsc::Receiver<Paste>>,
    ) -> LoginEvent {
        let mut ctx = Ctx {
            runner: self,
            events,
            cancel,
            paste,
        };
        match self.login(method, &mut ctx).await {
            Ok(event) => event,
            Err(failure) => failure.into_event(),
        }
    }

    async fn login(
        &self,
        method: LoginMethod,
        ctx: &mut Ctx<'_>,
    ) -> Result<LoginEvent, LoginFailure> {
        let tokens = match (method, self.provider.login.device_scheme) {
            (LoginMethod::Browser, _) => browser::run(ctx).await?,
            (LoginMethod::Device, DeviceScheme::Rfc8628) => device::run(ctx).await?,
            (LoginMethod::Device, DeviceScheme::OpenAi) => openai_device::run(ctx).await?,
            (LoginMethod::Device, DeviceScheme::Unsupported) => {
                return Err(LoginFailure::new(
                    ErrorCode::BadRequest,
                    format!("the {} provider has no device login", self.provider.preset),
                )
                .with_hint("use `brokerctl relogin --browser`"))
            }
        };
        // From here on the server has issued tokens: finish regardless of the
        // client, so that nothing it handed out is lost.
        let mut creds = exchange::credentials_from(self, tokens, self.clock.now())?;
        if self.provider.refresh_kind == RefreshKind::CopilotExchange {
            match self.refresher.refresh(&creds).await {
                Ok(session) => creds = session,
                Err(e) if e.class == ErrorClass::Relogin => {
                    return Err(LoginFailure::retry_login(
                        &self.account,
                        format!(
                            "GitHub accepted the login, but the Copilot token exchange refused it: {} ({})",
                            e.message, e.reason
                        ),
                    )
                    .with_hint("check that this GitHub account has a Copilot subscription, then run `brokerctl relogin` again"))
                }
                Err(e) => {
                    // The GitHub token is good; the broker exchanges it later.
                    tracing::warn!(reason = %e.reason, "the first Copilot token exchange failed; the broker retries it with backoff");
                }
            }
        }
        let expires_at = self
            .manager
            .adopt(creds)
            .await
            .map_err(|e| LoginFailure::new(e.code(), e.to_string()).with_hint(e.hint()))?;
        Ok(LoginEvent::LoggedIn {
            account: self.account.clone(),
            expires_at,
            account_id: self.manager.status().account_id,
        })
    }

    /// A classified failure met during `what`.
    fn failure(&self, what: &str, e: &RefreshError) -> LoginFailure {
        LoginFailure::from_refresh_error(what, e, &self.account, &self.provider.config_source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn occupied(id: u64) -> Arc<Mutex<Option<Active>>> {
        let (_tx, outcome) = watch::channel(None);
        Arc::new(Mutex::new(Some(Active {
            id,
            paste: None,
            outcome,
        })))
    }

    #[tokio::test]
    async fn a_panicking_login_task_still_frees_the_slot() {
        let active = occupied(7);
        let slot = ReleaseSlot {
            active: active.clone(),
            id: 7,
        };
        let task = tokio::spawn(async move {
            let _slot = slot;
            panic!("a bug in a login flow");
        });
        assert!(task.await.unwrap_err().is_panic());
        assert!(active.lock().unwrap().is_none());
    }

    #[test]
    fn a_finished_login_never_frees_a_newer_ones_slot() {
        let active = occupied(8);
        drop(ReleaseSlot {
            active: active.clone(),
            id: 7,
        });
        assert_eq!(active.lock().unwrap().as_ref().map(|a| a.id), Some(8));
    }
}
