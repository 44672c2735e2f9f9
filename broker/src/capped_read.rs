//! Reading a whole file with a size cap.
//!
//! Why: every file the broker reads is small (a config, a state file, a
//! secret), but the path comes from the user or the disk: `--config /dev/zero`
//! or a 200 MB file must end in a clear error, not in memory exhaustion.
//! Likewise `--config` naming a named pipe must end in an error, not in a
//! broker that hangs at start: [`open_nonblocking`].

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Opens `path` for reading without blocking on a FIFO (`open(2)` of a named
/// pipe waits for a writer: the broker would hang at start). Errs, naming
/// the kind, when the path is a FIFO or a socket: neither is a file to read
/// a config or a secret from.
pub fn open_nonblocking(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_fifo() || kind.is_socket() {
        let what = if kind.is_fifo() {
            "named pipe"
        } else {
            "socket"
        };
        return Err(io::Error::other(format!("it is a {what}, not a file")));
    }
    Ok(file)
}

/// Reads `reader` to its end; `None` when it holds more than `cap` bytes (at
/// most `cap + 1` bytes are ever read).
pub fn read_capped(reader: impl Read, cap: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= cap).then_some(bytes))
}

/// `cap` for messages: "1 MiB", "64 KiB", "100 bytes".
pub fn describe_cap(cap: u64) -> String {
    match cap {
        c if c >= 1 << 20 && c % (1 << 20) == 0 => format!("{} MiB", c >> 20),
        c if c >= 1 << 10 && c % (1 << 10) == 0 => format!("{} KiB", c >> 10),
        c => format!("{c} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_cap_and_refuses_more() {
        assert_eq!(read_capped(&b"abc"[..], 3).unwrap(), Some(b"abc".to_vec()));
        assert_eq!(read_capped(&b"abcd"[..], 3).unwrap(), None);
        // An endless source stops right after the cap.
        assert_eq!(read_capped(io::repeat(0), 1024).unwrap(), None);
    }

    #[test]
    fn a_named_pipe_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = open_nonblocking(&fifo).unwrap_err();
        assert!(err.to_string().contains("named pipe"), "{err}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(open_nonblocking(&file).is_ok());
    }

    #[test]
    fn caps_are_described_for_humans() {
        assert_eq!(describe_cap(1 << 20), "1 MiB");
        assert_eq!(describe_cap(64 << 10), "64 KiB");
        assert_eq!(describe_cap(100), "100 bytes");
    }
}
