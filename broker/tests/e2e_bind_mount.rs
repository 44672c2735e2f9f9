//! Projection into a file that a container bind-mounts on its own: a real
//! single-file bind mount in a private mount namespace (the container's
//! view), read from inside while the broker rewrites the file.
//!
//! * The writer, driven directly as in the projection unit tests, rewrites the
//!   file 1,000 times in place while a reader inside the namespace reads it
//!   100,000 times: no read is unparseable or holds a token that was never
//!   written, and the reader sees every rewrite. With the default rename, the
//!   same mount shows the old token forever.
//! * The real brokerd with `write = "in-place"`: the container side follows
//!   every refresh.
//! * The real brokerd whose target *is* a bind mount in its own namespace
//!   switches to in-place writes by itself, says so once in its log and shows
//!   it in `status`: told by the mount ids where it can read them, and, in a
//!   namespace without procfs where it cannot, by the rename onto the mount
//!   point failing with `EBUSY` (a reader in that namespace follows every
//!   rewrite).
//!
//! Mount namespaces need CAP_SYS_ADMIN: CI runs these tests as root.

use crate::common::*;
use base64::Engine;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use oauth_broker::config::WriteMode;
use oauth_broker::credentials::Credentials;
use oauth_broker::manager::ServedToken;
use oauth_broker::projection::codex::Codex;
use oauth_broker::projection::target::{Synced, Target};
use oauth_broker_tests::harness::Backoff;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Runs `body` on a thread of its own inside a fresh mount namespace (what a
/// container runtime gives a container) where `host_file` is bind-mounted
/// over `mount_at`: the container's single-file volume. The mount exists only
/// in that namespace and ends with the thread.
fn in_container<T: Send + 'static>(
    host_file: &Path,
    mount_at: &Path,
    body: impl FnOnce(&Path) -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    fs::write(mount_at, b"").unwrap();
    let (host_file, mount_at) = (host_file.to_path_buf(), mount_at.to_path_buf());
    std::thread::spawn(move || {
        // A thread may enter a mount namespace of its own (CLONE_NEWNS does
        // not need a single-threaded process, unlike a user namespace).
        unshare(CloneFlags::CLONE_NEWNS)
            .expect("unshare(CLONE_NEWNS) needs root (CI runs the suite as root)");
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .expect("make the namespace's mounts private");
        mount(
            Some(&host_file),
            &mount_at,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind-mount the file");
        body(&mount_at)
    })
}

fn jwt(payload: Value) -> String {
    let enc = |v: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    format!("{}.{}.c2ln", enc(json!({"alg": "none"})), enc(payload))
}

/// The `n`th token of the writer test, a ChatGPT-style JWT login as Codex
/// needs it. Lengths vary with `n`, so rewrites shrink and grow the content.
fn token(n: usize) -> ServedToken {
    let now = SystemTime::now();
    let exp = oauth_broker::clock::unix_secs(now) + 3600;
    let auth = json!({"chatgpt_account_id": "acct-1"});
    let jti = format!("{n}-{}", "x".repeat(n % 97));
    ServedToken::new(&Credentials {
        access_token: Some(
            jwt(json!({"sub": "user-1", "exp": exp, "jti": jti, "https://api.openai.com/auth": auth}))
                .into(),
        ),
        expires_at: Some(now + Duration::from_secs(3600)),
        obtained_at: now,
        obtained_boot: None,
        refresh_token: "broker-refresh-token".to_string().into(),
        id_token: Some(jwt(json!({"sub": "user-1", "https://api.openai.com/auth": auth})).into()),
        token_type: "Bearer".into(),
        scopes: vec![],
        account_id: Some("acct-1".into()),
        metadata: Default::default(),
        refresh_hint_at: None,
    })
    .unwrap()
}

fn access_token_of(bytes: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    value
        .pointer("/tokens/access_token")?
        .as_str()
        .map(str::to_string)
}

/// What the reader inside the namespace counted.
#[derive(Debug, Default)]
struct Reads {
    total: usize,
    unparseable: usize,
    /// Parsed, but holding a token the writer never wrote (a torn mix).
    unknown_token: usize,
    /// Distinct rewrites seen.
    seen: usize,
    last: Option<usize>,
}

#[test]
fn in_place_rewrites_are_never_torn_and_a_single_file_bind_mount_sees_every_one() {
    const REWRITES: usize = 1000;
    const READS: usize = 100_000;
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    fs::create_dir(&host).unwrap();
    let host_file = host.join("auth.json");
    let target =
        Target::new(Box::new(Codex), host_file.clone(), None).with_write_mode(WriteMode::InPlace);
    let now = SystemTime::now();
    let tokens: Vec<ServedToken> = (0..=REWRITES).map(token).collect();
    let index: Arc<HashMap<String, usize>> = Arc::new(
        tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                use oauth_broker_client::proto::ExposeSecret;
                (t.access_token().expose_secret().to_string(), i)
            })
            .collect(),
    );
    assert_eq!(target.sync(&tokens[0], now).unwrap(), Synced::Written);
    let inode = fs::metadata(&host_file).map(|m| std::os::unix::fs::MetadataExt::ino(&m));

    let latest_seen = Arc::new(AtomicUsize::new(0));
    let reads_done = Arc::new(AtomicUsize::new(0));
    let writer_done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (index, latest_seen, reads_done, writer_done) = (
            index.clone(),
            latest_seen.clone(),
            reads_done.clone(),
            writer_done.clone(),
        );
        in_container(
            &host_file,
            &tmp.path().join("container-auth.json"),
            move |file| {
                let mut reads = Reads::default();
                let mut seen = vec![false; REWRITES + 1];
                while reads.total < READS || !writer_done.load(Ordering::SeqCst) {
                    let bytes = fs::read(file).expect("read the bind-mounted file");
                    reads.total += 1;
                    reads_done.store(reads.total, Ordering::SeqCst);
                    let Some(token) = access_token_of(&bytes) else {
                        reads.unparseable += 1;
                        continue;
                    };
                    let Some(&n) = index.get(&token) else {
                        reads.unknown_token += 1;
                        continue;
                    };
                    if !seen[n] {
                        seen[n] = true;
                        reads.seen += 1;
                    }
                    reads.last = Some(n);
                    latest_seen.fetch_max(n, Ordering::SeqCst);
                }
                reads
            },
        )
    };

    // The reader has read the first version before any rewrite; each rewrite
    // then waits until the reader saw it and read about READS / REWRITES
    // times since, so the reads are spread over all rewrites.
    let wait_reader = |n: usize, reads: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while latest_seen.load(Ordering::SeqCst) < n || reads_done.load(Ordering::SeqCst) < reads {
            assert!(
                std::time::Instant::now() < deadline,
                "the reader in the mount namespace never saw rewrite {n}"
            );
            std::thread::yield_now();
        }
    };
    wait_reader(0, 1);
    for (n, token) in tokens.iter().enumerate().skip(1) {
        assert_eq!(target.sync(token, now).unwrap(), Synced::Written);
        wait_reader(n, n * READS / REWRITES);
    }
    writer_done.store(true, Ordering::SeqCst);
    let reads = reader.join().expect("reader thread");
    eprintln!("in-place rewrites {REWRITES}, reads from inside the mount namespace: {reads:?}");
    assert!(reads.total >= READS, "{reads:?}");
    assert_eq!(reads.unparseable, 0, "{reads:?}");
    assert_eq!(reads.unknown_token, 0, "torn reads: {reads:?}");
    assert_eq!(reads.seen, REWRITES + 1, "{reads:?}");
    assert_eq!(reads.last, Some(REWRITES), "{reads:?}");
    // One inode throughout, no temp file, mode 0600.
    let meta = fs::metadata(&host_file).unwrap();
    assert_eq!(
        Ok(std::os::unix::fs::MetadataExt::ino(&meta)),
        inode.map_err(|e| e.kind())
    );
    assert_eq!(mode(&host_file), 0o600);
    assert_eq!(fs::read_dir(&host).unwrap().count(), 1);
    let status = target.status();
    assert_eq!(status.write.as_deref(), Some("in-place"));
    assert_eq!(status.write_reason.as_deref(), Some("configured"));
}

/// The failure the in-place mode exists for: replaced by rename, the file
/// is a new inode that the container's mount never shows.
#[test]
fn with_the_default_rename_a_single_file_bind_mount_keeps_the_old_token() {
    let tmp = tempfile::tempdir().unwrap();
    let host_file = tmp.path().join("auth.json");
    let target = Target::new(Box::new(Codex), host_file.clone(), None);
    let now = SystemTime::now();
    target.sync(&token(1), now).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (mounted_tx, mounted_rx) = std::sync::mpsc::channel::<()>();
    let reader = in_container(&host_file, &tmp.path().join("mounted.json"), move |file| {
        let before = access_token_of(&fs::read(file).unwrap());
        mounted_tx.send(()).unwrap();
        rx.recv().unwrap();
        (before, access_token_of(&fs::read(file).unwrap()))
    });
    // The mount is made (and read) before the broker rewrites the file.
    mounted_rx.recv().expect("the reader mounted the file");
    // The broker's namespace does not see the container's mount: rename.
    assert_eq!(target.sync(&token(2), now).unwrap(), Synced::Written);
    assert_eq!(target.status().write.as_deref(), Some("rename"));
    tx.send(()).unwrap();
    let (before, after) = reader.join().unwrap();
    let host_now = access_token_of(&fs::read(&host_file).unwrap());
    assert_ne!(host_now, before);
    assert_eq!(after, before, "the mount showed the renamed file");
}

fn codex_in_place_toml() -> &'static str {
    "[[project]]\nkind = \"codex\"\npath = \"{root}/host/auth.json\"\nrefresh_margin_secs = 0\nwrite = \"in-place\"\n"
}

/// Waits until the file at `path` holds the broker's current token, and one
/// other than `previous`.
fn wait_file_current(p: &Broker, path: &Path, previous: Option<&str>) -> String {
    Backoff::new(Duration::from_secs(20))
        .until(|| {
            let token = access_token_of(&fs::read(path).ok()?)?;
            let fresh = previous != Some(token.as_str());
            (fresh && fingerprint(&token) == p.current_token_id()).then_some(token)
        })
        .unwrap_or_else(|| {
            panic!(
                "{} never held the broker's current token; status {:?}\nlogs:\n{}",
                path.display(),
                p.status().projections,
                p.logs()
            )
        })
}

#[test]
fn brokerd_writing_in_place_feeds_a_single_file_bind_mount_through_refreshes() {
    // Tokens live 4 s: the reader inside has about 3 s to see each one
    // before the broker's next refresh replaces it.
    let p = Broker::builder()
        .fake(jwt_fake(Duration::from_secs(4)))
        .extra_toml(codex_in_place_toml())
        .logged_in();
    let host_file = p.env.path("host/auth.json");
    wait_file_current(&p, &host_file, None);
    let status = p.target_status(&host_file);
    assert_eq!(status.write.as_deref(), Some("in-place"));
    assert_eq!(status.write_reason.as_deref(), Some("configured"));
    let container_file = p.env.path("container-auth.json");
    let (tx, rx) = std::sync::mpsc::channel::<Option<String>>();
    let (answers_tx, answers_rx) = std::sync::mpsc::channel::<String>();
    // Inside: wait for each token the test names, reading the mounted file.
    let reader = in_container(&host_file, &container_file, move |file| {
        while let Ok(Some(expected)) = rx.recv() {
            let got = Backoff::new(Duration::from_secs(20)).until(|| {
                let token = access_token_of(&fs::read(file).ok()?)?;
                (fingerprint(&token) == expected).then_some(token)
            });
            let _ = answers_tx.send(got.map_or_else(|| "never".into(), |t| fingerprint(&t)));
        }
    });
    let mut previous: Option<String> = None;
    for _ in 0..3 {
        let token = wait_file_current(&p, &host_file, previous.as_deref());
        tx.send(Some(fingerprint(&token))).unwrap();
        assert_eq!(
            answers_rx.recv().unwrap(),
            fingerprint(&token),
            "the container never saw the broker's token"
        );
        previous = Some(token);
    }
    tx.send(None).unwrap();
    reader.join().unwrap();
    assert!(p.fake.stats().refresh_requests >= 2);
}

/// A wrapper that starts brokerd in a mount namespace of its own where
/// `target` is a bind mount of `source`: what the broker finds when the file
/// it should write is a single-file volume in its own view. With
/// `mask_proc`, an empty read-only tmpfs covers `/proc` in that namespace (a
/// sandbox without procfs), so the broker cannot read mount ids there.
fn brokerd_with_bind_mount(dir: &Path, source: &Path, target: &Path, mask_proc: bool) -> PathBuf {
    let wrapper = dir.join("brokerd-in-mount-ns");
    let mask = if mask_proc {
        "mount -t tmpfs -o ro,size=4k no-proc /proc || exit 71; "
    } else {
        ""
    };
    let script = format!(
        "#!/bin/sh\nexec unshare --mount --propagation private -- sh -c 'mount --bind \"$1\" \"$2\" || exit 70; {mask}shift 2; exec \"$@\"' sh '{}' '{}' '{}' \"$@\"\n",
        source.display(),
        target.display(),
        brokerd().display()
    );
    fs::write(&wrapper, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

#[test]
fn brokerd_switches_to_in_place_when_its_target_is_a_mount_point() {
    let env = oauth_broker_tests::harness::TestEnv::new();
    let source = env.path("volume-auth.json");
    let target = env.path("codex-home/auth.json");
    fs::create_dir(env.path("codex-home")).unwrap();
    fs::write(&source, b"{}").unwrap();
    fs::write(&target, b"").unwrap();
    let wrapper = brokerd_with_bind_mount(env.root(), &source, &target, false);
    let p = Broker::builder()
        .test_env(env)
        .brokerd(wrapper)
        .fake(jwt_fake(Duration::from_secs(2)))
        .extra_toml(
            "[[project]]\nkind = \"codex\"\npath = \"{root}/codex-home/auth.json\"\nrefresh_margin_secs = 0\n",
        )
        .logged_in();
    // Written through the mount: the volume's own inode holds every token.
    let mut previous = None;
    for _ in 0..2 {
        previous = Some(wait_file_current(&p, &source, previous.as_deref()));
    }
    let status = p.target_status(&target);
    assert_eq!(status.write.as_deref(), Some("in-place"), "{status:?}");
    let reason = status.write_reason.clone().unwrap_or_default();
    assert!(reason.contains("mount point"), "{status:?}");
    assert_eq!(status.last_error, None);
    // Logged once, however many rewrites followed.
    let logs = p.logs();
    assert_eq!(
        logs.matches("writing this projection target in place from now on")
            .count(),
        1,
        "{logs}"
    );
    // brokerctl status shows it too, in words and in JSON.
    let out = p.ctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("in place (the file is a mount point"),
        "{text}"
    );
    let out = p.ctl(&["status", "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["projections"][0]["write"], "in-place");
}

/// Runs `body` on a thread of its own that has joined the mount namespace of
/// process `pid`: a reader that sees that process's mounts.
fn in_mount_namespace_of<T: Send + 'static>(
    pid: u32,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = fs::File::open(format!("/proc/{pid}/ns/mnt")).expect("the broker's mount namespace");
    std::thread::spawn(move || {
        // setns(CLONE_NEWNS) refuses a thread that shares its root and
        // working directory with the process's other threads.
        unshare(CloneFlags::CLONE_FS).expect("unshare(CLONE_FS)");
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWNS)
            .expect("joining the broker's mount namespace needs root (CI runs the suite as root)");
        body()
    })
}

/// What the reader in the broker's mount namespace found.
#[derive(Debug, Default)]
struct Followed {
    /// Fingerprints of the access tokens read, each change once, in order.
    tokens: Vec<String>,
    reads: usize,
    unparseable: usize,
    /// Parsed, but without the broker's access token after it had one.
    tokenless: usize,
}

/// The second way the switch fires, for real: the broker's target is a
/// single-file bind mount, but its namespace has no procfs (an empty tmpfs
/// over `/proc`, as in a minimal sandbox), so the mount ids that tell a mount
/// point are unreadable and `is_mount_point` cannot say. Only the rename
/// onto the mount point, refused with `EBUSY`, shows it.
///
/// (`EXDEV` cannot come from this rename: the temp file is made in the
/// target's own directory, and the kernel's cross-mount check compares the
/// mounts of the two parent directories, which are one; a file mounted over
/// the target is refused with `EBUSY`.)
#[test]
fn brokerd_switches_to_in_place_when_a_rename_onto_its_target_fails_with_ebusy() {
    let env = oauth_broker_tests::harness::TestEnv::new();
    let source = env.path("volume-auth.json");
    let target = env.path("codex-home/auth.json");
    fs::create_dir(env.path("codex-home")).unwrap();
    fs::write(&source, b"{}").unwrap();
    // The mount point, as this (the host's) namespace keeps seeing it.
    fs::write(&target, b"").unwrap();
    let wrapper = brokerd_with_bind_mount(env.root(), &source, &target, true);
    let p = Broker::builder()
        .test_env(env)
        .brokerd(wrapper)
        // Each token stays in the file for seconds: the reader, polling every
        // few milliseconds, has ample time to see it.
        .fake(jwt_fake(Duration::from_secs(4)))
        .extra_toml(
            "[[project]]\nkind = \"codex\"\npath = \"{root}/codex-home/auth.json\"\nrefresh_margin_secs = 0\n",
        )
        .logged_in();

    // A reader in the broker's own mount namespace, at the target's path.
    const REWRITES: usize = 3;
    let followed = Arc::new(std::sync::Mutex::new(Followed::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (followed, stop, source, target) = (
            followed.clone(),
            stop.clone(),
            source.clone(),
            target.clone(),
        );
        in_mount_namespace_of(p.broker.pid(), move || {
            use std::os::unix::fs::MetadataExt;
            // What the broker sees: no procfs, and the target is the volume.
            assert!(
                !Path::new("/proc/self").exists(),
                "/proc is masked in the broker's namespace"
            );
            assert_eq!(
                fs::metadata(&target).unwrap().ino(),
                fs::metadata(&source).unwrap().ino(),
                "the target is a bind mount of the volume here"
            );
            while !stop.load(Ordering::SeqCst) {
                let bytes = fs::read(&target).expect("read the bind-mounted file");
                let mut f = followed.lock().unwrap();
                f.reads += 1;
                let file = serde_json::from_slice::<Value>(&bytes);
                match file
                    .as_ref()
                    .map(|v| v.pointer("/tokens/access_token").and_then(Value::as_str))
                {
                    Err(_) => f.unparseable += 1,
                    Ok(Some(token)) => {
                        let id = fingerprint(token);
                        if f.tokens.last() != Some(&id) {
                            f.tokens.push(id);
                        }
                    }
                    // The volume's `{}` (grown with spaces by the first
                    // in-place write) until the broker's login lands.
                    Ok(None) if f.tokens.is_empty() && file.as_ref().ok() == Some(&json!({})) => {}
                    Ok(None) => f.tokenless += 1,
                }
                drop(f);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let enough = Backoff::new(Duration::from_secs(30))
        .until(|| (followed.lock().unwrap().tokens.len() > REWRITES).then_some(()));
    stop.store(true, Ordering::SeqCst);
    reader
        .join()
        .expect("the reader in the broker's mount namespace");
    let followed = std::mem::take(&mut *followed.lock().unwrap());
    assert!(
        enough.is_some(),
        "the reader saw {followed:?}; status {:?}\nlogs:\n{}",
        p.status().projections,
        p.logs()
    );

    // Every token the server issued from the first one the reader saw up to
    // its last, in order: the reader inside followed every rewrite.
    let issued: Vec<String> = p
        .fake
        .access_tokens_in_issue_order()
        .iter()
        .map(|t| fingerprint(t))
        .collect();
    let first = issued
        .iter()
        .position(|t| *t == followed.tokens[0])
        .expect("the reader saw a token the server issued");
    assert_eq!(
        issued[first..].get(..followed.tokens.len()),
        Some(&followed.tokens[..]),
        "the reader missed a rewrite: {followed:?}"
    );
    assert_eq!(followed.unparseable, 0, "{followed:?}");
    assert_eq!(followed.tokenless, 0, "{followed:?}");

    // The rename was what told: the reason names the refusal, not a mount.
    let status = p.target_status(&target);
    assert_eq!(status.write.as_deref(), Some("in-place"), "{status:?}");
    let reason = status.write_reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("a rename onto it failed") && reason.contains("os error 16"),
        "{status:?}"
    );
    assert_eq!(status.last_error, None);
    // Logged once, however many rewrites followed.
    let logs = p.logs();
    assert_eq!(
        logs.matches("writing this projection target in place from now on")
            .count(),
        1,
        "{logs}"
    );
    let out = p.ctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("in place (a rename onto it failed"), "{text}");
    let out = p.ctl(&["status", "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["projections"][0]["write"], "in-place");
    assert_eq!(json["projections"][0]["write_reason"], reason.as_str());
    // The host's file at that path was never touched (the broker wrote
    // through its mount), and the refused rename left no temp file.
    assert_eq!(fs::read(&target).unwrap(), b"");
    assert_eq!(fs::read_dir(p.env.path("codex-home")).unwrap().count(), 1);
    p.assert_no_token_in_logs();
}
