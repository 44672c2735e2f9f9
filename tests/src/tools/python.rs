//! openai-python, pinned, in a virtual environment of its own: the SDK the
//! README's openai-python recipe is verified with (`e2e_recipes.rs`).

use super::node::start_afresh;
use super::once::Install;
use super::run::run;
use super::system::{find_on_path, install_packages};
use super::{cache_dir, expect_tool};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The openai-python release the recipe was verified with.
pub const OPENAI_PYTHON_VERSION: &str = "3.54.0";

const PIP_TIMEOUT: Duration = Duration::from_secs(600);

/// A Python that imports `openai`: `$OAUTH_BROKER_PYTHON` when set, else a
/// venv with openai-python [`OPENAI_PYTHON_VERSION`] from PyPI, made once at
/// `<cache>/python-openai-<version>`.
pub fn ensure_openai_python() -> PathBuf {
    if let Some(python) = std::env::var_os("OAUTH_BROKER_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(python);
    }
    static OUTCOME: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    expect_tool(OUTCOME.get_or_init(|| {
        let what = format!("openai-python {OPENAI_PYTHON_VERSION} (pip, in a venv)");
        need_venv()?;
        let dir = cache_dir().join(format!("python-openai-{OPENAI_PYTHON_VERSION}"));
        let python = dir.join("bin/python");
        Install {
            what: what.clone(),
            dir: dir.clone(),
            lock: cache_dir().join(format!("python-openai-{OPENAI_PYTHON_VERSION}.lock")),
            marker: dir.join(".installed"),
            stamp: OPENAI_PYTHON_VERSION.to_string(),
        }
        .run_once(|| {
            make_venv(
                &dir,
                &what,
                &format!("openai=={OPENAI_PYTHON_VERSION}"),
                PIP_TIMEOUT,
            )?;
            let mut check = Command::new(&python);
            check.args(["-c", "import openai; print(openai.__version__)"]);
            let version = run(check, Duration::from_secs(60))
                .map_err(|e| format!("{what} was installed but does not import: {e}"))?;
            if version.trim() == OPENAI_PYTHON_VERSION {
                Ok(())
            } else {
                Err(format!(
                    "{what} was installed but reports version {:?}",
                    version.trim()
                ))
            }
        })?;
        Ok(python)
    }))
}

/// `python3 -m venv` works (Debian splits it into `python3-venv`), or why
/// not; installs the packages when this process may.
/// A fresh venv at `dir` with `requirement` installed from the package index
/// (`what` names the tool in the one-line error).
pub(super) fn make_venv(
    dir: &Path,
    what: &str,
    requirement: &str,
    pip_timeout: Duration,
) -> Result<(), String> {
    start_afresh(dir)?;
    let mut venv = Command::new("python3");
    venv.args(["-m", "venv"]).arg(dir);
    run(venv, Duration::from_secs(120))
        .map_err(|e| format!("cannot create the venv for {what}: {e}"))?;
    let mut pip = Command::new(dir.join("bin/pip"));
    pip.env_remove("PYTHONPATH")
        .args(["install", "--quiet"])
        .arg(requirement);
    run(pip, pip_timeout).map_err(|e| {
        let index = std::env::var("PIP_INDEX_URL")
            .unwrap_or_else(|_| "https://pypi.org/simple".to_string());
        format!(
            "cannot install {what}: {e} — the Python package index {index} must be \
             reachable once (or pre-install the test tools: see README, \"Tests\")"
        )
    })?;
    Ok(())
}

pub(super) fn need_venv() -> Result<(), String> {
    let works = || {
        find_on_path("python3").is_some()
            && Command::new("python3")
                .args(["-c", "import venv, ensurepip"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    };
    if works() {
        return Ok(());
    }
    install_packages(
        &["python3", "python3-venv"],
        "python3 with its venv module",
        works,
    )
}
