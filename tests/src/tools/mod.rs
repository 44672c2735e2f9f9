//! The outside programs some end-to-end tests drive, installed on first use.
//!
//! Why here and not in a CI script: the README's test command,
//! `cargo test --workspace --locked`, must pass on a fresh machine with nothing
//! done before it. So a test that needs a real tool calls one `ensure_*`
//! function, which finds the tool or installs it, once per machine:
//!
//! | function | what | where |
//! |---|---|---|
//! | [`ensure_oidc_provider`] | `npm ci` of the interop server's pinned packages | `tests/interop/oidc-provider/node_modules` |
//! | [`ensure_codex_cli`] | Codex CLI [`CODEX_VERSION`] from npm | [`cache_dir`]`/codex-<version>` |
//! | [`ensure_claude_code`] | Claude Code [`CLAUDE_CODE_VERSION`] from npm | [`cache_dir`]`/claude-code-<version>` |
//! | [`ensure_copilot_cli`] | GitHub Copilot CLI [`COPILOT_CLI_VERSION`] from npm, and its unpacked files | [`cache_dir`]`/copilot-cli-<version>`, `…/copilot-cli-<version>-pkg` |
//! | [`ensure_openai_python`] | openai-python [`OPENAI_PYTHON_VERSION`] from PyPI, in a venv | [`cache_dir`]`/python-openai-<version>` |
//! | [`ensure_hermes_agent`] | Hermes Agent [`HERMES_AGENT_VERSION`] from PyPI, in a venv | [`cache_dir`]`/hermes-agent-<version>` |
//! | [`ensure_openssh`] | `sshd`, `ssh`, `ssh-keygen` (Debian `openssh-server`, `openssh-client`) | the distribution's packages, like the next row |
//! | [`ensure_openclaw`] | OpenClaw [`OPENCLAW_VERSION`] and Node.js [`OPENCLAW_NODE_VERSION`] from npm | [`cache_dir`]`/openclaw-<version>` |
//! | [`ensure_system_tools`] | `systemd-analyze`, `systemd-socket-activate`, `python3`, `git` | the distribution's packages (`apt-get`, only as root or with passwordless sudo) |
//!
//! Several test binaries and threads may ask at the same time: an install
//! runs under a cross-process file lock and counts as done only once its
//! marker is written, after the tool was checked to run (see [`once`]).
//! A tool that cannot be found or installed fails the test with a one-line
//! message naming the command and the registry it needs, in CI and locally
//! alike; nothing is silently skipped.

mod hermes;
mod node;
mod once;
mod openclaw;
mod openssh;
mod python;
mod run;
mod system;

pub use hermes::{ensure_hermes_agent, HERMES_AGENT_VERSION};
pub use node::{
    copilot_pkg_cache, ensure_claude_code, ensure_codex_cli, ensure_copilot_cli,
    ensure_oidc_provider, CLAUDE_CODE_VERSION, CODEX_VERSION, COPILOT_CLI_VERSION,
};
pub use openclaw::{ensure_openclaw, OpenClawInstall, OPENCLAW_NODE_VERSION, OPENCLAW_VERSION};
pub use openssh::{ensure_openssh, OpenSsh};
pub use python::{ensure_openai_python, OPENAI_PYTHON_VERSION};
pub use system::{ensure_libfaketime, ensure_system_tools};

use std::path::PathBuf;

/// Where the big tools live, outside any clone so that every clone and every
/// run shares one install: `$OAUTH_BROKER_CACHE`, else
/// `$HOME/.cache/oauth-broker`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OAUTH_BROKER_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache/oauth-broker"),
        None => panic!(
            "neither OAUTH_BROKER_CACHE nor HOME is set: set OAUTH_BROKER_CACHE to a directory \
             for the test tools (Codex CLI, Claude Code, openai-python, Hermes Agent)"
        ),
    }
}

/// A progress line straight to the terminal. Why not `eprintln!`: the test
/// harness captures that, and a first run that downloads hundreds of
/// megabytes must say why it is slow while it is.
fn note(message: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "oauth-broker tests: {message}");
}

/// Unwraps the outcome of an install shared by the threads of one process:
/// every test that needs a tool that could not be installed fails with the
/// same message.
fn expect_tool<T: Clone>(outcome: &Result<T, String>) -> T {
    match outcome {
        Ok(value) => value.clone(),
        Err(message) => panic!("{message}"),
    }
}
