//! The blocking client: std only, no async runtime.

mod connection;

use crate::builder::{ClientBuilder, Options};
use crate::busy::BusyRetry;
use crate::calls::{self, with_calls, Call};
use crate::deadline::Deadline;
use crate::exchange::{self, LoginStep};
use crate::retry::Failed;
use crate::{AccessToken, Error};
use connection::Connection;
use oauth_broker_proto::{LoginEvent, LoginMethod, Request, Response, Welcome};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A blocking connection to the broker.
///
/// Requests are answered in order on one persistent connection. If the broker
/// restarted (or dropped the idle connection) since the last request, idempotent
/// requests ([`Client::token`], [`Client::unauthorized`], [`Client::status`])
/// reconnect once transparently; the others are resent only if they provably
/// never reached the broker, since it may have acted on them. After
/// any transport error (timeout, I/O, malformed answer) the connection is dropped
/// and the next request opens a new one, sending the hello and the request in
/// one write. A broker that answers `busy` (at its connection limit) is waited
/// out within a budget (see [`ClientBuilder::busy_retry_budget`]).
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
        let (conn, welcome) = BusyRetry::run_blocking(self.options.busy_budget, || {
            Connection::open(
                &path,
                &self.options.client_name,
                self.options.connect_timeout,
                None,
            )
        })?;
        Ok(Client {
            options: self.options,
            path,
            conn: Some(conn),
            welcome,
        })
    }

    /// Connects and asks for a token in one round trip: the hello and the
    /// token request go out in one write. The fastest way for a program that
    /// needs one token and exits (`brokerctl token`); the client can be used
    /// for more requests afterwards.
    pub fn connect_and_token(self, min_valid: Duration) -> Result<(Client, AccessToken), Error> {
        Client::open_with(self.options, &calls::token(min_valid))
    }
}

/// Generates the table's methods (see [`crate::calls`]).
macro_rules! blocking_methods {
    ($(
        $(#[$doc:meta])*
        $name:ident($($arg:ident: $ty:ty),*) -> $out:ty { $($row:tt)* }
    )*) => {
        impl Client {
            $(
                $(#[$doc])*
                pub fn $name(&mut self, $($arg: $ty),*) -> Result<$out, Error> {
                    self.call(calls::$name($($arg),*))
                }
            )*
        }
    };
}
with_calls!(blocking_methods);

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

    /// A new client whose connection opens with `call` pipelined behind the
    /// hello; returns it with the call's answer.
    fn open_with<T>(options: Options, call: &Call<T>) -> Result<(Client, T), Error> {
        let path = options.socket_path()?;
        BusyRetry::run_blocking(options.busy_budget, || {
            let deadline = Deadline::after(options.request_timeout, "request");
            let (mut conn, welcome) = Connection::open(
                &path,
                &options.client_name,
                options.connect_timeout,
                Some(&call.request),
            )?;
            let answer = conn.recv(&deadline).and_then(call.answer)?;
            Ok((conn, welcome, answer))
        })
        .map(|(conn, welcome, answer)| {
            let client = Client {
                options,
                path,
                conn: Some(conn),
                welcome,
            };
            (client, answer)
        })
    }

    /// Sends the call's request and reads its answer: resent once on a new
    /// connection when the old one turned out dead (see [`crate::retry`]), and
    /// again while the broker answers `busy`, within the busy budget.
    fn call<T>(&mut self, call: Call<T>) -> Result<T, Error> {
        BusyRetry::run_blocking(self.options.busy_budget, || {
            let reused = self.conn.is_some();
            match self.exchange(&call) {
                Err(failed) if failed.should_retry(reused, call.idempotent) => self.exchange(&call),
                other => other,
            }
            .map_err(|failed| failed.error)
        })
    }

    fn exchange<T>(&mut self, call: &Call<T>) -> Result<T, Failed> {
        let deadline = Deadline::after(self.options.request_timeout, "request");
        let mut conn = match self.conn.take() {
            Some(mut conn) => {
                conn.send(&call.request, &deadline)
                    .map_err(Failed::undelivered)?;
                conn
            }
            // A new connection carries the request in its first write.
            None => self
                .open(Some(&call.request))
                .map_err(Failed::undelivered)?,
        };
        let result = conn
            .recv(&deadline)
            .and_then(call.answer)
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
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => BusyRetry::run_blocking(self.options.busy_budget, || self.open(None))
                .map_err(Failed::undelivered)?,
        };
        conn.send(request, &deadline).map_err(Failed::undelivered)?;
        Ok(conn)
    }

    /// A new connection (with `first` sent behind the hello). The caller puts
    /// it back when the exchange ended cleanly, so a failed exchange leaves no
    /// half-read stream.
    fn open(&mut self, first: Option<&Request>) -> Result<Connection, Error> {
        let (conn, welcome) = Connection::open(
            &self.path,
            &self.options.client_name,
            self.options.connect_timeout,
            first,
        )?;
        self.welcome = welcome;
        Ok(conn)
    }
}
