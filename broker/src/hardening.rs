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
