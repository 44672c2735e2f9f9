//! `brokerctl service install [--account NAME]`: install the systemd user units.
//!
//! Writes the units shipped in `systemd/` into the user's unit directory
//! (`$XDG_CONFIG_HOME/systemd/user/`, default `~/.config/systemd/user/`) with
//! `ExecStart=` pointing at the `brokerd` next to this `brokerctl` (so a
//! `cargo install`ed pair works as installed), and prints the one `systemctl`
//! command that enables them. It does not run `systemctl` itself: enabling a
//! service is the user's decision, and the command must also work over ssh or
//! in a container where brokerctl cannot reach the user manager.
//!
//! The default account gets `oauth-broker.service`/`.socket`; any other account
//! gets the templates `oauth-broker@.service`/`.socket`, instantiated as
//! `oauth-broker@NAME`. Running it again updates the files (e.g. after moving the
//! binaries); local changes belong in drop-ins (`systemctl --user edit`).

use super::{exit, Global};
use clap::{Args, Subcommand};
use etcetera::base_strategy::{BaseStrategy, Xdg};
use serde::Serialize;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The units as shipped (source of truth: the repository's `systemd/` folder).
const SERVICE: &str = include_str!("../../../systemd/oauth-broker.service");
const SOCKET: &str = include_str!("../../../systemd/oauth-broker.socket");
const TEMPLATE_SERVICE: &str = include_str!("../../../systemd/oauth-broker@.service");
const TEMPLATE_SOCKET: &str = include_str!("../../../systemd/oauth-broker@.socket");

/// The `ExecStart=` binary in the shipped units (a distribution's path).
const SHIPPED_BROKERD: &str = "ExecStart=/usr/bin/brokerd ";

/// Manage the systemd user units.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ServiceAction,
}

/// `service` actions.
#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Write the socket-activated user units and print the command that enables them.
    #[command(after_help = "\
The account comes from --account (or OAUTH_BROKER_ACCOUNT), default `default`.
Files: $XDG_CONFIG_HOME/systemd/user/oauth-broker.{service,socket} for the default
account, oauth-broker@.{service,socket} (templates) for any other.")]
    Install(InstallArgs),
}

/// Options of `service install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The brokerd binary for ExecStart= (default: the brokerd next to this brokerctl).
    #[arg(long, value_name = "PATH")]
    pub brokerd: Option<PathBuf>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// One unit file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    /// File name, e.g. `oauth-broker@.socket`.
    pub name: &'static str,
    /// Full content.
    pub content: String,
}

/// What `install` did (`--json` prints this).
#[derive(Debug, Serialize)]
pub struct InstallReport {
    /// The account the units serve.
    pub account: String,
    /// The unit directory written to.
    pub unit_dir: PathBuf,
    /// The files, and whether each one changed.
    pub files: Vec<WrittenFile>,
    /// The brokerd binary in `ExecStart=`.
    pub brokerd: PathBuf,
    /// The unit to enable.
    pub unit: String,
    /// The command to run.
    pub command: String,
}

/// One written file.
#[derive(Debug, Serialize)]
pub struct WrittenFile {
    /// Its path.
    pub path: PathBuf,
    /// False when it already had this content.
    pub changed: bool,
}

/// Runs the subcommand.
pub fn run(global: &Global, args: &ServiceArgs) -> ExitCode {
    match &args.action {
        ServiceAction::Install(install_args) => install(global, install_args),
    }
}

fn install(global: &Global, args: &InstallArgs) -> ExitCode {
    let account = global
        .account
        .clone()
        .or_else(|| {
            std::env::var("OAUTH_BROKER_ACCOUNT")
                .ok()
                .filter(|a| !a.is_empty())
        })
        .unwrap_or_else(|| crate::paths::DEFAULT_ACCOUNT.to_string());
    if let Err(e) = crate::paths::validate_account(&account) {
        return exit::fail_with(exit::USAGE, e);
    }
    if global.socket.is_some() {
        exit::report(
            "note: --socket is ignored; the units use $XDG_RUNTIME_DIR/oauth-broker/<account>.sock",
        );
    }
    let report = match plan_and_write(&account, args.brokerd.as_deref()) {
        Ok(report) => report,
        Err(e) => return exit::fail_with(exit::OTHER, e),
    };
    let text = if args.json {
        match serde_json::to_string(&report) {
            Ok(json) => json + "\n",
            Err(e) => {
                return exit::fail_with(
                    exit::OTHER,
                    format_args!("cannot encode the result as JSON: {e}"),
                )
            }
        }
    } else {
        human(&report)
    };
    exit::print(&text)
}

fn plan_and_write(account: &str, brokerd: Option<&Path>) -> anyhow::Result<InstallReport> {
    let brokerd = match brokerd {
        Some(path) => path.to_path_buf(),
        None => default_brokerd()?,
    };
    check_executable(&brokerd)?;
    let unit_dir = unit_dir()?;
    let (units, unit) = units_for(account, &brokerd)?;
    fs::create_dir_all(&unit_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", unit_dir.display()))?;
    let mut files = Vec::new();
    for file in &units {
        let path = unit_dir.join(file.name);
        let changed = write_if_changed(&path, &file.content)?;
        files.push(WrittenFile { path, changed });
    }
    Ok(InstallReport {
        account: account.to_string(),
        command: format!("systemctl --user enable --now {unit}"),
        unit,
        unit_dir,
        files,
        brokerd,
    })
}

/// The text output: the files, then the command alone on the last line.
fn human(report: &InstallReport) -> String {
    let mut out = String::new();
    for file in &report.files {
        let verb = if file.changed { "wrote" } else { "unchanged" };
        out.push_str(&format!("{verb} {}\n", file.path.display()));
    }
    out.push_str(&format!(
        "ExecStart uses {}\n\nTo start the broker now and at every login, run:\n  {}\n",
        report.brokerd.display(),
        report.command
    ));
    out
}

/// The unit files for `account` and the unit to enable.
pub fn units_for(account: &str, brokerd: &Path) -> anyhow::Result<(Vec<UnitFile>, String)> {
    let exec = systemd_quote(brokerd)?;
    let render = |name: &'static str, shipped: &str| UnitFile {
        name,
        content: render(shipped, &exec),
    };
    Ok(if account == crate::paths::DEFAULT_ACCOUNT {
        (
            vec![
                render("oauth-broker.service", SERVICE),
                render("oauth-broker.socket", SOCKET),
            ],
            "oauth-broker.socket".to_string(),
        )
    } else {
        (
            vec![
                render("oauth-broker@.service", TEMPLATE_SERVICE),
                render("oauth-broker@.socket", TEMPLATE_SOCKET),
            ],
            format!("oauth-broker@{account}.socket"),
        )
    })
}

/// A shipped unit with our `ExecStart=` binary and a header saying where it
/// came from.
fn render(shipped: &str, exec: &str) -> String {
    let body = shipped.replace(SHIPPED_BROKERD, &format!("ExecStart={exec} "));
    format!(
        "# Installed by `brokerctl service install` (oauth-broker {}); rerun it to update.\n{body}",
        env!("CARGO_PKG_VERSION")
    )
}

/// An absolute path as the first word of `ExecStart=`: quoted when needed, with
/// `%` (specifiers) and `$` (variables) escaped.
pub fn systemd_quote(path: &Path) -> anyhow::Result<String> {
    let text = path.to_str().ok_or_else(|| {
        anyhow::anyhow!(
            "{} is not valid UTF-8; systemd cannot run it",
            path.display()
        )
    })?;
    if !path.is_absolute() {
        anyhow::bail!("{text} is not an absolute path; pass --brokerd /absolute/path/to/brokerd");
    }
    if text.chars().any(char::is_control) {
        anyhow::bail!("{text:?} contains control characters; systemd cannot run it");
    }
    let escaped = text.replace('%', "%%").replace('$', "$$");
    let plain = escaped
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+%$@:,".contains(c));
    Ok(if plain {
        escaped
    } else {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    })
}

/// The brokerd next to the running brokerctl.
fn default_brokerd() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find brokerctl's own path ({e}); pass --brokerd"))?;
    let dir = me
        .parent()
        .ok_or_else(|| anyhow::anyhow!("cannot find brokerctl's directory; pass --brokerd"))?;
    Ok(dir.join("brokerd"))
}

fn check_executable(path: &Path) -> anyhow::Result<()> {
    let meta = fs::metadata(path).map_err(|e| {
        anyhow::anyhow!(
            "no brokerd at {} ({e}); install brokerd next to brokerctl or pass --brokerd PATH",
            path.display()
        )
    })?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        anyhow::bail!(
            "{} is not an executable file; pass --brokerd PATH",
            path.display()
        );
    }
    Ok(())
}

/// `$XDG_CONFIG_HOME/systemd/user`, default `~/.config/systemd/user`.
fn unit_dir() -> anyhow::Result<PathBuf> {
    let xdg = Xdg::new()
        .map_err(|e| anyhow::anyhow!("cannot find the home directory ({e}); set HOME"))?;
    Ok(xdg.config_dir().join("systemd").join("user"))
}

/// Replaces `path` atomically and durably (see [`crate::durable`]) unless it
/// already has `content`. Returns whether it changed. Unit files are not
/// secret: mode 0644, readable like the ones systemd ships.
fn write_if_changed(path: &Path, content: &str) -> anyhow::Result<bool> {
    if fs::read_to_string(path).is_ok_and(|old| old == content) {
        return Ok(false);
    }
    // The error names the path ("cannot write PATH: cause"); one line.
    crate::durable::write_with_mode(path, content.as_bytes(), UNIT_FILE_MODE)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(true)
}

/// The mode of an installed unit file.
const UNIT_FILE_MODE: u32 = 0o644;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_units_have_the_exec_start_to_replace() {
        for (name, unit) in [("service", SERVICE), ("template service", TEMPLATE_SERVICE)] {
            assert_eq!(unit.matches(SHIPPED_BROKERD).count(), 1, "{name}");
            assert!(unit.contains("Type=notify"), "{name}");
        }
        for socket in [SOCKET, TEMPLATE_SOCKET] {
            assert!(socket.contains("SocketMode=0600") && socket.contains("DirectoryMode=0700"));
        }
        assert!(SOCKET.contains("ListenStream=%t/oauth-broker/default.sock"));
        assert!(TEMPLATE_SOCKET.contains("ListenStream=%t/oauth-broker/%i.sock"));
    }

    #[test]
    fn default_account_gets_plain_units_others_the_templates() {
        let bin = Path::new("/home/u/.cargo/bin/brokerd");
        let (files, unit) = units_for("default", bin).unwrap();
        assert_eq!(unit, "oauth-broker.socket");
        assert_eq!(
            files.iter().map(|f| f.name).collect::<Vec<_>>(),
            ["oauth-broker.service", "oauth-broker.socket"]
        );
        assert!(files[0]
            .content
            .contains("\nExecStart=/home/u/.cargo/bin/brokerd --account default\n"));
        assert!(!files[0].content.contains("/usr/bin/brokerd"));

        let (files, unit) = units_for("work", bin).unwrap();
        assert_eq!(unit, "oauth-broker@work.socket");
        assert_eq!(files[0].name, "oauth-broker@.service");
        assert!(files[0]
            .content
            .contains("\nExecStart=/home/u/.cargo/bin/brokerd --account %i\n"));
    }

    #[test]
    fn paths_are_quoted_for_systemd() {
        let q = |p: &str| systemd_quote(Path::new(p)).unwrap();
        assert_eq!(q("/usr/local/bin/brokerd"), "/usr/local/bin/brokerd");
        assert_eq!(q("/home/a b/brokerd"), "\"/home/a b/brokerd\"");
        assert_eq!(q("/opt/100%/brokerd"), "/opt/100%%/brokerd");
        assert_eq!(q("/opt/$HOME/brokerd"), "/opt/$$HOME/brokerd");
        assert_eq!(q("/x/\"q\"/brokerd"), "\"/x/\\\"q\\\"/brokerd\"");
        assert!(systemd_quote(Path::new("brokerd")).is_err());
        assert!(systemd_quote(Path::new("/a\nb")).is_err());
    }

    #[test]
    fn rewriting_the_same_content_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.service");
        assert!(write_if_changed(&path, "a").unwrap());
        assert!(!write_if_changed(&path, "a").unwrap());
        assert!(write_if_changed(&path, "b").unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "b");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
}
