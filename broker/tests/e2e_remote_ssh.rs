//! A remote host gets its tokens from the one broker through `ssh -R`: the
//! broker's socket forwarded to the remote side with real OpenSSH (README
//! "Remote hosts and containers"). Remote processes — `brokerctl token` and
//! a client-crate process with many threads, all run through ssh and pointed
//! at the forwarded socket only by `OAUTH_BROKER_SOCKET` — and local ones
//! share one refresh per token lifetime with zero reuse at the fake server;
//! the forward is killed and comes back, and the remote clients reconnect.

use crate::common::token_unexpired_when_asked;
use crate::common::{brokerctl, fake_with_ttl, stderr, Broker};
use oauth_broker_client::{Client, Error};
use oauth_broker_tests::ssh_host::{shell_quote, SshHost};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIFETIME: Duration = Duration::from_secs(3);
const LIFETIMES: u32 = 3;
const THREADS: usize = 8;
/// Set for the child process (the test binary run again): the stop file.
const CHILD_ENV: &str = "OAUTH_BROKER_REMOTE_CHILD_STOP";
/// A child stops on its own after this long, stop file or not.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

/// Not a test of its own: the client process of the test below, run on the
/// "remote" host through ssh and locally. It returns at once unless that
/// test started it. Its threads use the client crate with no socket given,
/// so `OAUTH_BROKER_SOCKET` alone leads them to the broker; a failure
/// while the forward is down is counted and retried. A thread stops after
/// a request that began once the stop file existed succeeded, so each one
/// proves it works again after the forward came back.
#[test]
fn client_child_entry() {
    let Ok(stop) = std::env::var(CHILD_ENV) else {
        return;
    };
    let deadline = Instant::now() + CHILD_DEADLINE;
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut client: Option<Client> = None;
                let (mut ok, mut failed) = (0u64, 0u64);
                let mut ids = BTreeSet::new();
                let min_valid = if i % 2 == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_secs(30)
                };
                loop {
                    assert!(Instant::now() < deadline, "no success after the stop file");
                    let stopping = Path::new(&stop).exists();
                    let result = match client.as_mut() {
                        Some(c) => token_unexpired_when_asked(c, min_valid),
                        None => Client::builder()
                            .client_name(format!("remote-child-{i}"))
                            .connect()
                            .and_then(|mut c| {
                                let token = token_unexpired_when_asked(&mut c, min_valid);
                                client = Some(c);
                                token
                            }),
                    };
                    match result {
                        Ok(token) => {
                            ok += 1;
                            ids.insert(token.token_id().to_string());
                            if stopping {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        // The forward is down: nobody listens on the remote
                        // socket, or a request was cut off with it.
                        Err(Error::Unreachable { .. } | Error::Io { .. }) => {
                            failed += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(other) => panic!("unexpected error: {other}"),
                    }
                }
                (ok, failed, ids)
            })
        })
        .collect();
    let (mut ok, mut failed, mut ids) = (0, 0, BTreeSet::new());
    for t in threads {
        let (o, f, i) = t.join().expect("client thread");
        ok += o;
        failed += f;
        ids.extend(i);
    }
    println!(
        "CHILD_RESULT {ok} {failed} {}",
        ids.into_iter().collect::<Vec<_>>().join(",")
    );
}

/// What one child process reported.
struct ChildResult {
    ok: u64,
    failed: u64,
    ids: BTreeSet<String>,
}

fn child_result(name: &str, child: Child) -> ChildResult {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} child failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find_map(|l| l.split_once("CHILD_RESULT ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("{name} child printed no result: {text}"));
    let mut parts = line.splitn(3, ' ');
    ChildResult {
        ok: parts.next().unwrap().parse().unwrap(),
        failed: parts.next().unwrap().parse().unwrap(),
        ids: parts
            .next()
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    }
}

/// `OAUTH_BROKER_SOCKET=<socket> brokerctl token`, run on the remote host.
fn remote_token(ssh: &SshHost, socket: &Path) -> std::process::Output {
    ssh.command(&format!(
        "OAUTH_BROKER_SOCKET={} exec {} token",
        shell_quote(&socket.display().to_string()),
        shell_quote(&brokerctl().display().to_string()),
    ))
    .output()
    .expect("run ssh")
}

#[test]
fn remote_clients_over_an_ssh_forward_share_one_refresh_per_lifetime_and_survive_its_drop() {
    let ssh = SshHost::start();
    let setup = Broker::logged_in(fake_with_ttl(LIFETIME));
    let started = Instant::now();
    // `brokerctl ssh-forward` creates the remote directory (ssh -R creates
    // none) over ssh and prints the forward; the test runs exactly that.
    let mut args = vec![
        "ssh-forward".to_string(),
        "--json".into(),
        ssh.destination(),
        "--".into(),
    ];
    args.extend(ssh.options());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = setup.ctl(&args);
    assert!(
        out.status.success(),
        "brokerctl ssh-forward: {}",
        stderr(&out)
    );
    let recipe: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let argv: Vec<String> = recipe["forward"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    let remote_socket = PathBuf::from(recipe["remote_socket"].as_str().unwrap());
    let local_socket = setup.broker.socket_path().to_path_buf();
    assert_eq!(
        Path::new(recipe["local_socket"].as_str().unwrap()),
        local_socket
    );
    assert_eq!(
        recipe["remote_env"].as_str().unwrap(),
        format!("export OAUTH_BROKER_SOCKET={}", remote_socket.display())
    );
    let remote_dir = remote_socket.parent().unwrap();
    assert_eq!(
        std::fs::metadata(remote_dir).unwrap().permissions().mode() & 0o777,
        0o700,
        "the remote directory is private"
    );
    let mut forward = ssh.run_forward(&argv);

    let stop = setup.env.path("stop");
    let exe = std::env::current_exe().unwrap();
    let child_args = [
        "e2e_remote_ssh::client_child_entry",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ];
    let remote_child = ssh
        .command(&format!(
            "{CHILD_ENV}={} OAUTH_BROKER_SOCKET={} exec {} {}",
            shell_quote(&stop.display().to_string()),
            shell_quote(&remote_socket.display().to_string()),
            shell_quote(&exe.display().to_string()),
            child_args.join(" ")
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the remote client process");
    let local_child = Command::new(&exe)
        .args(child_args)
        .env(CHILD_ENV, &stop)
        .env("OAUTH_BROKER_SOCKET", &local_socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the local client process");

    // Remote and local brokerctl, one after the other, for half the run.
    let (mut remote_runs, mut local_runs) = (0, 0);
    let run_for = LIFETIME * LIFETIMES;
    while started.elapsed() < run_for / 2 {
        let out = remote_token(&ssh, &remote_socket);
        assert!(
            out.status.success(),
            "remote brokerctl token: {}",
            stderr(&out)
        );
        assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 1);
        remote_runs += 1;
        let out = setup.ctl(&["token"]);
        assert!(out.status.success(), "brokerctl token: {}", stderr(&out));
        local_runs += 1;
    }

    // The forward drops (network gone, laptop lid closed): the remote side
    // has a socket file nobody answers on, and says so clearly.
    forward.kill();
    let out = remote_token(&ssh, &remote_socket);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach oauth-broker")
            && err.contains(&remote_socket.display().to_string()),
        "{err}"
    );
    assert!(
        setup.ctl(&["token"]).status.success(),
        "local clients are unaffected"
    );

    // It comes back (sshd's StreamLocalBindUnlink replaces the stale file).
    let mut forward = ssh.run_forward(&argv);
    while started.elapsed() < run_for {
        let out = remote_token(&ssh, &remote_socket);
        assert!(
            out.status.success(),
            "remote brokerctl token after the forward came back: {}",
            stderr(&out)
        );
        remote_runs += 1;
        let out = setup.ctl(&["token"]);
        assert!(out.status.success(), "brokerctl token: {}", stderr(&out));
        local_runs += 1;
    }
    std::fs::write(&stop, b"").unwrap();
    let remote = child_result("remote", remote_child);
    let local = child_result("local", local_child);
    let elapsed = started.elapsed();
    forward.kill();

    let stats = setup.fake.stats();
    println!(
        "ssh forward: remote {} ok / {} failed while down, local {} ok, {remote_runs} remote + {local_runs} local brokerctl runs over {:.1} s: {} refreshes, {} reuse detections",
        remote.ok,
        remote.failed,
        local.ok,
        elapsed.as_secs_f64(),
        stats.successful_refreshes,
        stats.reuse_detections
    );
    assert!(remote.ok >= THREADS as u64 && local.ok >= THREADS as u64);
    assert!(
        remote.failed > 0,
        "the remote client process never noticed the forward dropping"
    );
    assert_eq!(local.failed, 0, "local clients never lost the broker");
    assert!(
        remote.ids.iter().any(|id| local.ids.contains(id)),
        "one token, shared"
    );
    assert_eq!(stats.reuse_detections, 0);
    assert_eq!(stats.families_revoked, 0);
    assert_eq!(
        stats.refresh_requests, stats.successful_refreshes,
        "no refresh failed or was wasted"
    );
    // One refresh per lifetime, as in e2e_storm: refreshes at least half a
    // lifetime apart, and one for every lifetime that passed (give or take
    // the whole second the broker's expiry is rounded to).
    let refreshes: Vec<_> = setup
        .fake
        .token_requests()
        .into_iter()
        .filter(|r| r.grant_type.as_deref() == Some("refresh_token"))
        .map(|r| r.received_at)
        .collect();
    for pair in refreshes.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= LIFETIME / 2 - Duration::from_millis(100),
            "two refreshes {gap:?} apart"
        );
    }
    let lifetimes_elapsed = (elapsed.as_secs_f64() / LIFETIME.as_secs_f64()).floor() as u64;
    assert!(
        stats.successful_refreshes >= lifetimes_elapsed.saturating_sub(1).max(1),
        "{} refreshes in {lifetimes_elapsed} lifetimes",
        stats.successful_refreshes
    );
    let shortest_lifetime = LIFETIME - Duration::from_secs(1);
    let most = (elapsed.as_secs_f64() / (shortest_lifetime.as_secs_f64() * 0.7)).ceil() as u64;
    assert!(stats.successful_refreshes <= most);
    setup.assert_no_token_in_logs();
    let ssh_logs = ssh.server_log() + &ssh.forward_log();
    for token in setup.fake.all_issued_tokens() {
        assert!(!ssh_logs.contains(&token), "a token in the ssh logs");
    }
}
