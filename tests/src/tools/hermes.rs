//! Hermes Agent, pinned, in a virtual environment of its own: the real tool
//! the `hermes` projection target is verified with (`e2e_hermes.rs`).

use super::once::Install;
use super::python::{make_venv, need_venv};
use super::run::run;
use super::{cache_dir, expect_tool};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The release verified: the newest on the Python package index when the
/// `hermes` projection target was written.
pub const HERMES_AGENT_VERSION: &str = "0.19.0";

/// About 228 MB of wheels on a first run.
const PIP_TIMEOUT: Duration = Duration::from_secs(900);

/// The Hermes Agent venv (with `bin/hermes` and `bin/python`): hermes-agent
/// [`HERMES_AGENT_VERSION`] from PyPI, made once at
/// `<cache>/hermes-agent-<version>`.
pub fn ensure_hermes_agent() -> PathBuf {
    static OUTCOME: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    expect_tool(OUTCOME.get_or_init(|| {
        let what = format!("Hermes Agent {HERMES_AGENT_VERSION} (pip hermes-agent, in a venv)");
        need_venv()?;
        let dir = cache_dir().join(format!("hermes-agent-{HERMES_AGENT_VERSION}"));
        Install {
            what: what.clone(),
            dir: dir.clone(),
            lock: cache_dir().join(format!("hermes-agent-{HERMES_AGENT_VERSION}.lock")),
            marker: dir.join(".installed"),
            stamp: HERMES_AGENT_VERSION.to_string(),
        }
        .run_once(|| {
            make_venv(
                &dir,
                &what,
                &format!("hermes-agent=={HERMES_AGENT_VERSION}"),
                PIP_TIMEOUT,
            )?;
            if !dir.join("bin/hermes").is_file() {
                return Err(format!("{what} was installed but has no bin/hermes"));
            }
            let mut check = Command::new(dir.join("bin/python"));
            check.env_remove("PYTHONPATH").args([
                "-c",
                "import importlib.metadata as m, hermes_cli; print(m.version('hermes-agent'))",
            ]);
            let version = run(check, Duration::from_secs(60))
                .map_err(|e| format!("{what} was installed but does not import: {e}"))?;
            if version.trim() == HERMES_AGENT_VERSION {
                Ok(())
            } else {
                Err(format!(
                    "{what} was installed but reports version {:?}",
                    version.trim()
                ))
            }
        })?;
        Ok(dir)
    }))
}
