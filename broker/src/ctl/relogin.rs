//! `brokerctl relogin`: have the broker run an interactive login.
//!
//! The broker performs the login and the token exchange itself, so the refresh
//! token never passes through this process; brokerctl only shows the user what
//! to do (a URL and a code, or a URL to open) and waits for the outcome.
//!
//! In a terminal it also opens the browser when there is a display, shows a
//! live countdown of the device code's validity on stderr, and reads a pasted
//! redirect URL (or `code#state`) from stdin for machines where the browser
//! cannot reach the broker's loopback listener. With `--json` (or when not
//! attached to a terminal) it does none of that: one JSON object per event on
//! stdout, nothing else, so scripts and tests can drive it.

use super::{exit, output, Global};
use crate::login::browser::open_in_browser;
use clap::Args;
use oauth_broker_client::{Error, LoginEvent, LoginMethod};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// Log in again (device code or browser), run by the broker.
#[derive(Debug, Args)]
pub struct ReloginArgs {
    /// Use the device authorization flow (enter a code on another device).
    #[arg(long, conflicts_with = "browser")]
    pub device: bool,
    /// Use the browser flow (authorization code + PKCE, loopback redirect).
    #[arg(long)]
    pub browser: bool,
    /// Print each login event as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
}

impl ReloginArgs {
    fn method(&self) -> Option<LoginMethod> {
        match (self.device, self.browser) {
            (true, _) => Some(LoginMethod::Device),
            (_, true) => Some(LoginMethod::Browser),
            _ => None, // the provider preset's default
        }
    }
}

/// Runs the subcommand.
pub fn run(global: &Global, args: &ReloginArgs) -> ExitCode {
    let mut client = match global.connect() {
        Ok(client) => client,
        Err(err) => return exit::fail(&err),
    };
    let result = if args.json {
        client.relogin(args.method(), |event| {
            // A closed stdout must not abort the login the broker is running;
            // the outcome still decides the exit code.
            if let Ok(line) = serde_json::to_string(event) {
                let _ = output::stdout(&(line + "\n"));
            }
        })
    } else {
        let countdown = Countdown::start();
        let result = client.relogin(args.method(), |event| {
            if event.is_final() {
                countdown.stop_showing();
            }
            if let Some(text) = describe(event, SystemTime::now()) {
                let _ = output::stdout(&text);
            }
            match event {
                LoginEvent::DeviceCode { expires_in, .. } => countdown.device_code(
                    Instant::now()
                        .checked_add(Duration::from_secs(*expires_in))
                        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400)),
                ),
                LoginEvent::AuthorizeUrl { url, redirect_uri } => {
                    if std::io::stdout().is_terminal() {
                        open_in_browser(url);
                    }
                    if std::io::stdin().is_terminal() {
                        let _ = output::stdout(paste_prompt(redirect_uri.is_some()));
                        spawn_paste_reader(global);
                    }
                }
                _ => {}
            }
        });
        countdown.stop();
        result
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => exit::fail(&err),
    }
}

/// What to show a human for an event. `None` for the final error, which is
/// reported on stderr like every other error.
pub fn describe(event: &LoginEvent, now: SystemTime) -> Option<String> {
    Some(match event {
        LoginEvent::DeviceCode {
            verification_uri,
            verification_uri_complete,
            user_code,
            expires_in,
        } => {
            let mut text =
                format!("To log in, open {verification_uri}\nand enter the code: {user_code}\n");
            if let Some(complete) = verification_uri_complete {
                text.push_str(&format!("(or open {complete} directly)\n"));
            }
            text.push_str(&format!(
                "The code expires in {}. Waiting for you to finish…\n",
                output::span(*expires_in)
            ));
            text
        }
        LoginEvent::AuthorizeUrl { url, redirect_uri } => {
            let mut text = format!("Open this URL in a browser to log in:\n\n    {url}\n\n");
            if let Some(redirect) = redirect_uri {
                text.push_str(&format!(
                    "The broker waits for the browser's redirect to {redirect}\n"
                ));
            }
            text.push_str("Waiting for you to finish…\n");
            text
        }
        LoginEvent::LoggedIn {
            account,
            expires_at,
            account_id,
        } => {
            let id = account_id
                .as_deref()
                .map(|id| format!(" (account id {id})"))
                .unwrap_or_default();
            if *expires_at == 0 {
                format!(
                    "Logged in: account {account}{id}; the broker will obtain an access token before first use\n"
                )
            } else {
                let now = output::unix_secs(now);
                format!(
                    "Logged in: account {account}{id}; access token valid until {}\n",
                    output::absolute_and_relative(*expires_at, now)
                )
            }
        }
        LoginEvent::Error { .. } => return None,
    })
}

/// The invitation to paste, for a loopback login (`listening`) or a provider
/// that shows the code on its own page.
pub fn paste_prompt(listening: bool) -> &'static str {
    if listening {
        "If the browser cannot reach this machine (SSH, container), paste the address it ended on here and press Enter.\n"
    } else {
        "After approving, paste the code the page shows (or the whole address) here and press Enter.\n"
    }
}

/// Reads pasted redirects from stdin and hands each to the broker on a
/// connection of its own (the login's connection is busy streaming), until one
/// is accepted. The outcome itself arrives on the login stream.
fn spawn_paste_reader(global: &Global) {
    let global = global.clone();
    thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            match global
                .connect()
                .and_then(|mut client| client.complete_login(line))
            {
                Ok(_) => return,
                // Unreadable: the login keeps waiting for another try.
                Err(err @ Error::BadRequest { .. }) => {
                    exit::report(format_args!("that was not accepted: {err}"));
                    eprintln!("brokerctl: paste again, or press Ctrl-C to give up");
                }
                Err(err) => {
                    exit::report(format_args!("that was not accepted: {err}"));
                    return;
                }
            }
        }
    });
}

/// The live countdown of a device code on stderr: one line rewritten every
/// second while the user approves. Only on a terminal: piped stderr gets
/// nothing, so logs are not flooded.
struct Countdown {
    /// The code's expiry while the line is shown. The writer thread holds the
    /// lock while it writes, so clearing the line never races with a redraw.
    shown: Arc<Mutex<Option<Instant>>>,
    stop: Option<mpsc::Sender<()>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Countdown {
    fn start() -> Countdown {
        let shown = Arc::new(Mutex::new(None::<Instant>));
        if !std::io::stderr().is_terminal() {
            return Countdown {
                shown,
                stop: None,
                handle: None,
            };
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let state = shown.clone();
        let handle = thread::spawn(move || loop {
            if let Some(deadline) = *state.lock().unwrap_or_else(|e| e.into_inner()) {
                let left = deadline.saturating_duration_since(Instant::now()).as_secs();
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2KWaiting for approval; the code expires in {}:{:02}",
                    left / 60,
                    left % 60
                );
                let _ = err.flush();
            }
            match stopped.recv_timeout(Duration::from_secs(1)) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        });
        Countdown {
            shown,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Starts showing the countdown to `expires`.
    fn device_code(&self, expires: Instant) {
        if self.stop.is_some() {
            *self.shown.lock().unwrap_or_else(|e| e.into_inner()) = Some(expires);
        }
    }

    /// Removes the line (before anything else is printed).
    fn stop_showing(&self) {
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        if shown.take().is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }

    fn stop(mut self) {
        self.stop_showing();
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn json_lines_are_the_events_as_serialized() {
        let event = LoginEvent::DeviceCode {
            verification_uri: "https://example.com/device".into(),
            verification_uri_complete: None,
            user_code: "ABCD-EFGH".into(),
            expires_in: 900,
        };
        let line = serde_json::to_string(&event).unwrap();
        assert_eq!(
            line,
            r#"{"event":"device_code","verification_uri":"https://example.com/device","user_code":"ABCD-EFGH","expires_in":900}"#
        );
        let url = LoginEvent::AuthorizeUrl {
            url: "https://example.com/a".into(),
            redirect_uri: None,
        };
        assert_eq!(
            serde_json::to_string(&url).unwrap(),
            r#"{"event":"authorize_url","url":"https://example.com/a"}"#
        );
    }

    #[test]
    fn human_lines() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let device = describe(
            &LoginEvent::DeviceCode {
                verification_uri: "https://example.com/device".into(),
                verification_uri_complete: Some("https://example.com/device?c=ABCD".into()),
                user_code: "ABCD-EFGH".into(),
                expires_in: 900,
            },
            now,
        )
        .unwrap();
        assert_eq!(
            device,
            "To log in, open https://example.com/device\nand enter the code: ABCD-EFGH\n\
             (or open https://example.com/device?c=ABCD directly)\n\
             The code expires in 15m. Waiting for you to finish…\n"
        );
        let done = describe(
            &LoginEvent::LoggedIn {
                account: "default".into(),
                expires_at: 1_700_003_600,
                account_id: Some("acct-1".into()),
            },
            now,
        )
        .unwrap();
        assert_eq!(
            done,
            "Logged in: account default (account id acct-1); access token valid until 2023-11-14 23:13:20 UTC (in 1h 00m)\n"
        );
        let later = describe(
            &LoginEvent::LoggedIn {
                account: "default".into(),
                expires_at: 0,
                account_id: None,
            },
            now,
        )
        .unwrap();
        assert!(later.contains("before first use"), "{later}");
        let error = LoginEvent::Error {
            code: "busy".into(),
            message: "m".into(),
            hint: None,
        };
        assert_eq!(describe(&error, now), None);
        assert!(paste_prompt(true).contains("paste the address"));
        assert!(paste_prompt(false).contains("paste the code"));
    }

    #[test]
    fn method_flags() {
        let args = |device, browser| ReloginArgs {
            device,
            browser,
            json: false,
        };
        assert_eq!(args(true, false).method(), Some(LoginMethod::Device));
        assert_eq!(args(false, true).method(), Some(LoginMethod::Browser));
        assert_eq!(args(false, false).method(), None);
    }
}
