//! The helper dialects, each fed what the real tool sends and checked against
//! what that tool reads: `brokerctl exec` (environment + exec(2)),
//! `exec-credential` (kubectl's `KUBERNETES_EXEC_INFO` → `ExecCredential`),
//! `git-credential` (git's key=value protocol, by hand and through the real
//! `git credential`), and `completions`.

use crate::common::{brokerctl, fake_with_ttl, stderr, stdout, Broker};
use oauth_broker_tests::harness::run_with_timeout;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

/// `brokerctl token --json`, parsed.
fn token_json(setup: &Broker) -> serde_json::Value {
    let out = setup.ctl(&["token", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// brokerctl with this broker's environment plus `extra`, and `stdin`.
fn ctl_env(setup: &Broker, args: &[&str], extra: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let mut cmd = setup.broker.brokerctl_command(&brokerctl(), args);
    cmd.envs(extra.iter().copied());
    run_with_timeout(cmd, stdin, TIMEOUT).unwrap()
}

/// Tokens that live an hour: no proactive refresh interferes with counting
/// refreshes or comparing tokens.
fn long_lived() -> oauth_broker_tests::fake_server::FakeConfig {
    fake_with_ttl(Duration::from_secs(3600))
}

#[test]
fn exec_runs_the_command_in_its_place_with_the_token() {
    let setup = Broker::logged_in(long_lived());
    let current = setup.grant.as_ref().unwrap().access_token.clone();

    // The default variable, the child's exit status, and exec(2): the shell's
    // pid is brokerctl's own.
    let mut cmd = setup.broker.brokerctl_command(
        &brokerctl(),
        &[
            "exec",
            "--",
            "sh",
            "-c",
            r#"printf '%s\n%s\n' "$$" "$OAUTH_BROKER_ACCESS_TOKEN"; exit 7"#,
        ],
    );
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, [pid.to_string().as_str(), current.as_str()]);

    // --env names the variable (several allowed); the default is then unset.
    let out = setup.ctl(&[
        "exec",
        "--env",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "--env",
        "MY_TOKEN",
        "--",
        "sh",
        "-c",
        r#"printf '%s|%s|%s' "$CLAUDE_CODE_OAUTH_TOKEN" "$MY_TOKEN" "${OAUTH_BROKER_ACCESS_TOKEN-unset}""#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{current}|{current}|unset"));

    // Arguments that look like options belong to the command.
    let out = setup.ctl(&["exec", "--", "echo", "--json", "-x"]);
    assert_eq!(stdout(&out), "--json -x\n");

    // Shell conventions for a command that cannot run.
    let out = setup.ctl(&["exec", "--", "/nonexistent/agent"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr(&out).contains("cannot run /nonexistent/agent"));
    let out = setup.ctl(&["exec", "--env", "BAD-NAME", "--", "true"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(!stderr(&out).contains(&current));
}

#[test]
fn exec_does_not_run_the_command_without_a_token() {
    let setup = Broker::logged_out(long_lived());
    let marker = setup.env.path("ran");
    let out = setup.ctl(&["exec", "--", "touch", marker.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("relogin"), "{}", stderr(&out));
    assert!(!marker.exists(), "the command ran without a token");
}

/// `date -u -d @N` as an independent RFC 3339 formatter.
fn rfc3339_by_date(unix: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{unix}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    stdout(&out).trim().to_string()
}

#[test]
fn exec_credential_answers_kubectl() {
    let setup = Broker::logged_in(long_lived());
    let current = setup.grant.as_ref().unwrap().access_token.clone();
    let expires_at = token_json(&setup)["expires_at"].as_u64().unwrap();

    for (api_version, info) in [
        // What client-go sets for `apiVersion: client.authentication.k8s.io/v1`.
        (
            "client.authentication.k8s.io/v1",
            Some(
                r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}"#,
            ),
        ),
        (
            "client.authentication.k8s.io/v1beta1",
            Some(
                r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":true}}"#,
            ),
        ),
        // Run by hand, without client-go.
        ("client.authentication.k8s.io/v1", None),
    ] {
        let extra: Vec<(&str, &str)> = info
            .map(|i| ("KUBERNETES_EXEC_INFO", i))
            .into_iter()
            .collect();
        let out = ctl_env(&setup, &["exec-credential"], &extra, None);
        assert!(out.status.success(), "{}", stderr(&out));
        let cred: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(cred["apiVersion"], api_version);
        assert_eq!(cred["kind"], "ExecCredential");
        assert_eq!(cred["status"]["token"], current.as_str());
        assert_eq!(
            cred["status"]["expirationTimestamp"],
            rfc3339_by_date(expires_at).as_str()
        );
        assert!(stdout(&out).ends_with("}\n"));
    }
}

#[test]
fn git_credential_speaks_the_helper_protocol() {
    let setup = Broker::logged_in(long_lived());
    let first = token_json(&setup);
    let current = first["access_token"].as_str().unwrap().to_string();
    let expires_at = first["expires_at"].as_u64().unwrap();
    let git = |op: &str, input: &str| setup.ctl_stdin(&["git-credential", op], input.as_bytes());
    let refreshes = || setup.fake.stats().refresh_requests;

    // `get` as git 2.47 sends it for `git fetch https://git.example.com/group/repo.git`.
    let get = "capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=git.example.com\n\n";
    let out = git("get", get);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("username=oauth2\npassword={current}\npassword_expiry_utc={expires_at}\n")
    );
    // A username from the URL or `credential.username` is kept.
    let out = git(
        "get",
        "protocol=https\nhost=git.example.com\nusername=alice\n\n",
    );
    assert!(stdout(&out).starts_with("username=alice\npassword="));
    // Never over plain http, and not for other hosts with --host.
    let out = git("get", "protocol=http\nhost=git.example.com\n\n");
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");
    let out = setup.ctl_stdin(
        &["git-credential", "--host", "other.example", "get"],
        get.as_bytes(),
    );
    assert_eq!(stdout(&out), "");

    // `store` (git: the credential worked) does nothing.
    let before = refreshes();
    let approved = format!(
        "protocol=https\nhost=git.example.com\nusername=oauth2\npassword={current}\npassword_expiry_utc={expires_at}\n\n"
    );
    let out = git("store", &approved);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");
    // `erase` of a password that is not the broker's token: nothing happens.
    let out = git(
        "erase",
        "protocol=https\nhost=git.example.com\nusername=oauth2\npassword=some-other-pat\n\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(refreshes(), before);
    // Unknown operations are ignored, as the protocol asks.
    assert!(git("frobnicate", get).status.success());

    // `erase` of the current token (git: the server rejected it): one refresh,
    // the login stays.
    let out = git("erase", &approved);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(refreshes(), before + 1);
    let after = token_json(&setup);
    assert_ne!(after["access_token"], current.as_str());
    let status = setup.ctl(&["status", "--json"]);
    assert!(status.status.success(), "login lost: {}", stdout(&status));

    assert!(!stderr(&out).contains(&current));
}

/// The real git, through `git credential fill` and `reject`.
#[test]
fn real_git_uses_the_helper() {
    oauth_broker_tests::tools::ensure_system_tools();
    let setup = Broker::logged_in(long_lived());
    let current = setup.grant.as_ref().unwrap().access_token.clone();
    let helper = format!(
        "!{} --socket {} git-credential",
        brokerctl().display(),
        setup.broker.socket_path().display()
    );
    let git = |op: &str, input: &str| {
        let mut cmd = Command::new("git");
        cmd.args(["-c", "credential.helper=", "-c"])
            .arg(format!("credential.helper={helper}"))
            .args(["credential", op])
            .env_clear()
            .envs(setup.env.base_env())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .current_dir(setup.env.root());
        let out = run_with_timeout(cmd, Some(input.as_bytes()), TIMEOUT)
            .unwrap_or_else(|e| panic!("git is needed for this test (apt-get install git): {e}"));
        assert!(
            out.status.success(),
            "git credential {op}: {}",
            stderr(&out)
        );
        stdout(&out)
    };

    let filled = git(
        "fill",
        "protocol=https\nhost=git.example.com\npath=group/repo.git\n\n",
    );
    assert!(filled.contains("protocol=https\n"), "{filled}");
    assert!(filled.contains("host=git.example.com\n"), "{filled}");
    assert!(filled.contains("username=oauth2\n"), "{filled}");
    assert!(
        filled.contains(&format!("password={current}\n")),
        "{filled}"
    );

    // git's "the server said 401" path: reject → erase → one refresh.
    let before = setup.fake.stats().refresh_requests;
    git("reject", &filled);
    assert_eq!(setup.fake.stats().refresh_requests, before + 1);
    let refilled = git("fill", "protocol=https\nhost=git.example.com\n\n");
    assert!(
        !refilled.contains(&current),
        "the rejected token was served again"
    );
    assert!(refilled.contains("password="));
}

#[test]
fn completions_are_valid_shell_scripts() {
    let env = oauth_broker_tests::harness::TestEnv::new();
    for shell in ["bash", "zsh", "fish"] {
        let mut cmd = Command::new(brokerctl());
        cmd.args(["completions", shell])
            .env_clear()
            .envs(env.base_env());
        let out = run_with_timeout(cmd, None, TIMEOUT).unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("git-credential"), "{shell}");
    }
    let mut cmd = Command::new(brokerctl());
    cmd.args(["completions", "bash"])
        .env_clear()
        .envs(env.base_env());
    let script = run_with_timeout(cmd, None, TIMEOUT).unwrap().stdout;
    let path = env.path("brokerctl.bash");
    std::fs::write(&path, script).unwrap();
    if Path::new("/bin/bash").exists() {
        let out = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

/// `--json` on the admin commands too, and never a colour code in piped output.
#[test]
fn import_and_logout_speak_json_and_pipes_get_no_colour() {
    let setup = Broker::logged_out(long_lived());
    let grant = setup.fake.issue_grant();
    let out = setup.ctl_stdin(
        &["import", "--json", "-"],
        grant.to_import_json().as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let imported: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(imported["imported"], true);
    assert!(imported["expires_at"].as_u64().unwrap() > 0);

    // Not a terminal (and NO_COLOR is unset here): plain text.
    let mut cmd = setup.broker.brokerctl_command(&brokerctl(), &["status"]);
    cmd.env_remove("NO_COLOR");
    let out = run_with_timeout(cmd, None, TIMEOUT).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid"));
    assert!(!stdout(&out).contains('\x1b'), "colour codes in a pipe");

    let out = setup.ctl(&["logout", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let logged_out: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(logged_out["logged_out"], true);
    assert!(logged_out["revoked"].is_boolean());
}
