//! No token ever appears in the broker's logs (at trace level, every target) or
//! in brokerctl's stderr, through a whole life: import, refreshes, a 401 report,
//! faults, a revoked grant, status and logout.

use crate::common::{brokerctl, brokerd, default_config, fake_with_ttl, stderr};
use oauth_broker_client::Client;
use oauth_broker_tests::fake_server::{FakeAuthServer, Fault};
use oauth_broker_tests::harness::{BrokerProcess, BrokerSpec, TestEnv};
use std::time::Duration;

#[test]
fn no_token_in_trace_logs_or_stderr() {
    let env = TestEnv::new();
    let fake = FakeAuthServer::start(fake_with_ttl(Duration::from_secs(2)));
    let mut spec = BrokerSpec::new(brokerd(), &env, default_config(&fake));
    spec.rust_log = "trace".to_string();
    let broker = BrokerProcess::start(spec).unwrap();
    let mut stderr_seen = String::new();

    let grant = fake.issue_grant();
    let out = broker.brokerctl_with_stdin(
        &brokerctl(),
        &["import", "-"],
        Some(grant.to_import_json().as_bytes()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    stderr_seen.push_str(&stderr(&out));

    let mut client = Client::builder()
        .socket(broker.socket_path())
        .connect()
        .unwrap();
    let token = client.token(Duration::ZERO).unwrap();
    let token = client.unauthorized(&token).unwrap();
    // A couple of proactive refreshes, a transient fault and a truncated body.
    fake.push_fault(Fault::Status(503));
    fake.push_fault(Fault::TruncatedJson);
    fake.wait_for_refresh_requests(4, Duration::from_secs(20))
        .unwrap();
    let _ = client.token(Duration::from_secs(1));
    for args in [&["status"][..], &["status", "--json"], &["token", "--json"]] {
        let out = broker.brokerctl(&brokerctl(), args);
        stderr_seen.push_str(&stderr(&out));
    }
    // A dead grant: the refusal is logged, the refresh token is not.
    fake.revoke_all();
    let _ = client.unauthorized(&token);
    for args in [&["token"][..], &["status"], &["logout"]] {
        let out = broker.brokerctl(&brokerctl(), args);
        stderr_seen.push_str(&stderr(&out));
    }
    drop(client);
    drop(broker);

    let logs = env.all_logs();
    assert!(
        logs.contains("TRACE") || logs.contains("trace"),
        "trace logging was on"
    );
    assert!(
        logs.contains("refreshed access token"),
        "the scenario ran:\n{logs}"
    );
    let secrets = fake.all_issued_tokens();
    assert!(secrets.len() >= 6, "{} tokens issued", secrets.len());
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a token leaked into the logs"
        );
        assert!(
            !stderr_seen.contains(secret.as_str()),
            "a token leaked into brokerctl stderr"
        );
    }
    println!(
        "checked {} tokens against {} bytes of trace logs",
        secrets.len(),
        logs.len()
    );
}

#[test]
fn a_server_echoing_the_refresh_token_in_its_error_does_not_leak_it() {
    use crate::common::{fake_with_ttl, Broker};
    let setup = Broker::logged_in(fake_with_ttl(Duration::from_secs(300)));
    let refresh_token = setup.grant.as_ref().unwrap().refresh_token.clone().unwrap();
    setup.fake.push_fault(Fault::Custom {
        status: 400,
        content_type: "application/json".to_string(),
        body: serde_json::json!({
            "error": "invalid_request",
            "error_description": format!("malformed refresh_token {refresh_token}"),
        })
        .to_string(),
    });
    let mut client = setup.client();
    let token = client.token(Duration::ZERO).unwrap();
    let err = client.unauthorized(&token).unwrap_err();
    assert!(!err.to_string().contains(&refresh_token), "{err}");
    let out = setup.ctl(&["status", "--json"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("invalid_request"), "{status}");
    assert!(status.contains("[REDACTED]"), "{status}");
    assert!(!status.contains(&refresh_token));
    assert!(
        !setup.logs().contains(&refresh_token),
        "the echoed token reached the logs"
    );
}
