//! Observations the reliability tests make beside the broker's answers: the
//! state on disk as the next broker will read it, a process's memory and limits,
//! and polling helpers for the few facts that have no notification (a status
//! field, a wall-clock expiry).

use oauth_broker::store::PersistedState;
use oauth_broker_tests::harness::Backoff;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The state an account directory holds, read strictly by the broker's own
/// reader (the journal's newest intact record, else an earlier version's
/// `state.json`); panics with the cause if it is unreadable. `None` if there
/// is no state.
pub fn read_state_dir(dir: &Path) -> Option<PersistedState> {
    oauth_broker::store::read_state_dir(dir)
        .unwrap_or_else(|e| panic!("the state in {} is unreadable: {e}", dir.display()))
}

/// Resident memory of a process in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn vm_rss_kib(pid: u32) -> u64 {
    proc_status_field(pid, "VmRSS:")
        .and_then(|v| v.split_whitespace().next().map(str::to_string))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for pid {pid}"))
}

/// One field of `/proc/<pid>/status`, without its label.
fn proc_status_field(pid: u32, label: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(label).map(|v| v.trim().to_string()))
}

/// Polls `f` with backoff (1 ms doubling to 50 ms) until it returns `Some`;
/// panics with `what` after `timeout`. For facts with no notification, such
/// as a status field the broker changes on its own.
pub fn eventually<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    Backoff::new(timeout)
        .until(f)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Sleeps until the wall clock passes `unix_secs` (plus a little): expiry has
/// no notification.
pub fn sleep_until_unix(unix_secs: u64) {
    let target = std::time::UNIX_EPOCH + Duration::from_secs(unix_secs) + Duration::from_millis(50);
    if let Ok(left) = target.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(left);
    }
}

/// Writes `<dir>/brokerd-low-nofile`, a wrapper that lowers the open-files
/// soft limit to `soft` and then execs the real brokerd (same pid), as a
/// distribution default of 1024 would.
pub fn brokerd_with_low_nofile(dir: &Path, soft: u64) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("brokerd-low-nofile");
    let script = format!(
        "#!/bin/sh\nulimit -S -n {soft} || exit 97\nexec '{}' \"$@\"\n",
        super::brokerd().display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path
}

/// The soft and hard open-files limits of a process, from /proc.
pub fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let mut fields = line["Max open files".len()..].split_whitespace();
    (
        fields.next().unwrap().to_string(),
        fields.next().unwrap().to_string(),
    )
}
