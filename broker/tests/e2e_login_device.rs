//! Device logins (RFC 8628) run by the real brokerd against the fake
//! authorization server, driven through `brokerctl relogin --device --json`
//! with the test acting as the user: approval, `slow_down` (measured polling
//! gaps), denial, expiry, transient failures, a busy second login, a client
//! that goes away, and logout's revocation afterwards.

use crate::common::{stdout, Broker, STEP};
use oauth_broker_tests::fake_server::{FakeConfig, Fault};
use std::time::Duration;

/// Starts a device login and returns the child and the `device_code` event.
fn start_device_login(setup: &Broker) -> (crate::common::LoginChild, serde_json::Value) {
    let mut child = setup.relogin_json(&["--device"]);
    let event = child.expect_event("device_code");
    (child, event)
}

#[test]
fn device_login_from_nothing_with_the_user_approving() {
    let setup = Broker::logged_out(FakeConfig::default());
    assert_eq!(setup.status_json()["state"], "logged_out");

    let (mut child, event) = start_device_login(&setup);
    let issued = setup
        .fake
        .last_device_code()
        .expect("a device code was issued");
    assert_eq!(event["user_code"], issued.user_code.as_str());
    assert_eq!(event["verification_uri"], issued.verification_uri.as_str());
    assert_eq!(
        event["verification_uri_complete"],
        issued.verification_uri_complete.as_str()
    );
    assert_eq!(event["expires_in"], 600);

    // The user takes a moment: the broker keeps polling at the interval.
    setup.fake.wait_for_device_polls(3, STEP).unwrap();
    assert!(setup.fake.approve_device(&issued.user_code));
    let done = child.expect_event("logged_in");
    assert_eq!(done["account"], "default");
    assert!(done["expires_at"].as_u64().unwrap() > 0);
    let (code, err) = child.finish();
    assert_eq!(code, Some(0), "{err}");

    // RFC 8628 pacing: the first poll at once, then at least `interval` apart.
    let polls = setup.fake.device_polls();
    assert!(polls.len() >= 4, "{} polls", polls.len());
    assert!(
        polls[0].duration_since(issued.issued_at) < Duration::from_secs(1),
        "the first poll must not wait a whole interval"
    );
    for pair in polls.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(gap >= Duration::from_millis(990), "polled after {gap:?}");
    }

    // The broker serves the new login and keeps it alive.
    let mut client = setup.client();
    let token = client.token(Duration::ZERO).unwrap();
    assert!(setup
        .fake
        .is_access_token_valid(oauth_broker_client::ExposeSecret::expose_secret(&token)));
    let status = setup.status_json();
    assert_eq!(status["state"], "valid");
    assert_eq!(setup.fake.stats().grants_issued, 1);
    setup.assert_no_token_in_logs();
}

#[test]
fn slow_down_adds_five_seconds_for_good() {
    let setup = Broker::logged_out(FakeConfig::default());
    setup.fake.set_device_slow_down(1);
    let (mut child, event) = start_device_login(&setup);
    // The user approves at once; the first poll is still told to slow down.
    assert!(setup
        .fake
        .approve_device(event["user_code"].as_str().unwrap()));
    child.expect_event("logged_in");
    assert_eq!(child.finish().0, Some(0));

    let polls = setup.fake.device_polls();
    assert_eq!(polls.len(), 2, "slow_down, then the approved poll");
    let gap = polls[1].duration_since(polls[0]);
    // interval (1 s) + 5 s.
    assert!(
        gap >= Duration::from_millis(5990),
        "polled again after {gap:?}"
    );
}

#[test]
fn denial_ends_the_login_and_keeps_the_previous_one() {
    let setup = Broker::logged_in(FakeConfig {
        access_ttl: Duration::from_secs(300),
        ..FakeConfig::default()
    });
    let mut client = setup.client();
    let before = client.token(Duration::ZERO).unwrap();

    let (mut child, event) = start_device_login(&setup);
    setup.fake.wait_for_device_polls(1, STEP).unwrap();
    assert!(setup.fake.deny_device(event["user_code"].as_str().unwrap()));
    let error = child.expect_event("error");
    assert_eq!(error["code"], "relogin_required");
    assert!(
        error["message"].as_str().unwrap().contains("access_denied"),
        "{error}"
    );
    assert!(error["hint"]
        .as_str()
        .unwrap()
        .contains("brokerctl relogin"));
    let (code, _) = child.finish();
    assert_eq!(code, Some(2), "exit code: log in again");

    // The old login is untouched and still served on the same connection.
    let after = client.token(Duration::ZERO).unwrap();
    assert_eq!(after.token_id(), before.token_id());
    assert_eq!(setup.status_json()["state"], "valid");
    let grant = setup.grant.as_ref().unwrap();
    assert!(setup.fake.is_refresh_token_current(grant.refresh()));
}

#[test]
fn the_codes_expiry_is_honoured() {
    let setup = Broker::logged_out(FakeConfig {
        device_code_ttl: Duration::from_secs(2),
        ..FakeConfig::default()
    });
    let (mut child, _event) = start_device_login(&setup);
    let issued = setup.fake.last_device_code().unwrap();
    let error = child.expect_event("error");
    assert_eq!(error["code"], "relogin_required");
    assert!(
        error["message"].as_str().unwrap().contains("expired_token"),
        "{error}"
    );
    assert_eq!(child.finish().0, Some(2));
    // Nothing is polled once the code is dead (a poll sent just before the
    // deadline may arrive a little after it).
    for poll in setup.fake.device_polls() {
        assert!(poll.duration_since(issued.issued_at) <= Duration::from_secs(3));
    }
    assert_eq!(setup.status_json()["state"], "logged_out");
}

#[test]
fn an_expired_token_answer_ends_the_login() {
    let setup = Broker::logged_out(FakeConfig::default());
    let (mut child, event) = start_device_login(&setup);
    setup.fake.wait_for_device_polls(1, STEP).unwrap();
    assert!(setup
        .fake
        .expire_device(event["user_code"].as_str().unwrap()));
    let error = child.expect_event("error");
    assert!(
        error["message"].as_str().unwrap().contains("expired_token"),
        "{error}"
    );
    assert_eq!(child.finish().0, Some(2));
}

#[test]
fn transient_poll_failures_are_retried() {
    let setup = Broker::logged_out(FakeConfig::default());
    setup.fake.push_fault(Fault::Status(503));
    setup.fake.push_fault(Fault::DropConnection);
    let (mut child, event) = start_device_login(&setup);
    setup.fake.wait_for_device_polls(3, STEP).unwrap();
    assert!(setup
        .fake
        .approve_device(event["user_code"].as_str().unwrap()));
    child.expect_event("logged_in");
    assert_eq!(child.finish().0, Some(0));
    assert_eq!(setup.fake.stats().faults_injected, 2);
}

#[test]
fn persistent_poll_failures_give_up_as_upstream_unavailable() {
    let setup = Broker::builder()
        .extra_toml("[login]\ndevice_transient_retries = 2\n")
        .start();
    setup.fake.set_persistent_fault(Some(Fault::Status(503)));
    let (mut child, _) = start_device_login(&setup);
    let error = child.expect_event("error");
    assert_eq!(error["code"], "upstream_unavailable");
    assert!(
        error["message"].as_str().unwrap().contains("http_503"),
        "{error}"
    );
    assert_eq!(child.finish().0, Some(4), "exit code: upstream unavailable");
    assert_eq!(
        setup.fake.stats().device_polls,
        3,
        "one try and two retries"
    );
}

#[test]
fn a_second_login_is_busy_and_a_vanished_client_cancels_its_login() {
    let setup = Broker::logged_out(FakeConfig::default());
    let (mut first, _) = start_device_login(&setup);

    let mut second = setup.relogin_json(&["--device"]);
    let busy = second.expect_event("error");
    assert_eq!(busy["code"], "busy");
    let (code, _) = second.finish();
    assert_eq!(code, Some(1));

    // The user closes the terminal: the broker cancels the login at once.
    first.kill();
    setup.wait_for_log("cancelling the login", STEP);
    setup.wait_for_log("login failed", STEP);
    let polls = setup.fake.stats().device_polls;

    // Not busy any more; the new login works.
    let (mut third, event) = start_device_login(&setup);
    assert!(setup
        .fake
        .approve_device(event["user_code"].as_str().unwrap()));
    third.expect_event("logged_in");
    assert_eq!(third.finish().0, Some(0));
    // The cancelled login stopped polling (only the new one's polls came).
    assert!(setup.fake.stats().device_polls <= polls + 2);
}

#[test]
fn logout_after_a_device_login_revokes_at_the_server() {
    let setup = Broker::logged_out(FakeConfig::default());
    let (mut child, event) = start_device_login(&setup);
    assert!(setup
        .fake
        .approve_device(event["user_code"].as_str().unwrap()));
    child.expect_event("logged_in");
    assert_eq!(child.finish().0, Some(0));
    let refresh_token = setup.fake.families()[0]
        .current_refresh_token
        .clone()
        .unwrap();

    let out = setup.ctl(&["logout"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("server confirmed"),
        "{}",
        stdout(&out)
    );
    assert_eq!(setup.fake.revoked_tokens(), vec![refresh_token.clone()]);
    assert!(!setup.fake.is_refresh_token_current(&refresh_token));
    assert_eq!(setup.status_json()["state"], "logged_out");
}

#[test]
fn human_mode_prints_the_url_and_code_and_no_countdown_when_piped() {
    use std::io::BufRead;
    let setup = Broker::logged_out(FakeConfig::default());
    let mut child = setup
        .broker
        .brokerctl_command(&crate::common::brokerctl(), &["relogin", "--device"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let issued = setup.fake.last_device_code().unwrap();
    assert_eq!(
        first,
        format!("To log in, open {}", issued.verification_uri)
    );
    let second = lines.next().unwrap().unwrap();
    assert_eq!(second, format!("and enter the code: {}", issued.user_code));
    assert!(setup.fake.approve_device(&issued.user_code));
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(
        rest.last()
            .unwrap()
            .starts_with("Logged in: account default"),
        "{rest:?}"
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    // Piped stderr gets no countdown.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
