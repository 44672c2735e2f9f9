//! A remote host gets its tokens from the one broker through `ssh -R`: the
//! broker's socket forwarded to the remote side with real OpenSSH (README
//! "Remote hosts and containers"). Remote processes — `brokerctl token` and
//! a client-crate process with many threads, all run through ssh and pointed
//! at the forwarded socket only by `OAUTH_BROKER_SOCKET` — and local ones
//! share one refresh per token lifetime with zero reuse at the fake server;
//! the forward is killed and comes back, and the remote clients reconnect.

use crate::common::token_unexpired_when_asked;
use crate::common::{
    brokerctl, eventually, fake_with_ttl, file_token, fingerprint, jwt_fake, mode, stderr, Broker,
    PLACEHOLDER,
};
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

const CODEX_ACCESS: &[&str] = &["tokens", "access_token"];
const CLAUDE_ACCESS: &[&str] = &["claudeAiOauth", "accessToken"];

/// `brokerctl project --follow` run on the remote host through ssh, with its
/// pid (kept by `exec`) written to a file, so the test can signal it.
struct RemoteProjector {
    ssh_client: Child,
    pid_file: PathBuf,
    log: PathBuf,
}

impl RemoteProjector {
    fn start(
        ssh: &SshHost,
        socket: &Path,
        config: &Path,
        dir: &Path,
        more: &str,
    ) -> RemoteProjector {
        let pid_file = dir.join("projector.pid");
        let log = dir.join("projector.log");
        let q = |p: &Path| shell_quote(&p.display().to_string());
        let ssh_client = ssh
            .command(&format!(
                "echo $$ > {pid}; OAUTH_BROKER_SOCKET={socket} exec {ctl} project --follow --config {config} {more} 2>> {log}",
                pid = q(&pid_file),
                socket = q(socket),
                ctl = q(&brokerctl()),
                config = q(config),
                log = q(&log),
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the remote projector");
        RemoteProjector {
            ssh_client,
            pid_file,
            log,
        }
    }

    fn pid(&self) -> nix::unistd::Pid {
        let pid = eventually(
            "the remote projector's pid",
            Duration::from_secs(20),
            || {
                std::fs::read_to_string(&self.pid_file)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
            },
        );
        nix::unistd::Pid::from_raw(pid)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then its exit status as ssh reports it.
    fn terminate(mut self) -> (Option<i32>, String) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = self.ssh_client.wait().unwrap();
        (status.code(), self.log())
    }
}

impl Drop for RemoteProjector {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.ssh_client.try_wait() {
            return;
        }
        if let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.ssh_client.kill();
        let _ = self.ssh_client.wait();
    }
}

/// The "remote" side's private directory (the forwarded socket goes there)
/// and the projector's config, in the broker's format, with one
/// `[[project]]` entry per `(kind, path, extra)`.
fn remote_side(setup: &Broker, targets: &[(&str, &Path, &str)]) -> (PathBuf, PathBuf) {
    let remote = setup.env.path("remote");
    std::fs::create_dir(&remote).unwrap();
    std::fs::set_permissions(&remote, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = remote.join("projector.toml");
    let toml: String = targets
        .iter()
        .map(|(kind, path, extra)| {
            format!(
                "[[project]]\nkind = \"{kind}\"\npath = \"{}\"\n{extra}\n",
                path.display()
            )
        })
        .collect();
    std::fs::write(&config, toml).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    (remote, config)
}

/// Projection on the remote host: brokerd writes its `[[project]]` files only
/// on its own host, so `brokerctl project --follow` runs on the remote side
/// through the forwarded socket and writes a Codex and a Claude Code file
/// there with the same writers. Over several lifetimes each file catches up
/// with the broker's current token every time, never holds a real refresh
/// token, and the broker refreshes once per lifetime with zero reuse; while
/// the forward is down the files keep their token, and after it comes back
/// they get the next one; SIGTERM ends the projector cleanly, leaving the
/// files.
#[test]
fn a_remote_projector_keeps_tool_files_fed_through_the_forward() {
    let ssh = SshHost::start();
    let setup = Broker::builder().fake(jwt_fake(LIFETIME)).logged_in();
    let codex = setup.env.path("remote-home/codex/auth.json");
    let claude = setup.env.path("remote-home/claude/.credentials.json");
    // Margins of zero because test tokens live seconds (the tools' own
    // windows are minutes).
    let margin = "refresh_margin_secs = 0";
    let (remote, config) = remote_side(
        &setup,
        &[("codex", &codex, margin), ("claude-code", &claude, margin)],
    );
    let remote_socket = remote.join("b.sock");
    let started = Instant::now();
    let mut forward = ssh.forward(&remote_socket, setup.broker.socket_path());
    // Claude Code was logged in on its own there: that login is kept as a
    // backup, as brokerd keeps one.
    std::fs::create_dir_all(claude.parent().unwrap()).unwrap();
    std::fs::write(
        &claude,
        r#"{"claudeAiOauth":{"accessToken":"claude-own-access","refreshToken":"claude-own-refresh","expiresAt":1}}"#,
    )
    .unwrap();
    let projector = RemoteProjector::start(&ssh, &remote_socket, &config, &remote, "");

    let check_file = |path: &Path| {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains(PLACEHOLDER), "{}", path.display());
        for real in setup.real_refresh_tokens() {
            assert!(
                !text.contains(&real),
                "a real refresh token reached {}",
                path.display()
            );
        }
        assert_eq!(mode(path), 0o600);
    };
    // Each round: both files hold the broker's current token, a newer one
    // than the round before (the broker refreshed and the files followed).
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..=LIFETIMES {
        let token =
            setup.wait_projected_after(&codex, CODEX_ACCESS, seen.last().map(String::as_str));
        check_file(&codex);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&codex).unwrap()).unwrap();
        assert_eq!(json["tokens"]["account_id"], "acct-test");
        assert!(json["tokens"]["id_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()));
        setup.wait_projected_after(&claude, CLAUDE_ACCESS, seen.last().map(String::as_str));
        check_file(&claude);
        seen.push(token);
    }

    // The forward drops: the files keep the last token while the broker
    // moves on (nothing else writes them), and get the next one once the
    // forward is back.
    forward.kill();
    // Once the projector has noticed, it writes nothing until it reaches the
    // broker again.
    eventually(
        "the projector notices the drop",
        Duration::from_secs(20),
        || {
            projector
                .log()
                .contains("no token from the broker")
                .then_some(())
        },
    );
    let held = file_token(&codex, CODEX_ACCESS).unwrap();
    setup.wait_token_not_in(&[fingerprint(&held)]);
    assert_eq!(
        file_token(&codex, CODEX_ACCESS).as_deref(),
        Some(held.as_str())
    );
    let mut forward = ssh.forward(&remote_socket, setup.broker.socket_path());
    let after = setup.wait_projected_after(&codex, CODEX_ACCESS, Some(&held));
    setup.wait_projected_after(&claude, CLAUDE_ACCESS, Some(&held));
    check_file(&codex);
    check_file(&claude);
    if seen.last() != Some(&held) {
        seen.push(held);
    }
    seen.push(after);

    // The files only moved forward, in issue order.
    let issued = setup.fake.access_tokens_in_issue_order();
    let positions: Vec<Option<usize>> = seen
        .iter()
        .map(|t| issued.iter().position(|i| i == t))
        .collect();
    assert!(
        positions.iter().all(Option::is_some) && positions.windows(2).all(|w| w[0] < w[1]),
        "issue positions {positions:?}"
    );

    // SIGTERM: a clean exit, the files stay (as a Vault Agent file sink).
    let (code, log) = projector.terminate();
    let elapsed = started.elapsed();
    forward.kill();
    assert_eq!(code, Some(0), "projector log:\n{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(log.contains("the broker answers again"), "{log}");
    assert!(codex.exists() && claude.exists());
    let backup = std::fs::read_to_string(
        setup
            .env
            .path("remote-home/claude/.credentials.json.oauth-broker-backup"),
    )
    .expect("the tool's own login, backed up");
    assert!(backup.contains("claude-own-refresh"));
    for token in setup.fake.all_issued_tokens() {
        assert!(!log.contains(&token), "a token in the projector's log");
    }

    let stats = setup.fake.stats();
    assert_eq!(stats.reuse_detections, 0);
    assert_eq!(stats.families_revoked, 0);
    assert_eq!(stats.refresh_requests, stats.successful_refreshes);
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
    let shortest_lifetime = LIFETIME - Duration::from_secs(1);
    let most = (elapsed.as_secs_f64() / (shortest_lifetime.as_secs_f64() * 0.7)).ceil() as u64;
    assert!(
        stats.successful_refreshes <= most,
        "{} refreshes in {elapsed:?}",
        stats.successful_refreshes
    );
    // Every round before the drop and the one after it waited for a newer
    // token: at least LIFETIMES + 1 refreshes, more than three lifetimes.
    assert!(stats.successful_refreshes > LIFETIMES as u64);
    println!(
        "remote projection: {} files followed {} tokens over {:.1} s: {} refreshes, {} reuse detections",
        2,
        seen.len(),
        elapsed.as_secs_f64(),
        stats.successful_refreshes,
        stats.reuse_detections
    );
    setup.assert_no_token_in_logs();
}

/// The real Codex CLI on a file projected on the remote side: brokerd has no
/// `[[project]]` entry; `brokerctl project --follow`, reached through the
/// ssh forward, writes Codex's `auth.json`, and `codex exec` runs on it over
/// two token lifetimes, sending only the broker's current tokens and never
/// refreshing on its own; `--restore-on-exit` then removes the file (there
/// was none before).
#[test]
fn codex_cli_runs_on_a_file_projected_on_the_remote_side() {
    use crate::e2e_codex_cli::{
        assert_every_refresh_was_the_brokers, broker_toml, chatgpt_auth_server, codex_toml, Codex,
        ACCOUNT,
    };
    use oauth_broker_tests::fake_chatgpt::FakeChatGpt;
    use oauth_broker_tests::harness::TestEnv;

    let bin = oauth_broker_tests::tools::ensure_codex_cli();
    let ssh = SshHost::start();
    let env = TestEnv::new();
    let fake = chatgpt_auth_server();
    let backend = FakeChatGpt::start(fake.clone(), ACCOUNT, env.root());
    let toml = broker_toml(&fake, "");
    let setup = Broker::builder()
        .fake_server(fake.clone())
        .test_env(env)
        .config(move |_| toml)
        .logged_in();
    let codex = Codex::new(bin, &setup.env, &fake, &backend);
    codex.write_config(&codex_toml(&backend, ""));
    let auth_json = codex.home.join("auth.json");
    // Codex's own margin (the kind's default): the fake's JWTs claim 15
    // minutes more than they live, as in e2e_codex_cli.
    let (remote, config) = remote_side(&setup, &[("codex", &auth_json, "")]);
    let remote_socket = remote.join("b.sock");
    let _forward = ssh.forward(&remote_socket, setup.broker.socket_path());
    let projector =
        RemoteProjector::start(&ssh, &remote_socket, &config, &remote, "--restore-on-exit");

    let mut run_tokens: Vec<String> = Vec::new();
    for run in 0..2u64 {
        let token = setup.wait_projected_after(
            &auth_json,
            CODEX_ACCESS,
            run_tokens.last().map(String::as_str),
        );
        let requests = codex.exec(&backend);
        let sent: Vec<&str> = requests
            .iter()
            .filter_map(|r| r.bearer.as_deref())
            .collect();
        assert!(!sent.is_empty(), "run {run} carried a token: {requests:#?}");
        for bearer in sent {
            setup.assert_current_since(bearer, &fingerprint(&token), &format!("run {run}"));
        }
        run_tokens.push(token);
        fake.wait_for_refresh_requests(run + 1, Duration::from_secs(20))
            .expect("the broker refreshes");
    }
    assert_every_refresh_was_the_brokers(&setup);
    let stats = fake.stats();
    assert_eq!(stats.reuse_detections, 0);
    assert_eq!(stats.families_revoked, 0);
    // --restore-on-exit: there was no file before the projector's, so the
    // tool gets none back (it is logged out), as `project --restore` does.
    let (code, log) = projector.terminate();
    assert_eq!(code, Some(0), "projector log:\n{log}");
    assert!(!auth_json.exists(), "{log}");
    setup.assert_no_token_in_logs();
}
