//! `oidc-token` (oidc-agent's token command) beside `brokerctl token`: the
//! nearest existing tool that does the same job — a process that asks a local
//! agent for an access token over a Unix socket and prints it.
//!
//! Measured only when oidc-agent is installed (Debian: `oidc-agent-cli`). The
//! agent gets an account whose access token is still valid for an hour, set
//! up against the same fake authorization server (loopback, no network): a
//! refresh-token account made with `oidc-gen --rt`, whose one refresh happens
//! at set-up. From then on `oidc-token` is answered from the agent's memory,
//! like `brokerctl token` from brokerd's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::fake_server::FakeAuthServer;

/// The account name inside oidc-agent.
const ACCOUNT: &str = "bench";

/// A running `oidc-agent` holding one account with a valid access token.
pub struct OidcAgent {
    child: Child,
    socket: PathBuf,
    oidc_token: PathBuf,
    _dir: tempfile::TempDir,
}

/// The oidc-agent programs, when all three are on `PATH`.
fn programs() -> Option<[PathBuf; 3]> {
    let path = std::env::var_os("PATH")?;
    let find = |name: &str| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    };
    Some([find("oidc-agent")?, find("oidc-gen")?, find("oidc-token")?])
}

impl OidcAgent {
    /// Starts oidc-agent with an account of `fake`; `Ok(None)` when oidc-agent
    /// is not installed.
    pub fn start(fake: &FakeAuthServer) -> anyhow::Result<Option<OidcAgent>> {
        let Some([agent, gen, oidc_token]) = programs() else {
            return Ok(None);
        };
        // Short: the socket path must fit sun_path.
        let dir = tempfile::Builder::new()
            .prefix("oidc-")
            .tempdir_in("/tmp")
            .context("creating oidc-agent's directory")?;
        let home = dir.path().join("home");
        std::fs::create_dir(&home)?;
        let socket = dir.path().join("agent.sock");
        let child = Command::new(&agent)
            .args([
                "--console",
                "--quiet",
                "--no-autoload",
                "--no-autoreauthenticate",
            ])
            .arg("--socket-path")
            .arg(&socket)
            .env_clear()
            .env("HOME", &home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", agent.display()))?;
        let mut running = OidcAgent {
            child,
            socket,
            oidc_token,
            _dir: dir,
        };
        running.wait_for_socket()?;
        running.add_account(&gen, &home, fake)?;
        Ok(Some(running))
    }

    fn wait_for_socket(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.socket.exists() {
            if let Some(status) = self.child.try_wait()? {
                bail!("oidc-agent exited at start ({status})");
            }
            if Instant::now() > deadline {
                bail!("oidc-agent did not create {}", self.socket.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// `oidc-gen` with a refresh token of a fresh grant: the agent refreshes
    /// once and keeps the access token (valid an hour) in memory.
    fn add_account(&self, gen: &Path, home: &Path, fake: &FakeAuthServer) -> anyhow::Result<()> {
        let grant = fake.issue_grant();
        let out = Command::new(gen)
            .arg(ACCOUNT)
            .args(["--manual", "--flow=refresh", "--no-save", "--prompt=none"])
            .args(["--confirm-default", "--no-url-call", "--pw-env"])
            .arg(format!("--issuer={}/", fake.issuer().trim_end_matches('/')))
            .arg(format!("--client-id={}", fake.config().client_id))
            .arg("--client-secret=unused")
            .arg(format!("--scope={}", grant.scope))
            .env_clear()
            .env("HOME", home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OIDC_SOCK", &self.socket)
            .env("OIDC_ENCRYPTION_PW", "bench")
            .env("OIDC_REFRESH_TOKEN", grant.refresh())
            .arg("--rt-env")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", gen.display()))?;
        if !out.status.success() {
            bail!(
                "oidc-gen could not add the account ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        // One token proves the account answers (from memory from now on).
        self.token()
    }

    /// [`Self::token`] as a shell line (for `bench --serve`).
    pub fn command_line(&self) -> String {
        format!(
            "env -i OIDC_SOCK={} {} {ACCOUNT}",
            self.socket.display(),
            self.oidc_token.display()
        )
    }

    /// One `oidc-token bench` process, as a hook runs it.
    pub fn token(&self) -> anyhow::Result<()> {
        let out = Command::new(&self.oidc_token)
            .arg(ACCOUNT)
            .env_clear()
            .env("OIDC_SOCK", &self.socket)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running {}", self.oidc_token.display()))?;
        if !out.status.success() || out.stdout.is_empty() {
            bail!(
                "oidc-token failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for OidcAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
