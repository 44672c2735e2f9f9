//! CPU time of a process, from /proc.
//!
//! Why: wall-clock throughput depends on what else the machine is doing; CPU
//! time per token does much less, and says what a token costs — so the
//! throughput table shows both.

use std::time::Duration;

use anyhow::Context as _;

/// `/proc` counts in `USER_HZ` ticks, which Linux fixes at 100 per second on
/// every architecture it exposes to user space.
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time consumed so far by `pid` (`None`: this process).
pub fn used(pid: Option<u32>) -> anyhow::Result<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name may contain spaces and parentheses: fields are counted
    // after its closing parenthesis (utime and stime are fields 14 and 15).
    let after_name = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("malformed /proc stat line")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .context("malformed /proc stat line")
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_millis(total * 1000 / TICKS_PER_SECOND))
}

/// Time every thread of `pid` has spent on a CPU so far, in nanoseconds from
/// the scheduler (`/proc/<pid>/task/*/schedstat`): fine enough for an event
/// of a few milliseconds, which [`used`]'s 10 ms ticks are not. Threads that
/// already ended are not counted.
pub fn on_cpu(pid: u32) -> anyhow::Result<Duration> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0u64;
    for task in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let path = task?.path().join("schedstat");
        // A thread may end between the listing and the read.
        let Ok(line) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += line
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .with_context(|| format!("malformed {}", path.display()))?;
    }
    Ok(Duration::from_nanos(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let start = used(None).unwrap();
        let mut x = 0u64;
        let until = std::time::Instant::now() + Duration::from_millis(50);
        while std::time::Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(used(None).unwrap() >= start);
    }
}
