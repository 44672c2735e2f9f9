//! Log lines that read well in the journal.
//!
//! Under systemd stderr is a stream into journald, which stamps every line
//! itself: a timestamp of our own would appear twice in `journalctl`. And
//! journald reads a `<N>` syslog-priority prefix at the start of a line, so with
//! it `journalctl -p warning --user -u oauth-broker` shows warnings and errors
//! only. Whether stderr really is the journal is decided the way `systemd.exec(5)`
//! recommends: `JOURNAL_STREAM` names the device and inode of the stream, which
//! must match stderr (a shell started from a unit inherits the variable while its
//! stderr may go elsewhere).

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// True when stderr is connected to journald (see the module docs).
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    // dev_t and ino_t are not u64 on every Unix.
    #[allow(clippy::unnecessary_cast)]
    let (dev, ino) = (stat.st_dev as u64, stat.st_ino as u64);
    matches_stream(&value.to_string_lossy(), dev, ino)
}

/// `JOURNAL_STREAM` is `<device>:<inode>` in decimal.
fn matches_stream(journal_stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = journal_stream.split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// Wraps an event format and puts the syslog priority in front of each line.
#[derive(Debug, Clone)]
pub struct JournalPriority<F> {
    inner: F,
}

impl<F> JournalPriority<F> {
    /// Prefixes the lines `inner` formats.
    pub fn new(inner: F) -> Self {
        JournalPriority { inner }
    }
}

/// `sd-daemon(3)` priorities: error 3, warning 4, info 6, debug and trace 7.
/// Notice (5) is unused: tracing has no such level.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.inner.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(matches_stream("2049:123456", 2049, 123_456));
        assert!(!matches_stream("2049:123456", 2049, 1));
        assert!(!matches_stream("1:123456", 2049, 123_456));
        assert!(!matches_stream("", 0, 0));
        assert!(!matches_stream("garbage", 0, 0));
    }

    #[test]
    fn priorities_follow_sd_daemon() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
        assert_eq!(priority(&Level::TRACE), 7);
    }
}
