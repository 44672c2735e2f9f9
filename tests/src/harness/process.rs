//! [`BrokerProcess`]: one running `brokerd`, and `brokerctl` runs against it.
//!
//! Why these rules:
//! * `env_clear()` + [`TestEnv::base_env`]: nothing of the developer's
//!   environment (real `$HOME`, `OAUTH_BROKER_SOCKET`, …) reaches the broker.
//! * stdout and stderr go to a log file, not to pipes: a daemon that logs a
//!   lot must never block on a full pipe, and the file survives a crash for
//!   the failure message.
//! * readiness = the socket accepts a connection (polled with backoff); if
//!   the process exits first, the error carries its log.
//! * `Drop` kills with SIGKILL, so a failing test never leaks a daemon.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use super::command::run_with_timeout;
use super::env::TestEnv;
use super::ready::Backoff;
use super::spec::BrokerSpec;

/// How long [`BrokerProcess::start`] waits for the socket.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`BrokerProcess::terminate`] waits after SIGTERM.
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time limit of one `brokerctl` run.
pub const BROKERCTL_TIMEOUT: Duration = Duration::from_secs(60);

/// A running (or exited) `brokerd`.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Child,
    exit: Option<ExitStatus>,
    account: String,
    socket: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    env: Vec<(String, String)>,
}

impl BrokerProcess {
    /// Writes the config, spawns `brokerd` and waits until its socket
    /// accepts connections (10 s at most).
    pub fn start(spec: BrokerSpec<'_>) -> anyhow::Result<Self> {
        let mut p = Self::spawn(spec)?;
        p.wait_ready(READY_TIMEOUT)?;
        Ok(p)
    }

    /// Writes the config and spawns `brokerd` without waiting for it (for
    /// tests that expect it to fail, e.g. a second broker for one account).
    pub fn spawn(spec: BrokerSpec<'_>) -> anyhow::Result<Self> {
        let env: &TestEnv = spec.env;
        let config_path = env.config_dir().join(format!("{}.toml", spec.account));
        write_private(&config_path, spec.config_toml.as_bytes())?;
        let socket = env.socket_path(&spec.account);
        let log_path = env.new_log_path(&format!("brokerd-{}", spec.account));
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;

        let mut vars = env.base_env();
        vars.push(("RUST_LOG".to_owned(), spec.rust_log.clone()));
        vars.extend(spec.extra_env.iter().cloned());

        let child = Command::new(&spec.brokerd)
            .arg("--config")
            .arg(&config_path)
            .arg("--account")
            .arg(&spec.account)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(env.state_dir().join(&spec.account))
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .current_dir(env.root())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", spec.brokerd.display()))?;

        let mut client_env = vars;
        client_env.push((
            "OAUTH_BROKER_SOCKET".to_owned(),
            socket.to_string_lossy().into_owned(),
        ));
        Ok(Self {
            child,
            exit: None,
            account: spec.account,
            socket,
            config_path,
            log_path,
            env: client_env,
        })
    }

    /// Waits until the socket accepts a connection; fails with the log if
    /// the process exits first or the time runs out (then it is killed).
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let mut backoff = Backoff::new(timeout);
        loop {
            if let Some(status) = self.try_wait()? {
                bail!(
                    "brokerd exited before it was ready ({status}); log {}:\n{}",
                    self.log_path.display(),
                    self.logs()
                );
            }
            if UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if !backoff.wait() {
                let _ = self.kill();
                bail!(
                    "brokerd did not accept connections on {} within {timeout:?}; log {}:\n{}",
                    self.socket.display(),
                    self.log_path.display(),
                    self.logs()
                );
            }
        }
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Environment for client processes of this broker: the broker's own
    /// (HOME, XDG_*, RUST_LOG, extra env) plus `OAUTH_BROKER_SOCKET`.
    pub fn client_env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The exit status if the process has exited (reaps it).
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait()?;
        }
        Ok(self.exit)
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exit {
            return Some(s);
        }
        Backoff::new(timeout).until(|| self.try_wait().ok().flatten())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Sends a signal (e.g. SIGHUP) unless the process was already reaped.
    pub fn signal(&mut self, sig: Signal) -> anyhow::Result<()> {
        if self.try_wait()?.is_some() {
            bail!("brokerd has already exited");
        }
        let pid = i32::try_from(self.child.id()).context("pid out of range")?;
        signal::kill(Pid::from_raw(pid), sig).with_context(|| format!("kill -{sig} {pid}"))?;
        Ok(())
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL. Returns the exit status.
    pub fn terminate(&mut self) -> std::io::Result<ExitStatus> {
        self.terminate_with_timeout(TERMINATE_TIMEOUT)
    }

    /// SIGTERM, wait up to `timeout`, then SIGKILL.
    pub fn terminate_with_timeout(&mut self, timeout: Duration) -> std::io::Result<ExitStatus> {
        if let Some(s) = self.try_wait()? {
            return Ok(s);
        }
        let _ = self.signal(Signal::SIGTERM);
        match self.wait_exit(timeout) {
            Some(s) => Ok(s),
            None => self.kill(),
        }
    }

    /// SIGKILL and reap. Returns the exit status.
    pub fn kill(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(s) = self.try_wait()? {
            return Ok(s);
        }
        self.child.kill()?;
        let s = self.child.wait()?;
        self.exit = Some(s);
        Ok(s)
    }

    /// A `brokerctl --socket <socket> <args…>` command with this broker's
    /// client environment, not yet started (for streaming output, e.g.
    /// `relogin --json`).
    pub fn brokerctl_command(&self, bin: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg("--socket")
            .arg(&self.socket)
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs `brokerctl --socket <socket> <args…>` to completion (killed
    /// after 60 s) with no stdin.
    pub fn brokerctl(&self, bin: &Path, args: &[&str]) -> Output {
        self.brokerctl_with_stdin(bin, args, None)
    }

    /// Like [`brokerctl`](Self::brokerctl), feeding `stdin` (e.g. for
    /// `import -`).
    pub fn brokerctl_with_stdin(&self, bin: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_with_timeout(self.brokerctl_command(bin, args), stdin, BROKERCTL_TIMEOUT)
            .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", bin.display()))
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Writes a file created with mode 0600 (never briefly world-readable).
fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)?;
    // An existing file keeps its old mode on open; enforce it.
    fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}
