//! Tools from the distribution: found on `PATH`, installed with `apt-get`
//! when missing and this process may (root, or passwordless sudo).
//!
//! Why not always install: a developer's machine is theirs; without the
//! right to install, the test fails with the exact command to run instead.

use super::once::exclusive_lock;
use super::run::run;
use super::{cache_dir, expect_tool, note};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The programs `e2e_systemd.rs`, `e2e_python.rs` and `e2e_dialects.rs`
/// run, and the Debian package that ships each.
const SYSTEM_TOOLS: &[(&str, &str)] = &[
    ("systemd-analyze", "systemd"),
    ("systemd-socket-activate", "systemd"),
    ("python3", "python3"),
    ("git", "git"),
];

const APT_TIMEOUT: Duration = Duration::from_secs(600);

/// `systemd-analyze`, `systemd-socket-activate`, `python3` and `git` are on
/// `PATH` afterwards, or the calling test fails saying how to get them.
pub fn ensure_system_tools() {
    static OUTCOME: OnceLock<Result<(), String>> = OnceLock::new();
    expect_tool(OUTCOME.get_or_init(|| {
        let missing: Vec<_> = SYSTEM_TOOLS
            .iter()
            .filter(|(tool, _)| find_on_path(tool).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let tools: Vec<&str> = missing.iter().map(|(tool, _)| *tool).collect();
        let mut packages: Vec<&str> = missing.iter().map(|(_, package)| *package).collect();
        packages.dedup();
        install_packages(&packages, &tools.join(", "), || {
            SYSTEM_TOOLS
                .iter()
                .all(|(tool, _)| find_on_path(tool).is_some())
        })
    }))
}

/// The full path of `program` on `PATH` (or in `/usr/bin`, `/bin`, where
/// the distribution puts it even when `PATH` is thin).
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|dir| !dir.is_empty())
        .chain(["/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// Installs the Debian `packages` that provide `needed` (for messages),
/// unless `present` turns true while waiting for the lock (another test
/// process installed them).
pub(super) fn install_packages(
    packages: &[&str],
    needed: &str,
    present: impl Fn() -> bool,
) -> Result<(), String> {
    let list = packages.join(" ");
    let by_hand = format!("sudo apt-get install -y {list}");
    if find_on_path("apt-get").is_none() {
        return Err(format!(
            "{needed} not found and there is no apt-get: install the packages that provide it \
             with your distribution's package manager (Debian: `{by_hand}`)"
        ));
    }
    let Some(sudo) = privilege() else {
        return Err(format!(
            "{needed} not found and this user may not install packages: run `{by_hand}`"
        ));
    };
    // apt holds its own lock and fails rather than waits; ours makes test
    // processes that install at once take turns.
    let _lock = exclusive_lock(&cache_dir().join("apt.lock"), &list)?;
    if present() {
        return Ok(());
    }
    note(&format!("installing {needed}: apt-get install {list}"));
    let apt = |args: &[&str]| {
        let mut cmd = match sudo {
            Some(sudo) => {
                let mut cmd = Command::new(sudo);
                cmd.args(["-n", "apt-get"]);
                cmd
            }
            None => Command::new("apt-get"),
        };
        cmd.args(args);
        run(cmd, APT_TIMEOUT).map_err(|e| {
            format!(
                "cannot install {needed}: {e} (the distribution's package mirrors must be \
                 reachable; or run `{by_hand}` yourself)"
            )
        })
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(packages);
    apt(&install)?;
    if present() {
        Ok(())
    } else {
        Err(format!(
            "`apt-get install {list}` succeeded but {needed} is still missing from PATH"
        ))
    }
}

/// How this process may install packages: `Some(None)` as root,
/// `Some(Some("sudo"))` with passwordless sudo, `None` not at all.
fn privilege() -> Option<Option<&'static str>> {
    if nix::unistd::geteuid().is_root() {
        return Some(None);
    }
    find_on_path("sudo")?;
    let passwordless = Command::new("sudo")
        .args(["-n", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    passwordless.then_some(Some("sudo"))
}

/// Where Debian puts libfaketime's preload library, per architecture.
const LIBFAKETIME: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
];

/// The path of libfaketime's preload library (Debian package `libfaketime`),
/// installed on first use like the other system tools. `e2e_clock_jumps.rs`
/// preloads it into brokerd alone to step its wall clock while every other
/// process — and brokerd's own monotonic and boot clocks — keep real time.
pub fn ensure_libfaketime() -> PathBuf {
    static OUTCOME: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    expect_tool(OUTCOME.get_or_init(|| {
        let found = || LIBFAKETIME.iter().map(PathBuf::from).find(|p| p.is_file());
        if let Some(path) = found() {
            return Ok(path);
        }
        install_packages(&["libfaketime"], "libfaketime", || found().is_some())?;
        found().ok_or_else(|| {
            format!(
                "libfaketime is installed but none of {} exists",
                LIBFAKETIME.join(", ")
            )
        })
    }))
}
