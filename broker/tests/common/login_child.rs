//! A running `brokerctl relogin --json` the test answers as the user.

use std::time::Duration;

/// A running `brokerctl relogin --json`: its stdout lines are read as they
/// come; killed when dropped.
pub struct LoginChild {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// How long a login step may take before the test fails.
pub const STEP: Duration = Duration::from_secs(20);

impl LoginChild {
    pub(super) fn spawn(mut cmd: std::process::Command) -> LoginChild {
        use std::io::{BufRead, Read};
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn brokerctl relogin");
        let stdout = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        LoginChild {
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// The next JSON event (fails the test after `STEP`).
    pub fn next_event(&mut self) -> serde_json::Value {
        match self.lines.recv_timeout(STEP) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line:?}")),
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr.take().map(|h| h.join().unwrap_or_default());
                panic!("no login event within {STEP:?}; brokerctl stderr: {err:?}")
            }
        }
    }

    /// The next event, which must be `kind` (`device_code`, …).
    pub fn expect_event(&mut self, kind: &str) -> serde_json::Value {
        let event = self.next_event();
        assert_eq!(event["event"], kind, "unexpected event {event}");
        event
    }

    /// Waits for brokerctl to exit; returns its exit code and stderr. Every
    /// line of stdout must have been read before.
    pub fn finish(mut self) -> (Option<i32>, String) {
        let status = oauth_broker_tests::harness::Backoff::new(STEP)
            .until(|| self.child.try_wait().ok().flatten())
            .unwrap_or_else(|| {
                let _ = self.child.kill();
                panic!("brokerctl relogin did not exit within {STEP:?}")
            });
        let err = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let rest: Vec<String> = self.lines.try_iter().collect();
        assert!(rest.is_empty(), "unread events: {rest:?}");
        (status.code(), err)
    }

    /// Kills brokerctl (the user pressed Ctrl-C, or the terminal went away).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LoginChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of query parameter `name` in `url`.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
