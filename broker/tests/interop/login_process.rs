//! [`LoginProcess`]: a running `brokerctl relogin … --json` whose JSON lines
//! the test reads one event at a time.
//!
//! Why streaming: the test has to act on the first event (approve the user
//! code, or open the authorize URL) while brokerctl is still waiting for the
//! broker to finish, exactly as a person would. Every wait has a time limit,
//! and `Drop` kills the process so a failing test leaves nothing running.

use serde_json::Value;
use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running login.
pub struct LoginProcess {
    child: Child,
    events: mpsc::Receiver<Value>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl LoginProcess {
    /// Starts `cmd` (a `brokerctl … relogin --json` command).
    pub fn start(mut cmd: Command) -> LoginProcess {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn brokerctl relogin");
        let (tx, events) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let out = child.stdout.take().unwrap();
            let lines = Arc::clone(&stdout);
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line.clone());
                    if let Ok(value) = serde_json::from_str::<Value>(&line) {
                        let _ = tx.send(value);
                    }
                }
            });
        }
        {
            let mut err = child.stderr.take().unwrap();
            let text = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = String::new();
                let _ = err.read_to_string(&mut buf);
                text.lock().unwrap().push_str(&buf);
            });
        }
        LoginProcess {
            child,
            events,
            stdout,
            stderr,
        }
    }

    /// The next JSON event, within `timeout`; fails with everything brokerctl
    /// printed when none comes.
    pub fn next_event(&mut self, timeout: Duration) -> Value {
        match self.events.recv_timeout(timeout) {
            Ok(event) => event,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.wait(Duration::from_secs(5));
                // Let the stderr drain thread catch up before reporting.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "brokerctl relogin exited ({status}) without a further event:\nstdout:\n{}\nstderr:\n{}",
                    self.stdout_text(),
                    self.stderr_text()
                )
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "brokerctl relogin printed no further event within {timeout:?}:\nstdout:\n{}\nstderr:\n{}",
                self.stdout_text(),
                self.stderr_text()
            ),
        }
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "brokerctl relogin did not exit within {timeout:?}:\nstdout:\n{}\nstderr:\n{}",
                    self.stdout_text(),
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// All stdout lines so far.
    pub fn stdout_text(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// All of stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for LoginProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
