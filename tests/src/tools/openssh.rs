//! OpenSSH's server and client (Debian `openssh-server`, `openssh-client`),
//! for the test that forwards the broker's socket to a "remote" host with
//! `ssh -R` (`e2e_remote_ssh.rs`).
//!
//! Installed like the other distribution tools ([`super::system`]): found,
//! or installed with `apt-get` as root (or with passwordless sudo), or the
//! test fails with the command to run. `sshd` lives in `/usr/sbin`, which a
//! non-root `PATH` often lacks, so it is looked up there too.

use super::expect_tool;
use super::system::{find_on_path, install_packages};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The OpenSSH programs a test drives.
#[derive(Debug, Clone)]
pub struct OpenSsh {
    /// The server, run in inetd mode (`sshd -i`) per accepted connection.
    pub sshd: PathBuf,
    /// The client (`ssh -N -R …` for the forward, `ssh HOST CMD` for commands).
    pub ssh: PathBuf,
    /// Makes the throw-away host and user keys.
    pub ssh_keygen: PathBuf,
}

/// Where Debian's sshd compiles in its privilege-separation directory: sshd
/// running as root refuses to start without it ("Missing privilege
/// separation directory"). Debian's `ssh.service` creates it at each boot
/// (`RuntimeDirectory=sshd`); without systemd nothing does.
const PRIVSEP_DIR: &str = "/run/sshd";

/// `sshd`, `ssh` and `ssh-keygen`, installed on first use; panics with a
/// one-line message naming the command to run when that is not possible.
pub fn ensure_openssh() -> OpenSsh {
    static OUTCOME: OnceLock<Result<OpenSsh, String>> = OnceLock::new();
    expect_tool(OUTCOME.get_or_init(|| {
        let found = || {
            Some(OpenSsh {
                sshd: find_sbin("sshd")?,
                ssh: find_on_path("ssh")?,
                ssh_keygen: find_on_path("ssh-keygen")?,
            })
        };
        let tools = match found() {
            Some(tools) => tools,
            None => {
                install_packages(
                    &["openssh-server", "openssh-client"],
                    "sshd, ssh and ssh-keygen (OpenSSH)",
                    || found().is_some(),
                )?;
                found().ok_or_else(|| {
                    "openssh-server is installed but sshd, ssh or ssh-keygen is still missing"
                        .to_string()
                })?
            }
        };
        if nix::unistd::geteuid().is_root() && !Path::new(PRIVSEP_DIR).is_dir() {
            std::fs::create_dir_all(PRIVSEP_DIR)
                .map_err(|e| format!("cannot create sshd's directory {PRIVSEP_DIR}: {e}"))?;
        }
        Ok(tools)
    }))
}

fn find_sbin(program: &str) -> Option<PathBuf> {
    find_on_path(program).or_else(|| {
        ["/usr/sbin", "/sbin"]
            .iter()
            .map(|dir| Path::new(dir).join(program))
            .find(|path| path.is_file())
    })
}
