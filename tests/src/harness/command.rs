//! Running a helper command with a time limit.
//!
//! Why: `Command::output()` waits forever, so a `brokerctl` that hangs
//! (the very bug a test may be looking for) would hang the whole test run
//! instead of failing it. Output is drained on threads so a chatty child
//! cannot block on a full pipe.

use std::io::{Read, Write as _};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use super::ready::Backoff;

/// Runs `cmd` with `stdin` fed to it, collecting stdout and stderr. After
/// `timeout` the child is killed; the returned status then shows the signal
/// and a note is appended to stderr.
pub fn run_with_timeout(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> std::io::Result<Output> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let data = data.to_vec();
        // Written on a thread: a child that does not read must not block us.
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = Backoff::new(timeout).until(|| child.try_wait().ok().flatten());
    let (status, timed_out) = match status {
        Some(s) => (s, false),
        None => {
            let _ = child.kill();
            (child.wait()?, true)
        }
    };
    let stdout = out.join().unwrap_or_default();
    let mut stderr = err.join().unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(format!("\n[harness: killed after {timeout:?}]\n").as_bytes());
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}
