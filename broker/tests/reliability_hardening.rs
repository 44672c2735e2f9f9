//! Hardening at start: no core dumps and no ptrace/`/proc` peeking by other
//! processes of the user, an open-files limit that fits the connection limit,
//! state and socket permissions checked with an actionable message, one broker
//! per account (the refusal names the holder's pid), stale sockets replaced
//! but live ones never unlinked, and plain http to a non-loopback host
//! refused. (Peer-uid refusal, logged with the uid, is proven by
//! `e2e_peer_uid.rs`.)

use crate::common::{brokerd, brokerd_with_low_nofile, open_files_limits, Broker};
use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig};
use oauth_broker_tests::harness::{generic_config, Backoff, BrokerProcess, BrokerSpec, TestEnv};
use std::fs::{self, Permissions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NOBODY: u32 = 65534;
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// Starts brokerd with `spec` expecting it to refuse to start; returns its log.
fn refused(spec: BrokerSpec<'_>, what: &str) -> String {
    let mut broker = BrokerProcess::spawn(spec).expect("spawn brokerd");
    let status = broker.wait_exit(EXIT_WAIT).unwrap_or_else(|| {
        panic!(
            "{what}: brokerd did not refuse to start:\n{}",
            broker.logs()
        )
    });
    assert!(!status.success(), "{what}: exit {status}");
    let log = broker.logs();
    assert!(!log.contains("panicked"), "{what}: panic:\n{log}");
    log
}

/// The "Max core file size" soft and hard limits of a process.
fn core_limits(pid: u32) -> (String, String) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core limit line");
    let mut fields = line["Max core file size".len()..].split_whitespace();
    (
        fields.next().unwrap().to_string(),
        fields.next().unwrap().to_string(),
    )
}

/// Owner of `/proc/<pid>/status`. The kernel gives a process's /proc files to
/// root when the process is not dumpable (`PR_SET_DUMPABLE` 0), and to the
/// process's own uid otherwise — the outside view of the prctl flag.
fn proc_owner(pid: u32) -> u32 {
    fs::metadata(format!("/proc/{pid}/status")).unwrap().uid()
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chown_tree(path: &Path, uid: u32) {
    let id = Some(nix::unistd::Uid::from_raw(uid));
    let gid = Some(nix::unistd::Gid::from_raw(uid));
    nix::unistd::chown(path, id, gid).unwrap();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid);
        }
    }
}

#[test]
fn brokerd_is_not_dumpable_and_cannot_write_core_files() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let env = TestEnv::new();
    let config = env.config_dir().join("default.toml");
    fs::write(&config, generic_config(&fake)).unwrap();
    fs::set_permissions(&config, Permissions::from_mode(0o600)).unwrap();
    let socket = env.socket_path("default");
    let log_path = env.logs_dir().join("brokerd-nobody.log");
    let log = fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new(brokerd());
    cmd.arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(env.state_dir().join("default"))
        .env_clear()
        .envs(env.base_env())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // Seen from root every /proc file is readable and root-owned processes
    // look the same either way: run brokerd as another user, so that only
    // the dumpable flag decides who owns its /proc files.
    let as_root = nix::unistd::getuid().is_root();
    if as_root {
        chown_tree(env.root(), NOBODY);
        cmd.uid(NOBODY).gid(NOBODY);
        // Control: an ordinary process of that user owns its /proc files.
        let control = KillOnDrop(
            Command::new("sleep")
                .arg("30")
                .uid(NOBODY)
                .gid(NOBODY)
                .spawn()
                .expect("spawn a control process"),
        );
        assert_eq!(proc_owner(control.0.id()), NOBODY, "control process");
    }
    let broker = KillOnDrop(cmd.spawn().expect("spawn brokerd"));
    let pid = broker.0.id();
    Backoff::new(EXIT_WAIT)
        .until(|| std::os::unix::net::UnixStream::connect(&socket).ok())
        .unwrap_or_else(|| {
            panic!(
                "brokerd does not listen:\n{}",
                fs::read_to_string(&log_path).unwrap_or_default()
            )
        });

    assert_eq!(
        proc_owner(pid),
        0,
        "brokerd's /proc files are not root-owned: it is dumpable (ptrace and /proc/<pid>/mem by the same user possible)"
    );
    assert_eq!(
        core_limits(pid),
        ("0".to_string(), "0".to_string()),
        "RLIMIT_CORE"
    );
    println!("RELIABILITY hardening dumpable=0 core_limit=0 checked_as_other_uid={as_root}");
}

#[test]
fn brokerd_raises_its_open_files_soft_limit_to_the_hard_limit() {
    let wrapper = tempfile::tempdir().unwrap();
    let spec = Broker::builder()
        .fast_refresh()
        .ttl(Duration::from_secs(60))
        .brokerd(brokerd_with_low_nofile(wrapper.path(), 256));
    let rig = spec.start();
    let (soft, hard) = open_files_limits(rig.broker.pid());
    assert_eq!(soft, hard, "soft limit left at {soft}");
}

#[test]
fn unsafe_state_permissions_are_refused_with_the_command_that_fixes_them() {
    let fake = FakeAuthServer::start(FakeConfig::default());

    // A state directory others can read.
    let env = TestEnv::new();
    let dir = env.state_dir().join("default");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
    let log = refused(
        BrokerSpec::new(brokerd(), &env, generic_config(&fake)),
        "0755 state dir",
    );
    assert!(
        log.contains(&format!("chmod 700 {}", dir.display())),
        "{log}"
    );

    // A state file others can read (left by a careless restore).
    fs::set_permissions(&dir, Permissions::from_mode(0o700)).unwrap();
    let file = dir.join("state.json");
    fs::write(&file, br#"{"version":1,"account":"default"}"#).unwrap();
    fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
    let log = refused(
        BrokerSpec::new(brokerd(), &env, generic_config(&fake)),
        "0644 state file",
    );
    assert!(
        log.contains(&format!("chmod 600 {}", file.display())),
        "{log}"
    );
    fs::set_permissions(&file, Permissions::from_mode(0o600)).unwrap();

    // A state directory of another user.
    if nix::unistd::getuid().is_root() {
        chown_tree(&dir, NOBODY);
        let log = refused(
            BrokerSpec::new(brokerd(), &env, generic_config(&fake)),
            "foreign state dir",
        );
        assert!(log.contains(&format!("belongs to uid {NOBODY}")), "{log}");
        assert!(log.contains("--state-dir"), "{log}");
        chown_tree(&dir, 0);
    }

    // Fixed as told: it starts.
    BrokerProcess::start(BrokerSpec::new(brokerd(), &env, generic_config(&fake)))
        .expect("starts once the permissions are fixed");
}

#[test]
fn a_socket_directory_others_can_write_is_refused_with_the_command_that_fixes_it() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let env = TestEnv::new();
    let run = env.run_dir();
    fs::set_permissions(&run, Permissions::from_mode(0o777)).unwrap();
    let log = refused(
        BrokerSpec::new(brokerd(), &env, generic_config(&fake)),
        "0777 socket dir",
    );
    // The message names the directory and the chmod that fixes it.
    let fix = log
        .lines()
        .find(|l| l.contains("writable by group or others"))
        .unwrap_or_else(|| panic!("no reason given:\n{log}"));
    assert!(
        fix.contains("chmod") && fix.contains(&run.display().to_string()),
        "{log}"
    );
    assert!(!env.socket_path("default").exists(), "bound anyway");

    // Sticky like /tmp: others cannot replace our socket; accepted.
    fs::set_permissions(&run, Permissions::from_mode(0o1777)).unwrap();
    let broker = BrokerProcess::start(BrokerSpec::new(brokerd(), &env, generic_config(&fake)))
        .expect("a sticky directory is accepted");
    let mode = fs::metadata(broker.socket_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "socket mode");
}

#[test]
fn a_second_brokerd_for_the_same_account_is_refused_naming_the_holder_pid() {
    let rig = Broker::builder()
        .fast_refresh()
        .ttl(Duration::from_secs(60))
        .start();
    let first_pid = rig.broker.pid();
    let socket = rig.broker.socket_path().to_path_buf();
    let inode = fs::metadata(&socket).unwrap().ino();

    let log = refused(rig.broker_spec(), "second brokerd");
    assert!(
        log.contains(&format!("pid {first_pid}")) && log.contains(&format!("kill {first_pid}")),
        "the refusal does not name the holder {first_pid}:\n{log}"
    );
    // The first broker and its socket are untouched.
    assert_eq!(fs::metadata(&socket).unwrap().ino(), inode);
    rig.status();
}

#[test]
fn stale_sockets_are_replaced_but_live_sockets_and_other_files_are_left_alone() {
    let fake = FakeAuthServer::start(FakeConfig::default());

    // A socket file left by a crashed broker: nobody answers, so it is
    // replaced and served.
    let env = TestEnv::new();
    let socket = env.socket_path("default");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let live = BrokerProcess::start(BrokerSpec::new(brokerd(), &env, generic_config(&fake)))
        .expect("starts over a stale socket");
    assert!(
        live.logs().contains("removing stale socket"),
        "{}",
        live.logs()
    );
    let inode = fs::metadata(&socket).unwrap().ino();

    // A second broker (own state, own account dir) pointed at the live
    // socket: refused, and the live socket is not unlinked.
    let env2 = TestEnv::new();
    fs::remove_dir(env2.run_dir()).unwrap();
    std::os::unix::fs::symlink(env.run_dir(), env2.run_dir()).unwrap();
    assert_eq!(
        env2.socket_path("default"),
        env2.run_dir().join("default.sock")
    );
    let log = refused(
        BrokerSpec::new(brokerd(), &env2, generic_config(&fake)),
        "live socket",
    );
    assert!(log.contains("already listening"), "{log}");
    assert_eq!(
        fs::metadata(&socket).unwrap().ino(),
        inode,
        "live socket replaced"
    );
    oauth_broker_client::Client::builder()
        .socket(&socket)
        .connect()
        .and_then(|mut c| c.status())
        .expect("the first broker still answers on its socket");
    drop(live);

    // Something that is not a socket is never removed.
    let env3 = TestEnv::new();
    let path = env3.socket_path("default");
    fs::write(&path, b"precious").unwrap();
    let log = refused(
        BrokerSpec::new(brokerd(), &env3, generic_config(&fake)),
        "regular file",
    );
    assert!(log.contains("is not a socket"), "{log}");
    assert_eq!(fs::read(&path).unwrap(), b"precious");
}

#[test]
fn plain_http_to_a_non_loopback_host_is_refused_at_start() {
    let fake = FakeAuthServer::start(FakeConfig::default());
    let loopback = generic_config(&fake);
    let base = fake.base_url().to_string();
    for (host, url) in [
        ("auth.example.com", "http://auth.example.com/oauth/token"),
        (
            "localhost.evil.example",
            "http://localhost.evil.example/oauth/token",
        ),
        ("127.0.0.1.nip.io", "http://127.0.0.1.nip.io/oauth/token"),
        ("10.0.0.1", "http://10.0.0.1/oauth/token"),
    ] {
        let env = TestEnv::new();
        let config = loopback.replace(&format!("{base}/oauth/token"), url);
        assert_ne!(config, loopback);
        let log = refused(BrokerSpec::new(brokerd(), &env, config), url);
        assert!(log.contains("token_endpoint"), "{log}");
        assert!(log.contains("refusing plain http"), "{log}");
        assert!(log.contains(host), "{log}");
        assert!(log.contains("https://"), "{log}");
        assert!(
            log.contains("default.toml"),
            "the message does not name the file:\n{log}"
        );
    }
    // Loopback hosts may use http (tests, local development).
    let env = TestEnv::new();
    let ipv6 = loopback.replace(&base, &format!("http://[::1]:{}", fake.port()));
    BrokerProcess::start(BrokerSpec::new(brokerd(), &env, ipv6)).expect("http://[::1] accepted");
}
