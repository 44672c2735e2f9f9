//! The state journal: an append-only file of whole-state records, each made
//! durable with one `fdatasync`, compacted by an atomic rename now and then.
//!
//! Why: replacing `state.json` (temp file, `fsync`, rename, directory `fsync`)
//! costs a metadata commit of the file system twice per refresh (the in-flight
//! marker before the request, the rotated tokens before any reply). Appending
//! a record to a file whose blocks already exist costs only the data write and
//! a cache flush: about a tenth on the disk the README measures.
//!
//! Layout: an 8-byte header ([`MAGIC`]), then records, then zeros up to the
//! preallocated capacity. A record is
//!
//! ```text
//! u32 LE payload length | u64 LE sequence number | 8-byte checksum | payload
//! ```
//!
//! where the checksum is the first 8 bytes of SHA-256 over length, sequence
//! and payload, the first record's sequence number is 1 and each next one is
//! one more. The payload is the whole state as JSON (a few KiB), so the newest
//! intact record *is* the state: nothing is replayed or merged.
//!
//! Durability, step by step:
//!
//! * A file is only ever created by [`rewrite`] (compaction): header, the
//!   current state as record 1 and *written* zeros up to the capacity go into
//!   a temp file that is `fsync`ed, renamed over the journal, and the
//!   directory `fsync`ed — the [`crate::durable`] steps. From then on the
//!   file's size and block map never change: its directory entry, size and
//!   extents are on disk before any append.
//! * [`append`] writes a record into that preallocated space and calls
//!   `fdatasync`. For a file whose size and allocation do not change,
//!   `fdatasync` flushes exactly the data (and the disk's cache) and skips
//!   only timestamps, which nothing here needs; the directory is untouched.
//!   (Space reserved with `fallocate` would not be enough for that: its
//!   extents are "unwritten", and the first write to each needs a metadata
//!   commit. Zeros really written avoid it.)
//! * A record interrupted by a crash or a power cut fails its length or
//!   checksum test, and everything from it on is ignored: the state is the
//!   newest record written before it, which was durable before the broker
//!   acted on it. The next append overwrites the torn bytes.
//! * A rename-based compaction keeps the file from filling up; a crash during
//!   it leaves the old journal, complete.
//!
//! A bonus: appends go into space allocated in advance, so a state directory
//! that has become full still takes the records until the next compaction.

use crate::durable;
use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// The first bytes of every journal file (format 1).
pub const MAGIC: &[u8; 8] = b"OABJRNL1";

/// Length, sequence number and checksum in front of each payload.
pub const RECORD_HEADER: usize = 4 + 8 + 8;

/// The smallest preallocation: 16 records of a typical state fit many times.
const MIN_CAPACITY: u64 = 64 * 1024;

/// At least this many records of the current size fit a new file, so a
/// compaction happens at most every eight refreshes (two records each).
const RECORDS_PER_FILE: u64 = 16;

/// What a journal file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The newest intact record's payload; `None` if there is none.
    pub last: Option<Vec<u8>>,
    /// Its sequence number (0 when there is no record).
    pub seq: u64,
    /// Where the next record goes: the end of the newest intact record.
    pub end: u64,
    /// The file's length (its preallocated capacity).
    pub capacity: u64,
    /// Bytes after `end` that are not zeros: an interrupted append (or a
    /// corrupted record) that is ignored.
    pub torn: bool,
}

/// A file that is not a journal at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an oauth-broker state journal (unknown header)")]
pub struct NotAJournal;

/// Reads the records in `bytes` (a whole journal file) up to the first one
/// that is incomplete, fails its checksum or is out of sequence.
pub fn scan(bytes: &[u8]) -> Result<Scan, NotAJournal> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(NotAJournal);
    }
    let mut at = MAGIC.len();
    let mut last = None;
    let mut seq = 0u64;
    while let Some((payload, record_seq, next)) = record_at(bytes, at) {
        if record_seq != seq + 1 {
            break;
        }
        seq = record_seq;
        last = Some(payload);
        at = next;
    }
    let torn = bytes[at..].iter().take(RECORD_HEADER).any(|b| *b != 0);
    Ok(Scan {
        last: last.map(<[u8]>::to_vec),
        seq,
        end: at as u64,
        capacity: bytes.len() as u64,
        torn,
    })
}

/// The record starting at `at`: payload, sequence number and where the next
/// one starts; `None` when there is no intact record there.
fn record_at(bytes: &[u8], at: usize) -> Option<(&[u8], u64, usize)> {
    let header = bytes.get(at..at.checked_add(RECORD_HEADER)?)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    if len == 0 {
        return None;
    }
    let seq = u64::from_le_bytes(header[4..12].try_into().ok()?);
    let start = at + RECORD_HEADER;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    (header[12..20] == checksum(len as u32, seq, payload)).then_some((payload, seq, start + len))
}

fn checksum(len: u32, seq: u64, payload: &[u8]) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(len.to_le_bytes())
        .chain_update(seq.to_le_bytes())
        .chain_update(payload)
        .finalize();
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&digest[..8]);
    sum
}

/// One record, ready to be written.
pub fn encode(seq: u64, payload: &[u8]) -> io::Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len > 0)
        .ok_or_else(|| io::Error::other("a journal record must hold 1 byte to 4 GiB"))?;
    let mut record = Vec::with_capacity(RECORD_HEADER + payload.len());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&seq.to_le_bytes());
    record.extend_from_slice(&checksum(len, seq, payload));
    record.extend_from_slice(payload);
    Ok(record)
}

/// The capacity of a new file whose records are about `payload_len` bytes:
/// at least [`RECORDS_PER_FILE`] of them, in whole 4 KiB pages.
pub fn capacity_for(payload_len: usize) -> u64 {
    let want = MAGIC.len() as u64 + RECORDS_PER_FILE * (RECORD_HEADER + payload_len) as u64;
    want.max(MIN_CAPACITY).div_ceil(4096) * 4096
}

/// Replaces the journal at `path` with a new one holding `payload` as record
/// 1, preallocated (with written zeros) to [`capacity_for`] its size, through
/// the durable temp-file-and-rename steps. Returns the new file's [`Scan`].
pub fn rewrite(path: &Path, payload: &[u8]) -> Result<Scan, durable::DurableError> {
    let record = encode(1, payload).map_err(|source| durable::DurableError {
        path: path.to_path_buf(),
        step: durable::Step::WriteTemp,
        source,
    })?;
    let capacity = capacity_for(payload.len());
    let mut bytes = Vec::with_capacity(capacity as usize);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&record);
    bytes.resize((capacity as usize).max(bytes.len()), 0);
    durable::write(path, &bytes)?;
    Ok(Scan {
        last: Some(payload.to_vec()),
        seq: 1,
        end: (MAGIC.len() + record.len()) as u64,
        capacity: bytes.len() as u64,
        torn: false,
    })
}

/// Writes `record` at `offset` of the existing journal at `path` and makes it
/// durable with `fdatasync`. The caller checked that it fits the capacity, so
/// the file's size and allocation do not change. The file is opened anew for
/// each append (never through a symlink, never created): a journal moved
/// aside or a directory made read-only is noticed at once.
pub fn append(path: &Path, offset: u64, record: &[u8]) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("the journal is not a regular file"));
    }
    file.write_all_at(record, offset)?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal_with(payloads: &[&[u8]]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        for (i, p) in payloads.iter().enumerate() {
            bytes.extend(encode(i as u64 + 1, p).unwrap());
        }
        bytes.resize(4096, 0);
        bytes
    }

    #[test]
    fn the_newest_intact_record_is_the_state() {
        let bytes = journal_with(&[b"one", b"two", b"three"]);
        let scan = scan(&bytes).unwrap();
        assert_eq!(scan.last.as_deref(), Some(&b"three"[..]));
        assert_eq!(scan.seq, 3);
        assert_eq!(scan.end as usize, 8 + 3 * RECORD_HEADER + 3 + 3 + 5);
        assert_eq!(scan.capacity, 4096);
        assert!(!scan.torn);
    }

    #[test]
    fn a_record_cut_at_any_byte_is_ignored_and_the_previous_one_kept() {
        let full = journal_with(&[b"{\"state\":1}", b"{\"state\":2}"]);
        let second_starts = 8 + RECORD_HEADER + 11;
        let second_ends = second_starts + RECORD_HEADER + 11;
        for cut in second_starts..second_ends {
            // What a crash mid-append leaves: a prefix of the record, the
            // preallocated zeros after it.
            let mut bytes = full.clone();
            bytes[cut..second_ends].fill(0);
            let scan = scan(&bytes).unwrap();
            assert_eq!(
                scan.last.as_deref(),
                Some(&b"{\"state\":1}"[..]),
                "cut at {cut}"
            );
            assert_eq!(scan.end as usize, second_starts, "cut at {cut}");
            assert_eq!(scan.torn, cut > second_starts, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_in_the_last_record_is_detected() {
        let full = journal_with(&[b"first", b"second"]);
        let second_starts = 8 + RECORD_HEADER + 5;
        for at in second_starts..second_starts + RECORD_HEADER + 6 {
            let mut bytes = full.clone();
            bytes[at] ^= 0x04;
            let scan = scan(&bytes).unwrap();
            // A corrupted length may still end the log cleanly (a zero
            // length), but never yields a wrong state.
            assert_eq!(scan.last.as_deref(), Some(&b"first"[..]), "bit at {at}");
        }
    }

    #[test]
    fn leftovers_of_a_longer_torn_record_are_not_read_as_records() {
        // A torn long record, overwritten by a shorter one: what follows it
        // is the torn record's tail, which must end the log.
        let mut bytes = journal_with(&[b"a"]);
        let at = 8 + RECORD_HEADER + 1;
        let long = encode(2, &[b'x'; 300]).unwrap();
        bytes[at..at + 200].copy_from_slice(&long[..200]);
        let short = encode(2, b"b").unwrap();
        bytes[at..at + short.len()].copy_from_slice(&short);
        let scan = scan(&bytes).unwrap();
        assert_eq!(scan.last.as_deref(), Some(&b"b"[..]));
        assert!(scan.torn);
        // And a record out of sequence (a stale one) ends it too.
        let mut bytes = journal_with(&[b"a"]);
        let stale = encode(7, b"stale").unwrap();
        bytes[at..at + stale.len()].copy_from_slice(&stale);
        assert_eq!(
            super::scan(&bytes).unwrap().last.as_deref(),
            Some(&b"a"[..])
        );
    }

    #[test]
    fn other_files_are_not_journals() {
        assert_eq!(scan(b"{\"version\":1}"), Err(NotAJournal));
        assert_eq!(scan(b""), Err(NotAJournal));
        let empty = scan(MAGIC).unwrap();
        assert_eq!((empty.last, empty.seq, empty.end), (None, 0, 8));
    }

    #[test]
    fn rewrite_then_append_round_trips_through_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.journal");
        let first = rewrite(&path, b"one").unwrap();
        assert_eq!(first.capacity, MIN_CAPACITY);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), MIN_CAPACITY);
        append(&path, first.end, &encode(2, b"two").unwrap()).unwrap();
        let scan = scan(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(scan.last.as_deref(), Some(&b"two"[..]));
        assert_eq!(
            scan.capacity, MIN_CAPACITY,
            "an append never grows the file"
        );
        // Never created by an append.
        let missing = dir.path().join("missing");
        assert_eq!(
            append(&missing, 8, b"x").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(!missing.exists());
    }

    #[test]
    fn capacity_holds_many_records_in_whole_pages() {
        assert_eq!(capacity_for(100), MIN_CAPACITY);
        let big = capacity_for(10_000);
        assert!(big >= 16 * 10_020 && big % 4096 == 0, "{big}");
    }
}
