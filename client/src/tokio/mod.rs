//! The async client (feature `tokio`), with the same methods as the blocking
//! [`crate::Client`].
//!
//! ```no_run
//! use oauth_broker_client::tokio::Client;
//! use oauth_broker_client::ExposeSecret;
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), oauth_broker_client::Error> {
//! let mut client = Client::builder().client_name("my-agent").connect().await?;
//! let token = client.token(Duration::from_secs(60)).await?;
//! let header = format!("Bearer {}", token.expose_secret());
//! # let _ = header;
//! # Ok(())
//! # }
//! ```
//!
//! Every method is cancel-safe in the sense that matters: dropping a pending
//! call drops its connection, and the next call opens a new one, so no answer to
//! an abandoned request is ever mistaken for the answer to a later one. (The
//! broker finishes a refresh it started regardless of who is still waiting.)

mod connection;

pub use crate::caching::asynchronous::CachingClient;

use crate::builder::{ClientBuilder, Options};
use crate::busy::BusyRetry;
use crate::calls::{self, with_calls, Call};
use crate::deadline::Deadline;
use crate::exchange::{self, LoginStep};
use crate::retry::Failed;
use crate::{AccessToken, Error};
use connection::Connection;
use oauth_broker_proto::{LoginEvent, LoginMethod, Request, Response, Welcome};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An async connection to the broker. See [`crate::Client`] for the behaviour of
/// each method; this type differs only in being `async`. Both have the same
/// methods: they are generated from one table (see the crate's `calls` module).
#[derive(Debug)]
pub struct Client {
    options: Options,
    path: PathBuf,
    conn: Option<Connection>,
    welcome: Welcome,
}

impl ClientBuilder<Client> {
    /// Connects and performs the handshake.
    pub async fn connect(self) -> Result<Client, Error> {
        let path = self.options.socket_path()?;
        let (conn, welcome) = busy_retry(self.options.busy_budget, || {
            Connection::open(
                &path,
                &self.options.client_name,
                self.options.connect_timeout,
                None,
            )
        })
        .await?;
        Ok(Client {
            options: self.options,
            path,
            conn: Some(conn),
            welcome,
        })
    }

    /// See [`crate::ClientBuilder::connect_and_token`].
    pub async fn connect_and_token(
        self,
        min_valid: Duration,
    ) -> Result<(Client, AccessToken), Error> {
        Client::open_with(self.options, &calls::token(min_valid)).await
    }
}

/// Generates the table's methods (see [`crate::calls`]); the same table as the
/// blocking client's.
macro_rules! async_methods {
    ($(
        $(#[$doc:meta])*
        $name:ident($($arg:ident: $ty:ty),*) -> $out:ty { $($row:tt)* }
    )*) => {
        impl Client {
            $(
                $(#[$doc])*
                pub async fn $name(&mut self, $($arg: $ty),*) -> Result<$out, Error> {
                    self.call(calls::$name($($arg),*)).await
                }
            )*
        }
    };
}
with_calls!(async_methods);

impl Client {
    /// Connects to the discovered socket with default settings.
    pub async fn connect() -> Result<Client, Error> {
        Client::builder().connect().await
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

    /// See [`crate::Client::relogin`].
    pub async fn relogin(
        &mut self,
        method: Option<LoginMethod>,
        mut on_event: impl FnMut(&LoginEvent),
    ) -> Result<LoginEvent, Error> {
        let request = Request::Relogin { method };
        let reused = self.conn.is_some();
        let mut conn = match self.send(&request).await {
            Err(failed) if failed.should_retry(reused, false) => self.send(&request).await,
            other => other,
        }
        .map_err(|failed| failed.error)?;
        let deadline = Deadline::after(self.options.login_timeout, "login");
        loop {
            let response = conn.recv(&deadline).await?;
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

    async fn open_with<T>(options: Options, call: &Call<T>) -> Result<(Client, T), Error> {
        let path = options.socket_path()?;
        let (conn, welcome, answer) = busy_retry(options.busy_budget, || async {
            let deadline = Deadline::after(options.request_timeout, "request");
            let (mut conn, welcome) = Connection::open(
                &path,
                &options.client_name,
                options.connect_timeout,
                Some(&call.request),
            )
            .await?;
            let answer = conn.recv(&deadline).await.and_then(call.answer)?;
            Ok((conn, welcome, answer))
        })
        .await?;
        let client = Client {
            options,
            path,
            conn: Some(conn),
            welcome,
        };
        Ok((client, answer))
    }

    /// See the blocking client's `call`.
    async fn call<T>(&mut self, call: Call<T>) -> Result<T, Error> {
        let mut busy = BusyRetry::new(self.options.busy_budget);
        loop {
            let reused = self.conn.is_some();
            let result = match self.exchange(&call).await {
                Err(failed) if failed.should_retry(reused, call.idempotent) => {
                    self.exchange(&call).await
                }
                other => other,
            }
            .map_err(|failed| failed.error);
            match result {
                Err(err) => match busy.next_wait(&err) {
                    Some(wait) => ::tokio::time::sleep(wait).await,
                    None => return Err(err),
                },
                done => return done,
            }
        }
    }

    async fn exchange<T>(&mut self, call: &Call<T>) -> Result<T, Failed> {
        let deadline = Deadline::after(self.options.request_timeout, "request");
        let mut conn = match self.conn.take() {
            Some(mut conn) => {
                conn.send(&call.request, &deadline)
                    .await
                    .map_err(Failed::undelivered)?;
                conn
            }
            None => self
                .open(Some(&call.request))
                .await
                .map_err(Failed::undelivered)?,
        };
        let result = conn
            .recv(&deadline)
            .await
            .and_then(call.answer)
            .map_err(Failed::delivered);
        if !matches!(&result, Err(failed) if failed.error.breaks_connection()) {
            self.conn = Some(conn);
        }
        result
    }

    async fn send(&mut self, request: &Request) -> Result<Connection, Failed> {
        let deadline = Deadline::after(self.options.request_timeout, "request");
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let budget = self.options.busy_budget;
                busy_retry(budget, || self.open_detached(None))
                    .await
                    .map_err(Failed::undelivered)
                    .map(|(conn, welcome)| {
                        self.welcome = welcome;
                        conn
                    })?
            }
        };
        conn.send(request, &deadline)
            .await
            .map_err(Failed::undelivered)?;
        Ok(conn)
    }

    /// A new connection (with `first` sent behind the hello); taken out while
    /// in use so that a cancelled call leaves no half-used connection behind.
    async fn open(&mut self, first: Option<&Request>) -> Result<Connection, Error> {
        let (conn, welcome) = self.open_detached(first).await?;
        self.welcome = welcome;
        Ok(conn)
    }

    fn open_detached<'a>(
        &'a self,
        first: Option<&'a Request>,
    ) -> impl Future<Output = Result<(Connection, Welcome), Error>> + 'a {
        Connection::open(
            &self.path,
            &self.options.client_name,
            self.options.connect_timeout,
            first,
        )
    }
}

/// Calls `attempt` until it does not fail with `busy` or the budget is spent
/// (see [`crate::busy`]).
async fn busy_retry<T, F: Future<Output = Result<T, Error>>>(
    budget: Duration,
    mut attempt: impl FnMut() -> F,
) -> Result<T, Error> {
    let mut busy = BusyRetry::new(budget);
    loop {
        match attempt().await {
            Err(err) => match busy.next_wait(&err) {
                Some(wait) => ::tokio::time::sleep(wait).await,
                None => return Err(err),
            },
            done => return done,
        }
    }
}
