//! The blocking client: std only, no async runtime.

mod connection;

use crate::builder::{ClientBuilder, Options};
use crate::deadline::Deadline;
use crate::exchange::{self, LoginStep};
use crate::retry::Failed;
use crate::{AccessToken, Error};
use connection::Connection;
use oauth_broker_proto::{
    ImportTokens, LoginEvent, LoginMethod, ProjectionRestored, Request, Response, StatusReport,
    Welcome,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A blocking connection to the broker.
///
/// Requests are answered in order on one persistent connection. If the broker
/// restarted (or dropped the idle connection) since the last request, idempotent
/// requests ([`Client::token`], [`Client::unauthorized`], [`Client::status`])
/// reconnect once transparently; the others are resent only if they provably
/// never reached the broker, since it may have acted on them. After
/// any transport error (timeout, I/O, malformed answer) the connection is dropped
/// and the next request opens a new one.
///
/// Methods take `&mut self`: share a client between threads behind a `Mutex`, or
/// give each thread its own (connections are cheap).
#[derive(Debug)]
pub struct Client {
    options: Options,
    path: PathBuf,
    conn: Option<Connection>,
    welcome: Welcome,
}

impl ClientBuilder<Client> {
    /// Connects and performs the handshake.
    pub fn connect(self) -> Result<Client, Error> {
        let path = self.options.socket_path()?;
        let (conn, welcome) = Connection::open(
            &path,
            &self.options.client_name,
            self.options.connect_timeout,
        )?;
        Ok(Client {
            options: self.options,
            path,
            conn: Some(conn),
            welcome,
        })
    }
}

impl Client {
    /// Connects to the discovered socket with default settings (see
    /// [`crate::default_socket_path`]).
    pub fn connect() -> Result<Client, Error> {
        Client::builder().connect()
    }

    /// A builder for a client with explicit settings.
    pub fn builder() -> ClientBuilder<Client> {
        ClientBuilder::new()
    }

    /// The broker's greeting: its account and version.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The socket this client talks to.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// An access token valid for at least `min_valid` more (unless even a fresh
    /// token lives shorter, in which case the fresh one). May wait for one refresh.
    pub fn token(&mut self, min_valid: Duration) -> Result<AccessToken, Error> {
        let request = Request::Token {
            min_valid_secs: min_valid.as_secs(),
        };
        self.call(&request, true, exchange::token)
    }

    /// Reports that a server rejected `token` with 401 and returns a replacement:
    /// a newer token if the broker already has one, else a freshly refreshed one.
    pub fn unauthorized(&mut self, token: &AccessToken) -> Result<AccessToken, Error> {
        let request = Request::Unauthorized {
            token_id: token.token_id().to_string(),
        };
        self.call(&request, true, exchange::token)
    }

    /// The broker's state. Never waits behind a refresh.
    pub fn status(&mut self) -> Result<StatusReport, Error> {
        self.call(&Request::Status, true, exchange::status)
    }

    /// Hands existing tokens to the broker, which persists and from then on owns
    /// them. Returns the access token's expiry, or `None` when the broker will
    /// refresh before first use.
    pub fn import(&mut self, tokens: ImportTokens) -> Result<Option<SystemTime>, Error> {
        self.call(&Request::Import { tokens }, false, exchange::imported)
    }

    /// Forgets the login (revoking at the server when possible). Returns whether
    /// the server confirmed the revocation.
    pub fn logout(&mut self) -> Result<bool, Error> {
        self.call(&Request::Logout, false, exchange::logged_out)
    }

    /// Runs a login in the broker and calls `on_event` for every event it streams
    /// (device code, authorization URL, and the final one). Returns the final
    /// `logged_in` event; a final `error` event is returned as the matching
    /// [`Error`] (after `on_event` saw it).
    ///
    /// Waits as long as the user needs, up to the login timeout (default 20
    /// minutes), not the request timeout.
    pub fn relogin(
        &mut self,
        method: Option<LoginMethod>,
        mut on_event: impl FnMut(&LoginEvent),
    ) -> Result<LoginEvent, Error> {
        let request = Request::Relogin { method };
        let reused = self.conn.is_some();
        let mut conn = match self.send(&request) {
            Err(failed) if failed.should_retry(reused, false) => self.send(&request),
            other => other,
        }
        .map_err(|failed| failed.error)?;
        let deadline = Deadline::after(self.options.login_timeout, "login");
        loop {
            let response = conn.recv(&deadline)?;
            if let Response::Login(event) = &response {
                on_event(event);
            }
            match exchange::login_step(response) {
                Ok(LoginStep::Progress(_)) => {}
                Ok(LoginStep::Done(event)) => {
                    self.conn = Some(conn);
                    return Ok(event);
                }
                Err(err) => {
                    if !err.breaks_connection() {
                        self.conn = Some(conn);
                    }
                    return Err(err);
                }
            }
        }
    }

    /// During a browser login running elsewhere: hands the broker the redirect URL
    /// the user pasted (when the browser could not reach the loopback listener).
    pub fn complete_login(&mut self, redirect_url: &str) -> Result<LoginEvent, Error> {
        let request = Request::CompleteLogin {
            redirect_url: redirect_url.to_string(),
        };
        self.call(&request, false, exchange::login_completed)
    }

    /// Stops the broker writing a projection target's file (its kind, e.g.
    /// `codex`, or its path) and gives the file back to its tool: the backup
    /// of the tool's own login if the broker made one, else the broker's file
    /// is removed.
    pub fn project_restore(&mut self, target: &str) -> Result<ProjectionRestored, Error> {
        let request = Request::ProjectRestore {
            target: target.to_string(),
        };
        self.call(&request, false, exchange::project_restored)
    }

    /// Sends `request` and interprets the answer with `parse`, resending once on
    /// a new connection when the old one turned out dead (see [`crate::retry`]).
    fn call<T>(
        &mut self,
        request: &Request,
        idempotent: bool,
        parse: fn(Response) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let reused = self.conn.is_some();
        match self.exchange(request, parse) {
            Err(failed) if failed.should_retry(reused, idempotent) => self.exchange(request, parse),
            other => other,
        }
        .map_err(|failed| failed.error)
    }

    fn exchange<T>(
        &mut self,
        request: &Request,
        parse: fn(Response) -> Result<T, Error>,
    ) -> Result<T, Failed> {
        let deadline = Deadline::after(self.options.request_timeout, "request");
        let mut conn = self.send_by(request, &deadline)?;
        let result = conn
            .recv(&deadline)
            .and_then(parse)
            .map_err(Failed::delivered);
        // Error frames are ordinary answers; only transport trouble or an answer
        // out of step with the request makes the connection unusable.
        if !matches!(&result, Err(failed) if failed.error.breaks_connection()) {
            self.conn = Some(conn);
        }
        result
    }

    /// Sends `request` (on the open connection or a new one) within the request
    /// timeout and hands back the connection to read the answer from.
    fn send(&mut self, request: &Request) -> Result<Connection, Failed> {
        let deadline = Deadline::after(self.options.request_timeout, "request");
        self.send_by(request, &deadline)
    }

    fn send_by(&mut self, request: &Request, deadline: &Deadline) -> Result<Connection, Failed> {
        let mut conn = self.take_connection().map_err(Failed::undelivered)?;
        conn.send(request, deadline).map_err(Failed::undelivered)?;
        Ok(conn)
    }

    /// The open connection, or a new one. The caller puts it back when the
    /// exchange ended cleanly, so a failed exchange leaves no half-read stream.
    fn take_connection(&mut self) -> Result<Connection, Error> {
        if let Some(conn) = self.conn.take() {
            return Ok(conn);
        }
        let (conn, welcome) = Connection::open(
            &self.path,
            &self.options.client_name,
            self.options.connect_timeout,
        )?;
        self.welcome = welcome;
        Ok(conn)
    }
}
