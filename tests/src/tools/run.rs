//! Running one install command, with a time limit, and saying in one line
//! why it failed.

use crate::harness::run_with_timeout;
use std::process::Command;
use std::time::Duration;

/// Runs `cmd` to the end (killed after `timeout`); its stdout on success.
/// On failure: "`<command>` failed (<status>): <the line that says why>".
pub(super) fn run(mut cmd: Command, timeout: Duration) -> Result<String, String> {
    let shown = shown(&cmd);
    // Package managers ask no questions and print no nags in a test run.
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .env("npm_config_update_notifier", "false")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    let out =
        run_with_timeout(cmd, None, timeout).map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    Err(format!(
        "`{shown}` failed ({}): {}",
        out.status,
        why(&stderr).or_else(|| why(&stdout)).unwrap_or("no output")
    ))
}

/// The command as a user would type it (with its directory when it has one).
fn shown(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    let line = words.join(" ");
    match cmd.get_current_dir() {
        Some(dir) => format!("cd {} && {line}", dir.display()),
        None => line,
    }
}

/// The most telling line of a failed command's output: the network reason
/// when there is one (npm: "network request to … failed, reason: getaddrinfo
/// ENOTFOUND …"), else the first error line, else the last line.
fn why(output: &str) -> Option<&str> {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let has = |l: &&str, words: &[&str]| {
        let lower = l.to_ascii_lowercase();
        words.iter().any(|w| lower.contains(w))
    };
    let line = lines
        .iter()
        .find(|l| {
            has(
                l,
                &[
                    "reason:",
                    "network",
                    "could not resolve",
                    "temporary failure",
                ],
            )
        })
        .or_else(|| lines.iter().find(|l| has(l, &["error"])))
        .or(lines.last())?;
    Some(truncate(line, 300))
}

fn truncate(line: &str, max: usize) -> &str {
    if line.len() <= max {
        return line;
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::why;

    #[test]
    fn names_the_network_reason_before_the_first_error_line() {
        let npm = "npm error code ENOTFOUND\nnpm error syscall getaddrinfo\n\
                   npm error network request to https://registry.npmjs.org/x failed, reason: getaddrinfo ENOTFOUND registry.npmjs.org\n\
                   npm error A complete log of this run can be found in: /x.log\n";
        assert!(why(npm).unwrap().contains("reason: getaddrinfo ENOTFOUND"));
    }

    #[test]
    fn falls_back_to_the_first_error_then_the_last_line() {
        assert_eq!(
            why("WARNING: slow\nERROR: No matching distribution found for openai==9\nbye\n"),
            Some("ERROR: No matching distribution found for openai==9")
        );
        assert_eq!(why("one\ntwo\n\n"), Some("two"));
        assert_eq!(why("\n"), None);
    }
}
