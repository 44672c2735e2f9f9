//! The real Hermes Agent for the end-to-end test (broker/tests/e2e_hermes.rs),
//! installed on first use into a venv outside the clone:
//! `${OAUTH_BROKER_CACHE:-$HOME/.cache/oauth-broker}/hermes-agent-<version>`.
//!
//! Meant to join the tools module (one `ensure_*` per real tool): a missing
//! tool is installed; if that fails the test fails under CI and is skipped,
//! with the reason, elsewhere.

use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::run_with_timeout;

/// The release verified: the newest on the Python package index when the
/// `hermes` projection target was written.
pub const HERMES_AGENT_VERSION: &str = "0.19.0";

const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

/// The Hermes Agent venv (with `bin/hermes` and `bin/python`), installing it
/// when missing. `None` (with the reason printed) when it cannot be had and
/// this is not CI; under CI that is a failure.
pub fn ensure_hermes_agent() -> Option<PathBuf> {
    let venv = cache_dir().join(format!("hermes-agent-{HERMES_AGENT_VERSION}"));
    let result = (|| {
        std::fs::create_dir_all(cache_dir())
            .map_err(|e| format!("cannot create {}: {e}", cache_dir().display()))?;
        // One installer at a time (tests run in parallel, CI may run twice).
        let lock = File::create(cache_dir().join(".hermes-agent.lock"))
            .map_err(|e| format!("cannot create the install lock: {e}"))?;
        let _held = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, e)| format!("cannot take the install lock: {e}"))?;
        if installed(&venv) {
            return Ok(());
        }
        install(&venv)
    })();
    match result {
        Ok(()) => Some(venv),
        Err(why) => {
            let how = format!(
                "Hermes Agent {HERMES_AGENT_VERSION} is not available: {why}. It is installed with `python3 -m venv DIR && DIR/bin/pip install hermes-agent=={HERMES_AGENT_VERSION}` into {} (PyPI must be reachable; apt-get install -y python3-venv)",
                venv.display()
            );
            if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") {
                panic!("{how}");
            }
            eprintln!("skipping the real-Hermes test: {how}");
            None
        }
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("OAUTH_BROKER_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/oauth-broker")))
        .unwrap_or_else(|| PathBuf::from(".cache/oauth-broker"))
}

fn installed(venv: &Path) -> bool {
    let mut check = Command::new(venv.join("bin/python"));
    check.args([
        "-c",
        &format!(
            "import importlib.metadata as m, hermes_cli; assert m.version('hermes-agent') == '{HERMES_AGENT_VERSION}'"
        ),
    ]);
    venv.join("bin/hermes").is_file()
        && run_with_timeout(check, None, Duration::from_secs(60))
            .is_ok_and(|out| out.status.success())
}

fn install(venv: &Path) -> Result<(), String> {
    eprintln!(
        "installing hermes-agent=={HERMES_AGENT_VERSION} into {} (once)",
        venv.display()
    );
    let _ = std::fs::remove_dir_all(venv);
    let run = |mut cmd: Command, what: &str| -> Result<(), String> {
        cmd.env_remove("PYTHONPATH");
        let out =
            run_with_timeout(cmd, None, INSTALL_TIMEOUT).map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            ))
        }
    };
    let mut venv_cmd = Command::new("python3");
    venv_cmd.args(["-m", "venv"]).arg(venv);
    run(venv_cmd, "python3 -m venv")?;
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("hermes-agent=={HERMES_AGENT_VERSION}"),
    ]);
    let installed_ok = run(pip, "pip install");
    if installed_ok.is_err() {
        let _ = std::fs::remove_dir_all(venv);
    }
    installed_ok
}
