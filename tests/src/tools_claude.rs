//! The real Claude Code, installed on first use (for `e2e_claude_code.rs`).
//!
//! Written to be folded into the tests' tools module beside
//! `ensure_codex_cli`: same cache directory, same rule (a test that needs the
//! tool installs it once per machine, and a failure to install fails the test
//! with a message naming the command and the registry it needs).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The Claude Code release `e2e_claude_code.rs` was written against: the
/// newest the npm registry served when the test was written.
pub const CLAUDE_CODE_VERSION: &str = "2.1.332";

/// Where the big tools live, outside any clone: `$OAUTH_BROKER_CACHE`, else
/// `$HOME/.cache/oauth-broker`.
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OAUTH_BROKER_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache/oauth-broker"),
        None => panic!(
            "neither OAUTH_BROKER_CACHE nor HOME is set: set OAUTH_BROKER_CACHE to a directory \
             for the test tools"
        ),
    }
}

/// The `claude` binary: `$OAUTH_BROKER_CLAUDE_BIN` when set, else
/// [`CLAUDE_CODE_VERSION`] from npm (`@anthropic-ai/claude-code`, a ~400 MB
/// native binary), installed once into `<cache>/claude-code-<version>`.
///
/// The install goes to a directory of its own first and is renamed into
/// place only after `claude --version` printed the pinned version, so a
/// killed install or a concurrent one never leaves a half-installed tool
/// where the tests look.
pub fn ensure_claude_code() -> PathBuf {
    if let Some(bin) = std::env::var_os("OAUTH_BROKER_CLAUDE_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "OAUTH_BROKER_CLAUDE_BIN names {}, which is not a file: point it at a Claude Code \
             binary or unset it to have the tests install Claude Code {CLAUDE_CODE_VERSION}",
            bin.display()
        );
        return bin;
    }
    static OUTCOME: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match OUTCOME.get_or_init(install) {
        Ok(bin) => bin.clone(),
        Err(message) => panic!("{message}"),
    }
}

fn install() -> Result<PathBuf, String> {
    let what = format!("Claude Code {CLAUDE_CODE_VERSION} (npm @anthropic-ai/claude-code)");
    let cache = cache_dir();
    let dir = cache.join(format!("claude-code-{CLAUDE_CODE_VERSION}"));
    let bin_in = |dir: &std::path::Path| dir.join("node_modules/.bin/claude");
    if prints_version(&bin_in(&dir)) {
        return Ok(bin_in(&dir));
    }
    let staging = cache.join(format!(
        "claude-code-{CLAUDE_CODE_VERSION}.installing-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    eprintln!(
        "oauth-broker tests: installing {what} into {}",
        dir.display()
    );
    let status = Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(&staging)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .arg(format!("@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}"))
        .stdin(Stdio::null())
        .status();
    let installed = match status {
        Ok(s) if s.success() => prints_version(&bin_in(&staging)),
        _ => false,
    };
    if !installed {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(format!(
            "installing {what} failed: run `npm install --prefix \"{}\" --no-audit --no-fund \
             @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}` (needs npm and the npm registry), \
             or set OAUTH_BROKER_CLAUDE_BIN to a claude binary",
            dir.display()
        ));
    }
    // Another process may have finished first: then its install is used.
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    if prints_version(&bin_in(&dir)) {
        Ok(bin_in(&dir))
    } else {
        Err(format!(
            "{} exists but is not {what}: delete it and run the tests again",
            dir.display()
        ))
    }
}

/// Whether `claude --version` runs and names the pinned version (it answers
/// without any network access).
fn prints_version(bin: &std::path::Path) -> bool {
    bin.is_file()
        && Command::new(bin)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|out| {
                out.status.success()
                    && String::from_utf8_lossy(&out.stdout).contains(CLAUDE_CODE_VERSION)
            })
}
