//! End-to-end harness: the real `brokerd` in a throw-away environment.
//!
//! Why a harness: end-to-end tests must exercise the real binary (signals,
//! sockets, files, permissions, logs), must never see the developer's real
//! `$HOME`/`$XDG_*`, and must fail with the daemon's own log in the message
//! when it does not come up. Cargo only sets `CARGO_BIN_EXE_brokerd` for tests
//! of the package that owns the binary, so the e2e tests live in
//! `broker/tests/` and hand the paths in:
//!
//! ```no_run
//! use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig};
//! use oauth_broker_tests::harness::{generic_config, BrokerProcess, BrokerSpec, TestEnv};
//!
//! let fake = FakeAuthServer::start(FakeConfig::default());
//! let env = TestEnv::new();
//! let broker = BrokerProcess::start(BrokerSpec::new(
//!     "/path/to/brokerd", // env!("CARGO_BIN_EXE_brokerd")
//!     &env,
//!     generic_config(&fake),
//! ))
//! .expect("brokerd starts");
//! let out = broker.brokerctl("/path/to/brokerctl".as_ref(), &["status"]);
//! ```

mod command;
mod config;
mod env;
mod process;
mod ready;
mod spec;

pub use command::run_with_timeout;
pub use config::generic_config;
pub use env::TestEnv;
pub use process::BrokerProcess;
pub use ready::Backoff;
pub use spec::{BrokerSpec, DEFAULT_RUST_LOG};
