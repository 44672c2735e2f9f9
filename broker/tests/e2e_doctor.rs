//! `brokerctl doctor` against the real brokerd: every diagnosis produced for
//! real (a stopped broker, a killed one's stale socket, a tool's own login
//! written into a projected file, loosened permissions, a forwarded socket,
//! a refusal by peer uid, a broker whose every connection is serving a
//! request and so answers busy), with `status`'s exit codes and no token
//! printed.

use crate::common::*;
use oauth_broker_client::proto::{
    encode_frame, frame_len, Hello, LoginEvent, LoginMethod, Request, Response, FRAME_HEADER_LEN,
};
use serde_json::Value;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn doctor(p: &Broker) -> (i32, String) {
    let out = p.ctl(&["doctor"]);
    (out.status.code().unwrap_or(-1), text(&out))
}

fn doctor_json(p: &Broker) -> Value {
    let out = p.ctl(&["doctor", "--json"]);
    let value: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {}", text(&out)));
    assert_eq!(
        value["exit_code"].as_i64(),
        out.status.code().map(i64::from),
        "{value}"
    );
    value
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The line of `check` (first one), panicking with the whole output if none.
fn line<'a>(output: &'a str, check: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no {check} line in:\n{output}"))
}

#[test]
fn a_healthy_broker_passes_every_check() {
    let p = Broker::builder().logged_in();
    let (code, out) = doctor(&p);
    eprintln!("{out}");
    assert_eq!(code, 0, "{out}");
    for check in ["broker", "login", "clock", "config", "state"] {
        assert!(line(&out, check).starts_with("ok "), "{out}");
    }
    assert!(line(&out, "broker").contains(&format!("pid {}", p.broker.pid())));
    assert!(line(&out, "login").contains("expires"), "{out}");
    let json = doctor_json(&p);
    assert_eq!(json["exit_code"], 0);
    assert!(json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["level"] == "ok"));
}

#[test]
fn a_stopped_broker_leaves_no_socket_and_a_killed_one_a_stale_socket() {
    let mut p = Broker::builder().logged_in();
    let socket = p.broker.socket_path().to_path_buf();
    p.broker.kill().unwrap();
    assert!(socket.exists(), "SIGKILL leaves the socket file behind");
    let (code, out) = doctor(&p);
    assert_eq!(code, 3, "{out}");
    let socket_line = line(&out, "socket");
    assert!(socket_line.starts_with("FAIL"), "{out}");
    assert!(socket_line.contains("stale socket"), "{out}");
    assert!(socket_line.contains("start the broker"), "{out}");

    p.restart_after_kill();
    assert_eq!(doctor(&p).0, 0);
    p.broker.terminate().unwrap();
    assert!(!socket.exists(), "a clean stop removes the socket");
    let (code, out) = doctor(&p);
    assert_eq!(code, 3, "{out}");
    assert!(line(&out, "socket").contains("no socket at"), "{out}");
    let json = doctor_json(&p);
    assert_eq!(json["exit_code"], 3);
    assert_eq!(json["findings"][0]["check"], "socket");
    assert_eq!(json["findings"][0]["level"], "fail");
    assert!(json["findings"][0]["fix"]
        .as_str()
        .unwrap()
        .contains("brokerd"));
}

#[test]
fn logged_out_is_exit_2_with_the_command_to_run() {
    let p = Broker::builder().start();
    let (code, out) = doctor(&p);
    assert_eq!(code, 2, "{out}");
    let login = line(&out, "login");
    assert!(
        login.starts_with("FAIL") && login.contains("brokerctl relogin"),
        "{out}"
    );
}

#[test]
fn a_tool_that_logged_in_on_its_own_is_named_without_showing_its_tokens() {
    let p = Broker::builder()
        .fake(jwt_fake(Duration::from_secs(3600)))
        .extra_toml("[[project]]\nkind = \"codex\"\npath = \"{root}/codex-home/auth.json\"\n")
        .logged_in();
    let path = p.env.path("codex-home/auth.json");
    p.wait_projected(&path, &["tokens", "access_token"]);
    let (code, out) = doctor(&p);
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "projection").contains("holds the broker's current token"),
        "{out}"
    );

    // What Codex writes after a `codex login` of its own (same account).
    let mut file: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    file["tokens"]["refresh_token"] = "tools-own-refresh-secret".into();
    file["tokens"]["access_token"] = "tools-own-access-secret".into();
    // Replaced whole (temp file and rename), so the broker's 2-second check
    // never reads it half-written.
    let tmp = p.env.path("codex-home/auth.json.tool-tmp");
    fs::write(&tmp, file.to_string()).unwrap();
    fs::rename(&tmp, &path).unwrap();
    let status = oauth_broker_tests::harness::Backoff::new(Duration::from_secs(10))
        .until(|| p.target_status(&path).tool_wrote)
        .expect("the broker notices the tool's login");
    assert!(status.refresh_token && status.unknown_access_token);
    // The broker wrote its own login back.
    p.wait_projected(&path, &["tokens", "access_token"]);

    let (code, out) = doctor(&p);
    eprintln!("{out}");
    assert_eq!(code, 1, "{out}");
    let projection = line(&out, "projection");
    assert!(projection.starts_with("FAIL"), "{out}");
    assert!(
        projection.contains("codex refreshed or logged in on its own"),
        "{out}"
    );
    assert!(projection.contains("a refresh token of its own"), "{out}");
    assert!(projection.contains("never issued"), "{out}");
    let json = doctor_json(&p);
    let all = format!("{out}{json}{}", p.logs());
    for secret in ["tools-own-refresh-secret", "tools-own-access-secret"] {
        assert!(!all.contains(secret), "{secret} printed");
    }
    p.assert_no_token_in_logs();
}

#[test]
fn loosened_config_and_state_permissions_are_named_with_the_chmod_that_fixes_them() {
    let p = Broker::builder().logged_in();
    // The state as today's default writes it (the journal).
    let state = p.state_dir().join("state.journal");
    let config = p.broker.config_path().to_path_buf();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = doctor(&p);
    assert_eq!(code, 1, "{out}");
    let state_line = line(&out, "state");
    assert!(state_line.starts_with("FAIL"), "{out}");
    assert!(
        state_line.contains(&format!("chmod 600 {}", state.display())),
        "{out}"
    );
    assert!(line(&out, "config").starts_with("ok"), "{out}");

    fs::set_permissions(&state, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o666)).unwrap();
    let (code, out) = doctor(&p);
    assert_eq!(code, 1, "{out}");
    let config_line = line(&out, "config");
    assert!(config_line.starts_with("FAIL"), "{out}");
    assert!(
        config_line.contains(&format!("chmod go-w {}", config.display())),
        "{out}"
    );
    assert!(line(&out, "state").starts_with("ok"), "{out}");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).unwrap();
}

/// A relay of the broker's socket at another path, served by this test
/// process: what `ssh -R` (sshd) or a socat in a container puts between a
/// client and the broker. Runs until the listener is dropped.
fn forward(from: &Path, to: &Path) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(from).unwrap();
    let to = to.to_path_buf();
    std::thread::spawn(move || {
        // One connection per doctor run is all the test makes: the probe and
        // the client's connection.
        for _ in 0..2 {
            let Ok((mut inbound, _)) = listener.accept() else {
                return;
            };
            let mut outbound = UnixStream::connect(&to).unwrap();
            let (mut i2, mut o2) = (inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut i2, &mut o2);
                let _ = o2.shutdown(std::net::Shutdown::Write);
            });
            let mut buf = [0u8; 65536];
            loop {
                match outbound.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if inbound.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        }
    })
}

fn doctor_via_env(p: &Broker, socket: &Path) -> (i32, String) {
    let out = Command::new(brokerctl())
        .arg("doctor")
        .env_clear()
        .envs(p.broker.client_env().iter().map(|(k, v)| (k, v)))
        .env("OAUTH_BROKER_SOCKET", socket)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), text(&out))
}

#[test]
fn a_forwarded_socket_is_recognised_and_a_dead_forward_explained() {
    let p = Broker::builder().logged_in();
    let forwarded = p.env.path("forwarded.sock");
    let relay = forward(&forwarded, p.broker.socket_path());
    let (code, out) = doctor_via_env(&p, &forwarded);
    assert_eq!(code, 0, "{out}");
    let broker = line(&out, "broker");
    assert!(
        broker.contains(&format!(
            "forwarded: the socket is served by pid {}",
            std::process::id()
        )),
        "{out}"
    );
    assert!(broker.contains("socket from OAUTH_BROKER_SOCKET"), "{out}");
    relay.join().unwrap();

    // The forward ended; its socket file stays (as sshd's does).
    let (code, out) = doctor_via_env(&p, &forwarded);
    assert_eq!(code, 3, "{out}");
    let socket = line(&out, "socket");
    assert!(socket.contains("stale socket"), "{out}");
    assert!(socket.contains("reconnect"), "{out}");
    fs::remove_file(&forwarded).unwrap();
    let (code, out) = doctor_via_env(&p, &forwarded);
    assert_eq!(code, 3, "{out}");
    let socket = line(&out, "socket");
    assert!(socket.contains("no socket at"), "{out}");
    assert!(socket.contains("StreamLocalBindUnlink=yes"), "{out}");
}

#[test]
fn a_refusal_by_peer_uid_is_relayed_with_the_uid() {
    use std::os::unix::process::CommandExt;
    let p = Broker::builder().logged_in();
    let socket = p.broker.socket_path().to_path_buf();
    // Let another uid reach the socket file, so that the broker's own peer
    // check is what refuses it (as for a uid-mapped container).
    fs::set_permissions(p.env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(socket.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(brokerctl())
        .args(["--socket"])
        .arg(&socket)
        .arg("doctor")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/")
        .uid(54321)
        .gid(54321)
        .output()
        .unwrap();
    let out_text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{out_text}");
    let broker = line(&out_text, "broker");
    assert!(broker.starts_with("FAIL"), "{out_text}");
    assert!(
        broker.contains("refused this user (uid 54321)"),
        "{out_text}"
    );
}

fn read_frame(s: &mut UnixStream) -> Response {
    let mut header = [0u8; FRAME_HEADER_LEN];
    s.read_exact(&mut header).expect("frame header");
    let mut payload = vec![0u8; frame_len(header).expect("frame length")];
    s.read_exact(&mut payload).expect("frame payload");
    serde_json::from_slice(&payload).expect("a well-formed frame")
}

/// The broker answers `busy` only when every slot holds a connection in the
/// middle of a request (an idle one would be closed to make room). One slot,
/// held by a device login waiting for the user: doctor's connection is
/// answered busy, and doctor says so in one line, exit 1; once the login
/// ends, the slot is idle again and doctor passes.
#[test]
fn a_broker_whose_every_connection_serves_a_request_is_reported_busy() {
    let p = Broker::builder()
        .server_toml("max_connections = 1\nidle_timeout_secs = 300\n")
        .logged_in();
    let mut login = UnixStream::connect(p.broker.socket_path()).expect("connect");
    login
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    login
        .write_all(&encode_frame(&Hello::new("login")).unwrap())
        .unwrap();
    assert!(matches!(read_frame(&mut login), Response::Welcome(_)));
    login
        .write_all(
            &encode_frame(&Request::Relogin {
                method: Some(LoginMethod::Device),
            })
            .unwrap(),
        )
        .unwrap();
    // The device code is sent from inside the request: the only slot is
    // serving it, and stays so until the user approves.
    let user_code = match read_frame(&mut login) {
        Response::Login(LoginEvent::DeviceCode { user_code, .. }) => user_code,
        other => panic!("expected a device code, got {other:?}"),
    };

    let (code, out) = doctor(&p);
    eprintln!("{out}");
    assert_eq!(code, 1, "{out}");
    // Only the broker fails; doctor stops there (no login or projection
    // line), at most adding the files it can check without the broker.
    assert_eq!(
        out.lines().filter(|l| l.starts_with("FAIL")).count(),
        1,
        "{out}"
    );
    assert!(
        !out.lines()
            .any(|l| l.split_whitespace().nth(1) == Some("login")),
        "{out}"
    );
    let broker = line(&out, "broker");
    assert!(broker.starts_with("FAIL"), "{out}");
    assert!(broker.contains("is busy"), "{out}");
    assert!(
        broker.contains("every connection is serving a request"),
        "{out}"
    );
    // The broker's hint is the fix, said once.
    assert!(broker.contains("; fix: "), "{out}");
    assert!(!broker.contains("(hint:"), "{out}");
    assert!(broker.contains("max_connections"), "{out}");
    let json = doctor_json(&p);
    assert_eq!(json["exit_code"], 1, "{json}");
    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings[0]["check"], "broker");
    assert!(findings[1..].iter().all(|f| f["level"] == "ok"), "{json}");
    assert_eq!(findings[0]["level"], "fail");
    assert!(
        findings[0]["message"].as_str().unwrap().contains("is busy"),
        "{json}"
    );
    assert!(
        findings[0]["fix"]
            .as_str()
            .unwrap()
            .contains("max_connections"),
        "{json}"
    );
    assert!(
        p.logs()
            .contains("every connection is serving a request; answering busy"),
        "{}",
        p.logs()
    );

    // The login ends: its connection is idle, so doctor's takes its slot.
    assert!(p.fake.approve_device(&user_code));
    loop {
        match read_frame(&mut login) {
            Response::Login(LoginEvent::LoggedIn { .. }) => break,
            Response::Login(LoginEvent::Error { message, .. }) => panic!("login failed: {message}"),
            Response::Login(_) => {}
            other => panic!("expected login events, got {other:?}"),
        }
    }
    let (code, out) = doctor(&p);
    assert_eq!(code, 0, "{out}");
    assert!(line(&out, "broker").starts_with("ok "), "{out}");
    p.assert_no_token_in_logs();
}
