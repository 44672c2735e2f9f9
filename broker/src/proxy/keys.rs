//! Capability keys: what a tool presents to the proxy instead of a token.
//!
//! Why keys at all: a loopback port is reachable by every local user, and the
//! proxy spends the account's token for whoever reaches it. A key is 32 random
//! bytes shown once (`brokerctl proxy key`); the broker keeps only its SHA-256
//! (a stolen `proxy-keys.json` opens nothing), in the state directory, written
//! through `durable.rs` with mode 0600. Revoking a key takes effect at once.
//!
//! Request counts and last use are kept in memory (since the broker started):
//! writing the state directory on every proxied request would put a disk sync
//! on the hot path for a number that only `status` reads.

use crate::capped_read::{open_nonblocking, read_capped};
use crate::clock::unix_secs;
use base64::Engine as _;
use oauth_broker_proto::{ProxyKeyStatus, SecretString};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// The file name in the account's state directory.
pub const KEYS_FILE: &str = "proxy-keys.json";
/// Every issued key starts with this, so that a key found in a config file or
/// a log is recognisable (and secret scanners can match it).
pub const KEY_PREFIX: &str = "obk_";
const MAX_KEYS_FILE: u64 = 1 << 20;
const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    name: String,
    /// Hex SHA-256 of the key.
    sha256: String,
    created_at: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeysFile {
    version: u32,
    keys: Vec<StoredKey>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    requests: u64,
    last_used_at: Option<u64>,
}

#[derive(Default)]
struct Inner {
    keys: Vec<StoredKey>,
    by_hash: HashMap<String, usize>,
    usage: HashMap<String, Usage>,
}

impl Inner {
    fn index(&mut self) {
        self.by_hash = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.sha256.clone(), i))
            .collect();
    }
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Bad name.
    #[error("{0}")]
    BadName(String),
    /// Name taken.
    #[error("a proxy key named {0:?} exists already")]
    Exists(String),
    /// Unknown name.
    #[error("no proxy key is named {0:?}")]
    Unknown(String),
    /// The file could not be written or read.
    #[error("{0}")]
    Io(String),
}

impl KeyError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            KeyError::BadName(_) => None,
            KeyError::Exists(name) => Some(format!(
                "pick another --name, or `brokerctl proxy revoke {name}` first"
            )),
            KeyError::Unknown(_) => Some("`brokerctl status` lists the keys".to_string()),
            KeyError::Io(_) => Some("check the state directory (free space, permissions)".into()),
        }
    }
}

/// The account's proxy keys.
///
/// Two locks, because `admit` runs on every proxied request: `inner` is held
/// only for lookups and for swapping a new list in; `writer` serialises
/// `issue`/`revoke`, which hold it across the file write (an fsync, possibly
/// slow) so that no request waits for the disk.
pub struct KeyStore {
    path: PathBuf,
    inner: Mutex<Inner>,
    writer: Mutex<()>,
}

/// Hex SHA-256 of a presented key.
fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl KeyStore {
    /// Loads `<state_dir>/proxy-keys.json` (none yet: no keys). Refuses a file
    /// that others can read or write.
    pub fn load(state_dir: &Path) -> anyhow::Result<KeyStore> {
        let path = state_dir.join(KEYS_FILE);
        let mut inner = Inner::default();
        match open_nonblocking(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
            Ok(file) => {
                let meta = file.metadata()?;
                if meta.permissions().mode() & 0o077 != 0 {
                    anyhow::bail!(
                        "{} is accessible by group or others; run `chmod 600 {}`",
                        path.display(),
                        path.display()
                    );
                }
                let bytes = read_capped(&file, MAX_KEYS_FILE)?.ok_or_else(|| {
                    anyhow::anyhow!(
                        "{} is larger than 1 MiB; it is not a key file",
                        path.display()
                    )
                })?;
                let parsed: KeysFile = serde_json::from_slice(&bytes).map_err(|e| {
                    anyhow::anyhow!(
                        "{} is not a proxy key file ({e}); move it away (its keys stop working) and issue new ones",
                        path.display()
                    )
                })?;
                inner.keys = parsed.keys;
            }
        }
        inner.index();
        Ok(KeyStore {
            path,
            inner: Mutex::new(inner),
            writer: Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored keys now (a copy; only a holder of `writer` changes them).
    fn keys(&self) -> Vec<StoredKey> {
        self.lock().keys.clone()
    }

    /// Swaps `keys` in (after they were saved), forgetting the use of a
    /// revoked key.
    fn install(&self, keys: Vec<StoredKey>, revoked: Option<&str>) {
        let mut inner = self.lock();
        inner.keys = keys;
        inner.index();
        if let Some(name) = revoked {
            inner.usage.remove(name);
        }
    }

    fn save(&self, keys: &[StoredKey]) -> Result<(), KeyError> {
        let file = KeysFile {
            version: 1,
            keys: keys.to_vec(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| KeyError::Io(e.to_string()))?;
        crate::durable::write(&self.path, &bytes)
            .map(|_| ())
            .map_err(|e| KeyError::Io(format!("cannot write {}: {e}", self.path.display())))
    }

    /// Issues a new key named `name` (or `key-N`); the key itself is returned
    /// once and never stored.
    pub fn issue(&self, name: Option<&str>) -> Result<(String, SecretString), KeyError> {
        let _writing = self.write_lock();
        let mut keys = self.keys();
        let name = match name {
            Some(n) => {
                let ok = !n.is_empty()
                    && n.len() <= MAX_NAME_LEN
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !ok {
                    return Err(KeyError::BadName(format!(
                        "proxy key name {n:?} is not 1-{MAX_NAME_LEN} letters, digits, '-', '_' or '.'"
                    )));
                }
                n.to_string()
            }
            None => (1..)
                .map(|i| format!("key-{i}"))
                .find(|n| keys.iter().all(|k| &k.name != n))
                .expect("an unused name"),
        };
        if keys.iter().any(|k| k.name == name) {
            return Err(KeyError::Exists(name));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let key = format!(
            "{KEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        keys.push(StoredKey {
            name: name.clone(),
            sha256: hash(&key),
            created_at: unix_secs(SystemTime::now()),
        });
        self.save(&keys)?;
        self.install(keys, None);
        Ok((name, SecretString::from(key)))
    }

    /// Revokes the key named `name`.
    pub fn revoke(&self, name: &str) -> Result<(), KeyError> {
        let _writing = self.write_lock();
        let mut keys = self.keys();
        if !keys.iter().any(|k| k.name == name) {
            return Err(KeyError::Unknown(name.to_string()));
        }
        keys.retain(|k| k.name != name);
        self.save(&keys)?;
        self.install(keys, Some(name));
        Ok(())
    }

    /// The name of the key `presented`, counting the use; `None` for a key the
    /// broker did not issue (or revoked).
    pub fn admit(&self, presented: &str) -> Option<String> {
        let h = hash(presented);
        let mut inner = self.lock();
        let i = *inner.by_hash.get(&h)?;
        let name = inner.keys[i].name.clone();
        let usage = inner.usage.entry(name.clone()).or_default();
        usage.requests += 1;
        usage.last_used_at = Some(unix_secs(SystemTime::now()));
        Some(name)
    }

    /// Whether any key exists.
    pub fn is_empty(&self) -> bool {
        self.lock().keys.is_empty()
    }

    /// The keys, for `status` (names and counts; never a key or its hash).
    pub fn status(&self) -> Vec<ProxyKeyStatus> {
        let inner = self.lock();
        inner
            .keys
            .iter()
            .map(|k| {
                let usage = inner.usage.get(&k.name).copied().unwrap_or_default();
                ProxyKeyStatus {
                    name: k.name.clone(),
                    created_at: k.created_at,
                    requests: usage.requests,
                    last_used_at: usage.last_used_at,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_proto::ExposeSecret;

    #[test]
    fn issue_admit_revoke_persist() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::load(dir.path()).unwrap();
        let (name, key) = store.issue(None).unwrap();
        assert_eq!(name, "key-1");
        let key = key.expose_secret().to_string();
        assert!(key.starts_with(KEY_PREFIX));
        let (named, other) = store.issue(Some("codex")).unwrap();
        assert_eq!(named, "codex");
        assert!(matches!(
            store.issue(Some("codex")),
            Err(KeyError::Exists(_))
        ));
        assert!(matches!(
            store.issue(Some("a b")),
            Err(KeyError::BadName(_))
        ));
        assert_eq!(store.admit(&key).as_deref(), Some("key-1"));
        assert_eq!(store.admit("obk_nope"), None);
        let text = std::fs::read_to_string(dir.path().join(KEYS_FILE)).unwrap();
        assert!(!text.contains(&key), "only the hash is stored");
        let mode = std::fs::metadata(dir.path().join(KEYS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let status = store.status();
        assert_eq!(status[0].requests, 1);
        assert!(status[0].last_used_at.is_some());
        // Reloaded: the same keys work.
        let again = KeyStore::load(dir.path()).unwrap();
        assert_eq!(again.admit(other.expose_secret()).as_deref(), Some("codex"));
        again.revoke("key-1").unwrap();
        assert_eq!(again.admit(&key), None);
        assert!(matches!(again.revoke("key-1"), Err(KeyError::Unknown(_))));
        assert_eq!(KeyStore::load(dir.path()).unwrap().status().len(), 1);
    }

    #[test]
    fn requests_are_admitted_while_a_key_file_write_is_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(KeyStore::load(dir.path()).unwrap());
        let (_, key) = store.issue(Some("tool")).unwrap();
        // A writer (issue/revoke) holds its lock across the fsync.
        let writing = store.write_lock();
        let other = store.clone();
        let key = key.expose_secret().to_string();
        let admitted = std::thread::spawn(move || (other.admit(&key), other.status().len()));
        let (name, listed) = admitted.join().unwrap();
        assert_eq!(
            name.as_deref(),
            Some("tool"),
            "admit did not wait for the disk"
        );
        assert_eq!(listed, 1);
        drop(writing);
        store.revoke("tool").unwrap();
        assert!(store.is_empty());
    }
}
