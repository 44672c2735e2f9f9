//! The record of what the state directory could not take: which refresh
//! tokens were spent (or may be at the server right now) while `state.json`
//! could not be written.
//!
//! Why a second file, elsewhere: when the state directory is full or
//! read-only, the state file keeps naming a refresh token the provider has
//! already rotated (or may have). A broker started on that file would spend it
//! again, and a strict provider answers that reuse by revoking the whole
//! token family. So every failed state write leaves this small record beside
//! the socket, in `$XDG_RUNTIME_DIR` (a tmpfs that is writable when the state
//! disk is not; it survives a broker restart, not a reboot). It holds
//! fingerprints and times only, never a token. Every successful state write
//! removes it: the state file is then complete again.

use crate::store::InFlightMarker;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// Larger files are not a record of ours: ignored.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// What a failed state write could not record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeRecord {
    /// Format version.
    pub version: u32,
    /// The account it belongs to.
    pub account: String,
    /// Fingerprints of refresh tokens the broker has spent (the provider
    /// rotated them), the one still named by `state.json` among them.
    #[serde(default)]
    pub spent_refresh_tokens: Vec<String>,
    /// A refresh whose request may be at the server, if its marker could not
    /// go into `state.json`.
    #[serde(default)]
    pub refresh_in_flight: Option<InFlightMarker>,
}

/// Where the record lives: beside the socket, named after it.
#[derive(Debug, Clone)]
pub struct RuntimeRecordFile {
    path: PathBuf,
}

impl RuntimeRecordFile {
    /// The record beside `socket` (`<dir>/<name>.unsaved.json`).
    pub fn beside_socket(socket: &Path) -> RuntimeRecordFile {
        RuntimeRecordFile {
            path: socket.with_extension("unsaved.json"),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the record of `account`; `None` if there is none (or it is not
    /// ours, unreadable or too large — then it is logged and ignored: it can
    /// only make the broker more careful, never less).
    pub fn load(&self, account: &str) -> Option<RuntimeRecord> {
        let file = match fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the record of unsaved refreshes");
                return None;
            }
        };
        let bytes = match crate::capped_read::read_capped(file, MAX_RECORD_BYTES) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                tracing::warn!(path = %self.path.display(), "ignoring an oversized record of unsaved refreshes");
                return None;
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the record of unsaved refreshes");
                return None;
            }
        };
        match serde_json::from_slice::<RuntimeRecord>(&bytes) {
            Ok(record) if record.account == account => Some(record),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "ignoring an unreadable record of unsaved refreshes");
                None
            }
        }
    }

    /// Replaces the record (the broker's one durable write, mode 0600).
    pub fn save(&self, record: &RuntimeRecord) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        crate::durable::write(&self.path, &bytes).map_err(|e| e.into_io())
    }

    /// Removes the record: the state file is complete again.
    pub fn clear(&self) {
        match fs::remove_file(&self.path) {
            Ok(()) => {
                tracing::debug!("state file complete again; record of unsaved refreshes removed")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the record of unsaved refreshes")
            }
        }
    }
}
