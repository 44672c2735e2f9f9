//! A "remote host" reached over real OpenSSH on loopback, for the test that
//! forwards the broker's socket with `ssh -R` (README "Remote hosts and
//! containers").
//!
//! The server is Debian's `sshd` in inetd mode (`sshd -i`), one process per
//! accepted connection, as inetd or a systemd socket unit with `Accept=yes` runs it: the test
//! holds the listening socket on an OS-picked loopback port, so there is no
//! "pick a free port, hope nobody takes it before sshd binds it" race and no
//! waiting for sshd to come up. Everything sshd and ssh read is throw-away:
//! a temp host key, `authorized_keys`, `sshd_config` and `known_hosts`, a
//! temp key for the client, `-F /dev/null` so no user or system client config
//! applies, and no agent. The sessions get a temp `HOME` and `SHLVL=1` (so
//! bash, run by sshd, does not source the real `~/.bashrc`); `~/.ssh/rc` is
//! off. The "remote" commands are ordinary processes of this machine: what
//! makes them remote is that they reach the broker only through the
//! forwarded socket.

use crate::tools::{ensure_openssh, OpenSsh};
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The host key alias in `known_hosts`: independent of the port.
const HOST_ALIAS: &str = "oauth-broker-test-remote";

/// How long a forward may take to be established.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(20);

/// A running sshd on `127.0.0.1:<port>`; stopped (and every sshd it started
/// killed) on drop.
pub struct SshHost {
    dir: tempfile::TempDir,
    tools: OpenSsh,
    addr: SocketAddr,
    user: String,
    stop: Arc<AtomicBool>,
    sessions: Arc<Mutex<Vec<Child>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl SshHost {
    /// Installs OpenSSH on first use, makes the keys and config, and starts
    /// accepting connections. Panics (failing the test) on any error.
    pub fn start() -> SshHost {
        let tools = ensure_openssh();
        let dir = tempfile::Builder::new()
            .prefix("obt-ssh-")
            .tempdir()
            .expect("temp dir for sshd");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let path = |name: &str| dir.path().join(name);
        for key in ["host_key", "user_key"] {
            let out = Command::new(&tools.ssh_keygen)
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "oauth-broker-test",
                    "-f",
                ])
                .arg(path(key))
                .output()
                .expect("run ssh-keygen");
            assert!(
                out.status.success(),
                "ssh-keygen failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let public = |key: &str| fs::read_to_string(path(&format!("{key}.pub"))).unwrap();
        fs::write(path("authorized_keys"), public("user_key")).unwrap();
        let host_key = public("host_key");
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        fs::write(
            path("known_hosts"),
            format!("{HOST_ALIAS} {}\n", host_key.join(" ")),
        )
        .unwrap();
        fs::create_dir(path("home")).unwrap();
        fs::write(path("sshd_config"), sshd_config(dir.path(), &path("home"))).unwrap();
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .expect("the test's user has a passwd entry (sshd needs one)");

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port for sshd");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let stop = stop.clone();
            let sessions = sessions.clone();
            let sshd = tools.sshd.clone();
            let config = path("sshd_config");
            let log = path("sshd.log");
            std::thread::spawn(move || {
                accept_loop(listener, &sshd, &config, &log, &stop, &sessions)
            })
        };
        SshHost {
            dir,
            tools,
            addr,
            user,
            stop,
            sessions,
            acceptor: Some(acceptor),
        }
    }

    /// The loopback port sshd answers on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every ssh option that makes ssh use only this test's files and
    /// reach this server (to put before the destination).
    pub fn options(&self) -> Vec<String> {
        let d = self.dir.path().display();
        [
            "-F",
            "/dev/null",
            "-p",
            &self.port().to_string(),
            "-i",
            &format!("{d}/user_key"),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &format!("HostKeyAlias={HOST_ALIAS}"),
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            &format!("UserKnownHostsFile={d}/known_hosts"),
            "-o",
            "ConnectTimeout=20",
        ]
        .map(String::from)
        .to_vec()
    }

    /// `user@127.0.0.1`.
    pub fn destination(&self) -> String {
        format!("{}@127.0.0.1", self.user)
    }

    /// `ssh <user>@127.0.0.1 <remote_command>`: runs a shell command on the
    /// "remote" host. Quote what needs quoting ([`shell_quote`]).
    pub fn command(&self, remote_command: &str) -> Command {
        let mut cmd = Command::new(&self.tools.ssh);
        cmd.args(self.options())
            .arg(self.destination())
            .arg("--")
            .arg(remote_command)
            .stdin(Stdio::null());
        cmd
    }

    /// Starts `ssh -N -R <remote>:<local>` and returns once the server
    /// confirmed the forward.
    pub fn forward(&self, remote: &Path, local: &Path) -> Forward {
        let mut argv = vec![self.tools.ssh.display().to_string()];
        argv.extend(self.options());
        argv.extend(["-N", "-o", "ExitOnForwardFailure=yes", "-R"].map(String::from));
        argv.push(format!("{}:{}", remote.display(), local.display()));
        argv.push(self.destination());
        self.run_forward(&argv)
    }

    /// Runs a forward given as a whole command line (`ssh … -R … HOST`, as
    /// `brokerctl ssh-forward --json` prints it; `-v` is added so that ssh
    /// reports the outcome) and returns once the server confirmed it (ssh's
    /// own "remote forward success" line, not a sleep). Panics with both
    /// logs when it fails.
    pub fn run_forward(&self, argv: &[String]) -> Forward {
        let mut cmd = Command::new(&argv[0]);
        cmd.arg("-v")
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ssh -R");
        let stderr = child.stderr.take().unwrap();
        let log_path = self.dir.path().join("ssh-forward.log");
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
                .expect("open forward log");
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                let outcome = if line.contains("remote forward success for: listen") {
                    Ok(())
                } else if line.contains("remote forward failure") || line.starts_with("Error:") {
                    Err(line.clone())
                } else {
                    continue;
                };
                if let Some(tx) = ready.take() {
                    let _ = tx.send(outcome);
                }
            }
            if let Some(tx) = ready.take() {
                let _ = tx.send(Err("ssh exited before the forward was up".to_string()));
            }
        });
        let outcome = ready_rx.recv_timeout(FORWARD_TIMEOUT);
        let mut forward = Forward {
            child,
            reader: Some(reader),
        };
        match outcome {
            Ok(Ok(())) => forward,
            other => {
                forward.kill();
                panic!(
                    "{} did not set up the forward ({other:?}); ssh log:\n{}\nsshd log:\n{}",
                    argv.join(" "),
                    self.forward_log(),
                    self.server_log()
                );
            }
        }
    }

    /// Everything the sshd processes logged.
    pub fn server_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Everything the forwarding ssh clients logged (`-v`).
    pub fn forward_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("ssh-forward.log")).unwrap_or_default()
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for mut child in self.sessions.lock().unwrap().drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running `ssh -N -R` forward.
pub struct Forward {
    child: Child,
    reader: Option<JoinHandle<()>>,
}

impl Forward {
    /// Kills the ssh client (SIGKILL, like a dropped network or a closed
    /// laptop lid) and waits until it is gone. The remote socket file stays
    /// behind: sshd does not remove it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Single-quotes `s` for a POSIX shell (the remote side runs commands with
/// the user's login shell).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn sshd_config(dir: &Path, home: &Path) -> String {
    let d = dir.display();
    format!(
        "HostKey {d}/host_key\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         # The temp dir sits under /tmp (world-writable, sticky), which\n\
         # StrictModes would refuse for authorized_keys.\n\
         StrictModes no\n\
         UsePAM no\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         AllowStreamLocalForwarding yes\n\
         # Without it a forward that comes back fails: the dropped one left\n\
         # its socket file behind (a server-side setting; ssh's own\n\
         # StreamLocalBindUnlink applies only to -L).\n\
         StreamLocalBindUnlink yes\n\
         PermitUserRC no\n\
         PermitUserEnvironment no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         UseDNS no\n\
         PidFile none\n\
         SetEnv HOME={} SHLVL=1\n\
         LogLevel VERBOSE\n",
        home.display()
    )
}

/// Hands every accepted connection to its own `sshd -i`.
fn accept_loop(
    listener: TcpListener,
    sshd: &Path,
    config: &Path,
    log: &Path,
    stop: &AtomicBool,
    sessions: &Mutex<Vec<Child>>,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let spawned = (|| -> std::io::Result<Child> {
            let log = OpenOptions::new().create(true).append(true).open(log)?;
            let input = stream.try_clone()?;
            Command::new(sshd)
                .args(["-i", "-e", "-f"])
                .arg(config)
                .stdin(Stdio::from(std::os::fd::OwnedFd::from(input)))
                .stdout(Stdio::from(std::os::fd::OwnedFd::from(stream)))
                .stderr(Stdio::from(log))
                .spawn()
        })();
        let mut sessions = sessions.lock().unwrap();
        // Reap the finished ones so the list stays short.
        sessions.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        match spawned {
            Ok(child) => sessions.push(child),
            Err(e) => {
                if let Ok(mut log) = OpenOptions::new().create(true).append(true).open(log) {
                    let _ = writeln!(log, "test harness: cannot start sshd -i: {e}");
                }
            }
        }
    }
}
