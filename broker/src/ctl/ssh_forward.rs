//! `brokerctl ssh-forward HOST [-- SSH_OPTIONS…]`: the exact OpenSSH command
//! that makes this broker serve HOST.
//!
//! Why a helper and not only a README recipe: `ssh -R REMOTE:LOCAL` wants an
//! absolute remote path (sshd expands neither `~` nor relative paths) in a
//! directory that already exists and only the remote user can enter, the
//! local path is wherever socket discovery put it, and both must fit in the
//! 107 bytes of a socket address. The helper asks HOST for its home
//! directory once (creating `~/.oauth-broker`, mode 0700, with one plain
//! `ssh HOST mkdir …`; skipped with `--remote-dir`), then prints the forward
//! and the line the remote programs need. It runs nothing long-lived: the
//! forward belongs under the user's own supervision (a terminal, autossh, a
//! systemd unit). Nothing here is a protocol of ours — the broker's own
//! socket, carried by OpenSSH, so every client works unchanged on HOST.

use super::{exit, Global};
use clap::Args;
use oauth_broker_client::socket_path_too_long;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// The directory created under the remote home when no `--remote-dir` is given.
const REMOTE_DIR: &str = ".oauth-broker";

/// Print the `ssh -R` command that forwards this broker's socket to HOST.
#[derive(Debug, Args)]
#[command(after_help = "\
Without --remote-dir it runs `ssh [SSH_OPTIONS] HOST 'mkdir -m 700 -p ~/.oauth-broker …'`
once to create the remote directory and learn its absolute path. Options after
`--` (e.g. `-- -p 2222 -i ~/.ssh/devbox`) are passed to that ssh and printed in
the forward. See README \"Remote hosts and containers\".")]
pub struct SshForwardArgs {
    /// The remote host, as you would pass it to ssh (`user@host`, an alias).
    #[arg(value_name = "HOST")]
    pub host: String,
    /// An existing private directory on HOST for the socket (absolute path);
    /// skips the ssh call that creates `~/.oauth-broker`.
    #[arg(long, value_name = "DIR")]
    pub remote_dir: Option<PathBuf>,
    /// Print one JSON object instead of shell lines.
    #[arg(long)]
    pub json: bool,
    /// Extra ssh options, placed before HOST.
    #[arg(last = true, value_name = "SSH_OPTIONS")]
    pub ssh_options: Vec<String>,
}

/// What the helper prints (`--json`).
#[derive(Debug, Serialize)]
pub struct Recipe {
    /// The local socket being forwarded.
    pub local_socket: PathBuf,
    /// The socket on HOST.
    pub remote_socket: PathBuf,
    /// The forward, as an argument vector (`ssh …`).
    pub forward: Vec<String>,
    /// The environment line for programs on HOST.
    pub remote_env: String,
}

/// Runs `brokerctl ssh-forward`.
pub fn run(global: &Global, args: &SshForwardArgs) -> ExitCode {
    match recipe(global, args) {
        Ok(recipe) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&recipe).expect("a recipe serializes")
                );
            } else {
                print_recipe(&recipe, &args.host);
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            exit::report(message);
            ExitCode::from(exit::OTHER)
        }
    }
}

fn recipe(global: &Global, args: &SshForwardArgs) -> Result<Recipe, String> {
    let local_socket = global
        .client_builder()
        .socket_path()
        .map_err(|e| e.to_string())?;
    let local_socket = std::path::absolute(&local_socket).unwrap_or(local_socket);
    let name = local_socket.file_name().ok_or_else(|| {
        format!(
            "the socket path {} has no file name",
            local_socket.display()
        )
    })?;
    let remote_dir = match &args.remote_dir {
        Some(dir) if dir.is_absolute() => dir.clone(),
        Some(dir) => {
            return Err(format!(
                "--remote-dir {} is relative; ssh -R needs an absolute path on the remote host (sshd expands neither `~` nor relative paths)",
                dir.display()
            ))
        }
        None => create_remote_dir(&args.host, &args.ssh_options)?,
    };
    let remote_socket = remote_dir.join(name);
    if let Some(message) = socket_path_too_long(&remote_socket) {
        return Err(format!("on {}: {message}", args.host));
    }
    let mut forward = vec!["ssh".to_string()];
    forward.extend(args.ssh_options.iter().cloned());
    forward.extend(
        [
            "-nNT",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=3",
            "-R",
        ]
        .map(String::from),
    );
    forward.push(format!(
        "{}:{}",
        remote_socket.display(),
        local_socket.display()
    ));
    forward.push(args.host.clone());
    let remote_env = format!(
        "export OAUTH_BROKER_SOCKET={}",
        shell_word(&remote_socket.display().to_string())
    );
    Ok(Recipe {
        local_socket,
        remote_socket,
        forward,
        remote_env,
    })
}

/// `ssh HOST 'mkdir -m 700 -p ~/.oauth-broker && cd … && pwd -P'`: creates
/// the remote directory and returns its absolute path.
fn create_remote_dir(host: &str, ssh_options: &[String]) -> Result<PathBuf, String> {
    let script =
        format!("umask 077 && mkdir -m 700 -p ~/{REMOTE_DIR} && cd ~/{REMOTE_DIR} && pwd -P");
    let out = Command::new("ssh")
        .args(ssh_options)
        .arg(host)
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ssh: {e} (is OpenSSH's client installed?)"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim().lines().last().unwrap_or("no error output");
        return Err(format!(
            "`ssh {host} mkdir -m 700 -p ~/{REMOTE_DIR}` failed ({}): {err}; create a private directory on {host} yourself and pass it with --remote-dir",
            out.status
        ));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = PathBuf::from(dir.lines().last().unwrap_or_default());
    if !dir.is_absolute() {
        return Err(format!(
            "{host} answered {} for its ~/{REMOTE_DIR}, not an absolute path; pass --remote-dir",
            dir.display()
        ));
    }
    Ok(dir)
}

fn print_recipe(recipe: &Recipe, host: &str) {
    let forward: Vec<String> = recipe.forward.iter().map(|w| shell_word(w)).collect();
    let remote_dir = recipe
        .remote_socket
        .parent()
        .unwrap_or(Path::new("/"))
        .display();
    println!("# 1. Keep this running (a terminal, autossh or a systemd unit); it forwards");
    println!("#    {} to {host}:", recipe.local_socket.display());
    println!("{}", forward.join(" "));
    println!("# 2. On {host}, for every program that should use the broker:");
    println!("{}", recipe.remote_env);
    println!("# The directory {remote_dir} must exist on {host} (mode 0700). For the forward to");
    println!("# come back after a drop, {host}'s sshd_config needs `StreamLocalBindUnlink yes`;");
    println!(
        "# without it, run `ssh {host} rm -f {}` before step 1.",
        shell_word(&recipe.remote_socket.display().to_string())
    );
}

/// Quotes `word` for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(socket: &str) -> Global {
        Global {
            socket: Some(PathBuf::from(socket)),
            account: None,
        }
    }

    fn args(remote_dir: &str) -> SshForwardArgs {
        SshForwardArgs {
            host: "devbox".into(),
            remote_dir: Some(PathBuf::from(remote_dir)),
            json: false,
            ssh_options: vec!["-p".into(), "2222".into()],
        }
    }

    #[test]
    fn the_forward_names_both_sockets_and_the_options() {
        let recipe = recipe(
            &global("/run/user/1000/oauth-broker/default.sock"),
            &args("/home/me/.oauth-broker"),
        )
        .unwrap();
        assert_eq!(
            recipe.forward.join(" "),
            "ssh -p 2222 -nNT -o ExitOnForwardFailure=yes -o ServerAliveInterval=15 -o ServerAliveCountMax=3 \
             -R /home/me/.oauth-broker/default.sock:/run/user/1000/oauth-broker/default.sock devbox"
        );
        assert_eq!(
            recipe.remote_env,
            "export OAUTH_BROKER_SOCKET=/home/me/.oauth-broker/default.sock"
        );
    }

    #[test]
    fn relative_and_too_long_remote_paths_are_refused() {
        let g = global("/run/user/1000/oauth-broker/default.sock");
        let err = recipe(&g, &args("oauth-broker")).unwrap_err();
        assert!(err.contains("absolute path"), "{err}");
        let long = format!("/home/{}", "x".repeat(120));
        let err = recipe(&g, &args(&long)).unwrap_err();
        assert!(err.contains("107 bytes"), "{err}");
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("/a/b.sock:/c"), "/a/b.sock:/c");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
