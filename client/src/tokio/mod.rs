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
use crate::deadline::Deadline;
use crate::exchange::{self, LoginStep};
use crate::retry::Failed;
use crate::{AccessToken, Error};
use connection::Connection;
use oauth_broker_proto::{
    ImportTokens, LoginEvent, LoginMethod, Request, Response, StatusReport, Welcome,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// An async connection to the broker. See [`crate::Client`] for the behaviour of
/// each method; this type differs only in being `async`.
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
        let (conn, welcome) = Connection::open(
            &path,
            &self.options.client_name,
            self.options.connect_timeout,
        )
        .await?;
        Ok(Client {
            options: self.options,
            path,
            conn: Some(conn),
            welcome,
        })
    }
}

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

    /// See [`crate::Client::token`].
    pub async fn token(&mut self, min_valid: Duration) -> Result<AccessToken, Error> {
        let request = Request::Token {
            min_valid_secs: min_valid.as_secs(),
        };
        self.call(&request, true, exchange::token).await
    }

    /// See [`crate::Client::unauthorized`].
    pub async fn unauthorized(&mut self, token: &AccessToken) -> Result<AccessToken, Error> {
        let request = Request::Unauthorized {
            token_id: token.token_id().to_string(),
        };
        self.call(&request, true, exchange::token).await
    }

    /// See [`crate::Client::status`].
    pub async fn status(&mut self) -> Result<StatusReport, Error> {
        self.call(&Request::Status, true, exchange::status).await
    }

    /// See [`crate::Client::import`].
    pub async fn import(&mut self, tokens: ImportTokens) -> Result<Option<SystemTime>, Error> {
        self.call(&Request::Import { tokens }, false, exchange::imported)
            .await
    }

    /// See [`crate::Client::logout`].
    pub async fn logout(&mut self) -> Result<bool, Error> {
        self.call(&Request::Logout, false, exchange::logged_out)
            .await
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

    /// See [`crate::Client::complete_login`].
    pub async fn complete_login(&mut self, redirect_url: &str) -> Result<LoginEvent, Error> {
        let request = Request::CompleteLogin {
            redirect_url: redirect_url.to_string(),
        };
        self.call(&request, false, exchange::login_completed).await
    }

    async fn call<T>(
        &mut self,
        request: &Request,
        idempotent: bool,
        parse: fn(Response) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let reused = self.conn.is_some();
        match self.exchange(request, parse).await {
            Err(failed) if failed.should_retry(reused, idempotent) => {
                self.exchange(request, parse).await
            }
            other => other,
        }
        .map_err(|failed| failed.error)
    }

    async fn exchange<T>(
        &mut self,
        request: &Request,
        parse: fn(Response) -> Result<T, Error>,
    ) -> Result<T, Failed> {
        let deadline = Deadline::after(self.options.request_timeout, "request");
        let mut conn = self.send_by(request, &deadline).await?;
        let result = conn
            .recv(&deadline)
            .await
            .and_then(parse)
            .map_err(Failed::delivered);
        if !matches!(&result, Err(failed) if failed.error.breaks_connection()) {
            self.conn = Some(conn);
        }
        result
    }

    async fn send(&mut self, request: &Request) -> Result<Connection, Failed> {
        let deadline = Deadline::after(self.options.request_timeout, "request");
        self.send_by(request, &deadline).await
    }

    async fn send_by(
        &mut self,
        request: &Request,
        deadline: &Deadline,
    ) -> Result<Connection, Failed> {
        let mut conn = self.take_connection().await.map_err(Failed::undelivered)?;
        conn.send(request, deadline)
            .await
            .map_err(Failed::undelivered)?;
        Ok(conn)
    }

    /// The open connection, or a new one; taken out while in use so that a
    /// cancelled call leaves no half-used connection behind.
    async fn take_connection(&mut self) -> Result<Connection, Error> {
        if let Some(conn) = self.conn.take() {
            return Ok(conn);
        }
        let (conn, welcome) = Connection::open(
            &self.path,
            &self.options.client_name,
            self.options.connect_timeout,
        )
        .await?;
        self.welcome = welcome;
        Ok(conn)
    }
}
