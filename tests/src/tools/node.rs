//! The tools that come from the npm registry: the interop test's
//! authorization server (panva's `oidc-provider`, pinned by the lockfile in
//! `tests/interop/oidc-provider`), the real Codex CLI and the real Claude
//! Code.
//!
//! Why Node.js itself is not installed here: the interop server needs
//! Node.js >= 20.19, newer than some distributions ship, so picking one is
//! left to the user; its absence fails the test saying so.

use super::once::Install;
use super::run::run;
use super::system::find_on_path;
use super::{cache_dir, expect_tool};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The Codex CLI release `e2e_codex_cli.rs` was written against.
pub const CODEX_VERSION: &str = "0.169.0";

/// The Claude Code release `e2e_claude_code.rs` was written against: the
/// newest the npm registry served when the test was written.
pub const CLAUDE_CODE_VERSION: &str = "2.1.332";

/// The GitHub Copilot CLI release `e2e_copilot_cli.rs` was written against:
/// the newest the npm registry served when the test was written.
pub const COPILOT_CLI_VERSION: &str = "1.0.102";

/// What the interop server's `package.json` asks for (`engines.node`).
const OIDC_PROVIDER_NODE: (u32, u32) = (20, 19);
/// Codex CLI's npm package starts its native binary from Node.js 16 on.
const CODEX_NODE: (u32, u32) = (16, 0);
/// Claude Code's npm package declares Node.js >= 22, which npm only warns
/// about; its postinstall (which copies the native binary into place, after
/// which no Node.js runs) worked under Node.js 20.20 when this was written.
const CLAUDE_CODE_NODE: (u32, u32) = (20, 0);
/// Copilot CLI's npm package is a small loader (`npm-loader.js`, an ES
/// module) that starts the platform's native binary; the loader needs a
/// Node.js with `import.meta.resolve`.
const COPILOT_CLI_NODE: (u32, u32) = (20, 6);
const NPM_TIMEOUT: Duration = Duration::from_secs(900);

/// Installs the interop server's npm packages (`npm ci` in
/// `tests/interop/oidc-provider`, from its lockfile) unless they are
/// installed from this very lockfile already. Returns that directory, from
/// which `node server.mjs` runs.
pub fn ensure_oidc_provider() -> PathBuf {
    static OUTCOME: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    expect_tool(OUTCOME.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/oidc-provider");
        let what = "oidc-provider (npm ci in tests/interop/oidc-provider)";
        need_node(OIDC_PROVIDER_NODE, what)?;
        let lockfile = dir.join("package-lock.json");
        let lock_bytes = std::fs::read(&lockfile)
            .map_err(|e| format!("cannot read {}: {e}", lockfile.display()))?;
        let modules = dir.join("node_modules");
        Install {
            what: what.to_string(),
            dir: modules.clone(),
            // Beside node_modules, which `npm ci` deletes first.
            lock: dir.join(".npm-install.lock"),
            marker: modules.join(".oauth-broker-installed"),
            stamp: format!(
                "package-lock.json sha256 {}",
                hex(&Sha256::digest(&lock_bytes))
            ),
        }
        .run_once(|| {
            let mut npm = Command::new("npm");
            // The lockfile pins every tarball with its hash, so npm's own
            // cache may serve them without asking the registry again.
            npm.args(["ci", "--no-audit", "--no-fund", "--prefer-offline"])
                .args(["--loglevel=error"])
                .current_dir(&dir);
            run(npm, NPM_TIMEOUT).map_err(|e| npm_failed(what, &e))?;
            let manifest = modules.join("oidc-provider/package.json");
            if manifest.is_file() {
                Ok(())
            } else {
                Err(format!(
                    "`npm ci` in {} succeeded but {} is missing",
                    dir.display(),
                    manifest.display()
                ))
            }
        })?;
        Ok(dir)
    }))
}

/// The Codex CLI binary: `$OAUTH_BROKER_CODEX_BIN` when set, else
/// [`CODEX_VERSION`] from npm, installed once into
/// `<cache>/codex-<version>` (about 400 MB).
pub fn ensure_codex_cli() -> PathBuf {
    static OUTCOME: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    NpmBinary {
        name: "Codex CLI",
        package: "@openai/codex",
        version: CODEX_VERSION,
        node: CODEX_NODE,
        cache_name: "codex",
        bin: "codex",
        override_var: "OAUTH_BROKER_CODEX_BIN",
    }
    .ensure(&OUTCOME)
}

/// The `claude` binary: `$OAUTH_BROKER_CLAUDE_BIN` when set, else
/// [`CLAUDE_CODE_VERSION`] from npm (`@anthropic-ai/claude-code`, a native
/// binary of about 400 MB), installed once into
/// `<cache>/claude-code-<version>`. (`claude --version`, the install check,
/// answers without any network access.)
pub fn ensure_claude_code() -> PathBuf {
    static OUTCOME: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    NpmBinary {
        name: "Claude Code",
        package: "@anthropic-ai/claude-code",
        version: CLAUDE_CODE_VERSION,
        node: CLAUDE_CODE_NODE,
        cache_name: "claude-code",
        bin: "claude",
        override_var: "OAUTH_BROKER_CLAUDE_BIN",
    }
    .ensure(&OUTCOME)
}

/// The GitHub Copilot CLI: `$OAUTH_BROKER_COPILOT_BIN` when set, else
/// [`COPILOT_CLI_VERSION`] from npm (`@github/copilot` and its native
/// `@github/copilot-linux-x64`, about 190 MB), installed once into
/// `<cache>/copilot-cli-<version>`. Returns the native binary when the
/// platform package is there (so a killed test kills Copilot itself, not a
/// Node.js loader in front of it), else the loader.
///
/// On its first start the binary unpacks about 235 MB of its own files into
/// `$COPILOT_PKG_CACHE_HOME/pkg` (default `~/.cache/copilot`): run it with
/// [`copilot_pkg_cache`] there, which the install fills once, so that
/// sessions with a throw-away `HOME` do not unpack it again each time.
pub fn ensure_copilot_cli() -> PathBuf {
    static OUTCOME: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let loader = NpmBinary {
        name: "GitHub Copilot CLI",
        package: "@github/copilot",
        version: COPILOT_CLI_VERSION,
        node: COPILOT_CLI_NODE,
        cache_name: "copilot-cli",
        bin: "copilot",
        override_var: "OAUTH_BROKER_COPILOT_BIN",
    }
    .ensure(&OUTCOME);
    static UNPACKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    expect_tool(UNPACKED.get_or_init(|| {
        let native = loader
            .parent()
            .map(|bin| {
                bin.join(format!(
                    "copilot-linux-{}",
                    std::env::consts::ARCH
                        .replace("x86_64", "x64")
                        .replace("aarch64", "arm64")
                ))
            })
            .filter(|native| native.is_file());
        let binary = native.unwrap_or(loader.clone());
        let cache = copilot_pkg_cache();
        Install {
            what: format!("GitHub Copilot CLI {COPILOT_CLI_VERSION}'s unpacked files"),
            dir: cache.clone(),
            lock: cache_dir().join(format!("copilot-cli-{COPILOT_CLI_VERSION}-pkg.lock")),
            marker: cache.join(".installed"),
            stamp: COPILOT_CLI_VERSION.to_string(),
        }
        .run_once(|| {
            start_afresh(&cache)?;
            let mut unpack = Command::new(&binary);
            unpack
                .arg("--version")
                .env("COPILOT_PKG_CACHE_HOME", &cache)
                .env("COPILOT_AUTO_UPDATE", "false");
            run(unpack, Duration::from_secs(300)).map_err(|e| {
                format!("GitHub Copilot CLI {COPILOT_CLI_VERSION} does not start: {e}")
            })?;
            Ok(())
        })?;
        Ok(binary)
    }))
}

/// Where Copilot CLI's unpacked files live (its `COPILOT_PKG_CACHE_HOME`),
/// filled by [`ensure_copilot_cli`].
pub fn copilot_pkg_cache() -> PathBuf {
    cache_dir().join(format!("copilot-cli-{COPILOT_CLI_VERSION}-pkg"))
}

/// A real tool the tests run, shipped as an npm package with a binary:
/// one rule for finding or installing every such tool.
struct NpmBinary {
    /// "Codex CLI", for messages.
    name: &'static str,
    /// The npm package, e.g. `@openai/codex`.
    package: &'static str,
    /// The pinned release.
    version: &'static str,
    /// The least Node.js its install needs.
    node: (u32, u32),
    /// The install goes to `<cache>/<cache_name>-<version>`.
    cache_name: &'static str,
    /// The binary under `node_modules/.bin`.
    bin: &'static str,
    /// The variable that names a binary to use instead (no install).
    override_var: &'static str,
}

impl NpmBinary {
    /// The binary named by [`NpmBinary::override_var`], else the pinned
    /// release, installed once per machine (`outcome` shares the result
    /// between the threads of one process).
    fn ensure(&self, outcome: &OnceLock<Result<PathBuf, String>>) -> PathBuf {
        let NpmBinary {
            name,
            package,
            version,
            node,
            cache_name,
            bin,
            override_var,
        } = *self;
        if let Some(path) = std::env::var_os(override_var).filter(|b| !b.is_empty()) {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "{override_var} names {}, which is not a file: point it at a {name} \
                 binary or unset it to have the tests install {name} {version}",
                path.display()
            );
            return path;
        }
        expect_tool(outcome.get_or_init(|| {
            let what = format!("{name} {version} (npm {package})");
            need_node(node, &what)?;
            let dir = cache_dir().join(format!("{cache_name}-{version}"));
            let binary = dir.join("node_modules/.bin").join(bin);
            Install {
                what: what.clone(),
                dir: dir.clone(),
                lock: cache_dir().join(format!("{cache_name}-{version}.lock")),
                marker: dir.join(".installed"),
                stamp: version.to_string(),
            }
            .run_once(|| {
                start_afresh(&dir)?;
                let mut npm = Command::new("npm");
                npm.arg("install")
                    .arg("--prefix")
                    .arg(&dir)
                    .args(["--no-audit", "--no-fund", "--loglevel=error"])
                    .arg(format!("{package}@{version}"));
                run(npm, NPM_TIMEOUT).map_err(|e| npm_failed(&what, &e))?;
                let mut check = Command::new(&binary);
                check.arg("--version");
                let printed = run(check, Duration::from_secs(60))
                    .map_err(|e| format!("{what} was installed but does not start: {e}"))?;
                if printed.contains(version) {
                    Ok(())
                } else {
                    Err(format!(
                        "{what} was installed but `{bin} --version` prints {:?}",
                        printed.trim()
                    ))
                }
            })?;
            Ok(binary)
        }))
    }
}

/// Removes what a killed install may have left, so npm starts clean.
pub(super) fn start_afresh(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!(
            "cannot remove the unfinished install {}: {e}",
            dir.display()
        )),
    }?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Node.js of at least `min` and npm are on `PATH`, or why not.
pub(super) fn need_node(min: (u32, u32), what: &str) -> Result<(), String> {
    let how = format!(
        "installing {what} needs Node.js >= {}.{} and npm on PATH \
         (https://nodejs.org/en/download, or the distribution's nodejs and npm packages if recent enough)",
        min.0, min.1
    );
    let mut node = Command::new("node");
    node.arg("--version");
    let version = run(node, Duration::from_secs(30)).map_err(|e| format!("{how}: {e}"))?;
    match parse_major_minor(&version) {
        Some(found) if found >= min => {}
        _ => return Err(format!("{how}; found Node.js {}", version.trim())),
    }
    if find_on_path("npm").is_none() {
        return Err(format!("{how}; npm is missing"));
    }
    Ok(())
}

/// `v20.19.2` → `(20, 19)`.
fn parse_major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().trim_start_matches('v').split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The one-line failure of an npm install, naming the registry it needs.
pub(super) fn npm_failed(what: &str, error: &str) -> String {
    let mut config = Command::new("npm");
    config.args(["config", "get", "registry"]);
    let registry = run(config, Duration::from_secs(30))
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|_| "https://registry.npmjs.org/".to_string());
    format!(
        "cannot install {what}: {error} — the npm registry {registry} must be reachable once \
         (or pre-install the test tools: see README, \"Tests\")"
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::parse_major_minor;

    #[test]
    fn reads_node_versions() {
        assert_eq!(parse_major_minor("v20.19.2\n"), Some((20, 19)));
        assert_eq!(parse_major_minor("v22.1.0"), Some((22, 1)));
        assert_eq!(parse_major_minor("garbage"), None);
        assert!(parse_major_minor("v20.20.2").unwrap() >= (20, 19));
        assert!(parse_major_minor("v20.9.0").unwrap() < (20, 19));
    }
}
