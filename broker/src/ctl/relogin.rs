//! `brokerctl relogin`: have the broker run an interactive login.
//!
//! The broker performs the login and the token exchange itself, so the refresh
//! token never passes through this process; brokerctl only shows the user what
//! to do (a URL and a code, or a URL to open) and waits for the outcome.

use super::{exit, output, Global};
use clap::Args;
use oauth_broker_client::{LoginEvent, LoginMethod};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::mpsc;
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

/// How often a waiting human login says it is still waiting.
const TICK: Duration = Duration::from_secs(60);

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
        let ticker = Ticker::start();
        let result = client.relogin(args.method(), |event| {
            if let Some(text) = describe(event, SystemTime::now()) {
                let _ = output::stdout(&text);
            }
            match event {
                LoginEvent::DeviceCode { expires_in, .. } => {
                    ticker.waiting(Some(Instant::now() + Duration::from_secs(*expires_in)))
                }
                LoginEvent::AuthorizeUrl { url, .. } => {
                    open_browser(url);
                    ticker.waiting(None);
                }
                _ => {}
            }
        });
        ticker.stop();
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
            let now = output::unix_secs(now);
            format!(
                "Logged in: account {account}{id}; access token valid until {}\n",
                output::absolute_and_relative(*expires_at, now)
            )
        }
        LoginEvent::Error { .. } => return None,
    })
}

/// Opens `url` in the user's browser when there is a graphical session to show
/// it in. Best effort: the URL is printed anyway.
fn open_browser(url: &str) {
    if !std::io::stdout().is_terminal() {
        return;
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        "xdg-open"
    } else {
        return;
    };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// Prints "still waiting" lines on stderr while the user completes the login,
/// so a long silent wait does not look like a hang.
struct Ticker {
    tx: mpsc::Sender<Option<Instant>>,
    handle: thread::JoinHandle<()>,
}

impl Ticker {
    fn start() -> Ticker {
        let (tx, rx) = mpsc::channel::<Option<Instant>>();
        let handle = thread::spawn(move || {
            let mut waiting = false;
            let mut expires = None;
            loop {
                match rx.recv_timeout(TICK) {
                    Ok(deadline) => {
                        waiting = true;
                        expires = deadline;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) if waiting => match expires {
                        Some(deadline) => eprintln!(
                            "brokerctl: still waiting; the code expires in {}",
                            output::span(
                                deadline.saturating_duration_since(Instant::now()).as_secs()
                            )
                        ),
                        None => eprintln!("brokerctl: still waiting for the login to finish"),
                    },
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        Ticker { tx, handle }
    }

    fn waiting(&self, code_expires: Option<Instant>) {
        let _ = self.tx.send(code_expires);
    }

    fn stop(self) {
        drop(self.tx);
        let _ = self.handle.join();
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
        let error = LoginEvent::Error {
            code: "busy".into(),
            message: "m".into(),
            hint: None,
        };
        assert_eq!(describe(&error, now), None);
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
