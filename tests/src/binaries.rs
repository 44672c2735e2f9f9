//! Finding the `brokerd` and `brokerctl` binaries from the tests crate's own
//! programs (`bench`, `storm-demo`).
//!
//! Why this is needed: cargo builds another package's binaries only for that
//! package's integration tests (`CARGO_BIN_EXE_*`), and `cargo run -p
//! oauth-broker-tests --bin bench` builds nothing of the `oauth-broker`
//! package. So, when started by `cargo run` (which sets `CARGO`), the programs
//! first run `cargo build -p oauth-broker --bins` in their own profile — a no-op
//! when nothing changed — and then use the binaries next to their own
//! executable, where cargo puts every binary of the workspace. A stale or
//! missing `brokerd` is therefore never measured by accident. `--brokerd` /
//! `--brokerctl` (or the environment variables below) point at other builds.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

/// Overrides the `brokerd` path.
pub const BROKERD_ENV: &str = "OAUTH_BROKER_BROKERD";
/// Overrides the `brokerctl` path.
pub const BROKERCTL_ENV: &str = "OAUTH_BROKER_BROKERCTL";

/// Paths of the broker's two binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub brokerd: PathBuf,
    pub brokerctl: PathBuf,
}

impl Binaries {
    /// Explicit paths (e.g. `env!("CARGO_BIN_EXE_brokerd")` in a test).
    pub fn new(brokerd: impl Into<PathBuf>, brokerctl: impl Into<PathBuf>) -> Self {
        Binaries {
            brokerd: brokerd.into(),
            brokerctl: brokerctl.into(),
        }
    }

    /// Builds the binaries when running under `cargo run` and finds them: the
    /// explicit paths if given, else the environment overrides, else next to
    /// the current executable.
    pub fn locate(brokerd: Option<PathBuf>, brokerctl: Option<PathBuf>) -> anyhow::Result<Self> {
        let brokerd = brokerd.or_else(|| std::env::var_os(BROKERD_ENV).map(PathBuf::from));
        let brokerctl = brokerctl.or_else(|| std::env::var_os(BROKERCTL_ENV).map(PathBuf::from));
        let exe = std::env::current_exe().context("cannot find the current executable")?;
        let dir = exe
            .parent()
            .context("the current executable has no parent directory")?
            .to_path_buf();
        if brokerd.is_none() || brokerctl.is_none() {
            build_with_cargo()?;
        }
        let binaries = Binaries {
            brokerd: brokerd.unwrap_or_else(|| dir.join("brokerd")),
            brokerctl: brokerctl.unwrap_or_else(|| dir.join("brokerctl")),
        };
        for path in [&binaries.brokerd, &binaries.brokerctl] {
            if !path.is_file() {
                bail!(
                    "{} not found; run `cargo build{} --bins` first, or pass --brokerd/--brokerctl (or set {BROKERD_ENV}/{BROKERCTL_ENV})",
                    path.display(),
                    if cfg!(debug_assertions) { "" } else { " --release" }
                );
            }
        }
        Ok(binaries)
    }
}

/// `cargo build -p oauth-broker --bins` in this program's profile, when `cargo
/// run` started us (it exports `CARGO`). Without cargo there is nothing to
/// build with: the binaries must already exist.
fn build_with_cargo() -> anyhow::Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "oauth-broker", "--bins"])
        .current_dir(workspace);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    eprintln!("building brokerd and brokerctl (cargo build -p oauth-broker --bins) …");
    let status = cmd
        .status()
        .context("cannot run cargo to build brokerd and brokerctl")?;
    if !status.success() {
        bail!("building brokerd and brokerctl failed ({status}); fix the build errors above and retry");
    }
    Ok(())
}
