//! Process hardening at start: no core dumps and no ptrace by other processes of
//! the same user, so the tokens in memory cannot be read from a crash dump or by
//! attaching a debugger without root.

/// `prctl(PR_SET_DUMPABLE, 0)` and `RLIMIT_CORE = 0`.
pub fn harden_process() -> anyhow::Result<()> {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
        .map_err(|e| anyhow::anyhow!("cannot disable core dumps (RLIMIT_CORE): {e}"))?;
    nix::sys::prctl::set_dumpable(false).map_err(|e| {
        anyhow::anyhow!("cannot mark the process non-dumpable (PR_SET_DUMPABLE): {e}")
    })?;
    Ok(())
}

/// Raises the soft limit on open files to the hard limit and returns the new
/// soft limit.
///
/// Why: every client connection is a file descriptor, and the common default
/// soft limit (1024) would make `accept` fail with EMFILE long before
/// `max_connections` is reached — a few hundred idle agents would lock
/// everybody else out. The hard limit is the ceiling the administrator set;
/// raising the soft limit up to it needs no privilege.
pub fn raise_open_files_limit() -> anyhow::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| anyhow::anyhow!("cannot read the open-files limit (RLIMIT_NOFILE): {e}"))?;
    // An "unlimited" hard limit cannot be set as the soft one (the kernel caps
    // descriptors at fs.nr_open, 2^20 by default); a million is plenty.
    let target = hard.min(1 << 20);
    if soft >= target {
        return Ok(soft);
    }
    setrlimit(Resource::RLIMIT_NOFILE, target, hard).map_err(|e| {
        anyhow::anyhow!(
            "cannot raise the open-files limit from {soft} to {target} (RLIMIT_NOFILE): {e}"
        )
    })?;
    Ok(target)
}
