//! `cargo run -p oauth-broker-tests --bin install-test-tools`: installs every
//! outside tool the test suite drives, as the tests would on first use, and
//! prints where each one is. Why: to prepare a machine (or a cache to copy to
//! one) that will run the tests without network access.

use oauth_broker_tests::tools;

fn main() {
    tools::ensure_system_tools();
    println!("system tools: systemd-analyze, systemd-socket-activate, python3, git");
    let ssh = tools::ensure_openssh();
    println!("OpenSSH: {}, {}", ssh.sshd.display(), ssh.ssh.display());
    println!(
        "oidc-provider: {}",
        tools::ensure_oidc_provider().join("node_modules").display()
    );
    println!(
        "Codex CLI {}: {}",
        tools::CODEX_VERSION,
        tools::ensure_codex_cli().display()
    );
    println!(
        "Claude Code {}: {}",
        tools::CLAUDE_CODE_VERSION,
        tools::ensure_claude_code().display()
    );
    println!(
        "openai-python {}: {}",
        tools::OPENAI_PYTHON_VERSION,
        tools::ensure_openai_python().display()
    );
    println!(
        "Hermes Agent {}: {}",
        tools::HERMES_AGENT_VERSION,
        tools::ensure_hermes_agent().display()
    );
    let openclaw = tools::ensure_openclaw();
    println!(
        "OpenClaw {} on Node.js {}: {}",
        tools::OPENCLAW_VERSION,
        tools::OPENCLAW_NODE_VERSION,
        openclaw.bin.display()
    );
}
