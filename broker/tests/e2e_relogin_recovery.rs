//! A relogin replaces a dead login (`relogin_required`) while clients keep
//! their connections open and get the new tokens on them, without a restart;
//! a relogin that fails or is cancelled leaves the old login as it was; a
//! login outlives the connection idle timeout; and a raw protocol client can
//! paste the redirect on the login's own connection.

use crate::common::{Broker, STEP};
use oauth_broker_client::proto::{
    decode_frame, encode_frame, Hello, LoginEvent, LoginMethod, Request, Response,
};
use oauth_broker_client::ExposeSecret;
use oauth_broker_tests::fake_server::FakeConfig;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A client speaking the wire protocol by hand on one socket, so that "the
/// same connection" is beyond doubt (the client crate reconnects silently).
struct RawConn {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl RawConn {
    fn open(socket: &Path) -> RawConn {
        let stream = UnixStream::connect(socket).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        let mut conn = RawConn {
            stream,
            buf: Vec::new(),
        };
        conn.send_frame(&Hello::new("raw-test"));
        assert!(matches!(conn.recv(), Response::Welcome(_)));
        conn
    }

    fn send_frame<T: serde::Serialize>(&mut self, message: &T) {
        self.stream
            .write_all(&encode_frame(message).unwrap())
            .unwrap();
    }

    fn send(&mut self, request: &Request) {
        self.send_frame(request);
    }

    fn recv(&mut self) -> Response {
        loop {
            if let Some((parsed, used)) = decode_frame::<Response>(&self.buf).unwrap() {
                self.buf.drain(..used);
                return parsed.unwrap();
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("a response in time");
            assert!(n > 0, "the broker closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn token(&mut self) -> Response {
        self.send(&Request::Token {
            min_valid_secs: 0,
            identity: false,
        });
        self.recv()
    }
}

#[test]
fn relogin_replaces_a_dead_login_while_clients_stay_connected() {
    let setup = Broker::logged_in(FakeConfig {
        access_ttl: Duration::from_secs(300),
        ..FakeConfig::default()
    });
    let mut raw = RawConn::open(setup.broker.socket_path());
    let Response::Token(old) = raw.token() else {
        panic!("no token")
    };
    let mut client = setup.client();
    client.token(Duration::ZERO).unwrap();

    // The login dies at the server; an API 401 makes the broker find out.
    setup.fake.revoke_all();
    raw.send(&Request::Unauthorized {
        token_id: old.token_id.clone(),
    });
    let Response::Error(frame) = raw.recv() else {
        panic!("expected relogin_required")
    };
    assert_eq!(frame.code.as_str(), "relogin_required");
    assert_eq!(setup.status_json()["state"], "relogin_required");

    let mut child = setup.relogin_json(&["--device"]);
    let event = child.expect_event("device_code");
    assert!(setup
        .fake
        .approve_device(event["user_code"].as_str().unwrap()));
    child.expect_event("logged_in");
    assert_eq!(child.finish().0, Some(0));

    // Same socket, new tokens, no restart.
    let Response::Token(new) = raw.token() else {
        panic!("no token after the relogin")
    };
    assert_ne!(new.token_id, old.token_id);
    assert!(setup
        .fake
        .is_access_token_valid(new.access_token.expose_secret()));
    let token = client.token(Duration::ZERO).unwrap();
    assert_eq!(token.token_id(), new.token_id);
    let status = setup.status_json();
    assert_eq!(status["state"], "valid");
    assert_eq!(status["relogin_required"], false);
}

#[test]
fn failed_and_cancelled_relogins_leave_the_old_login_untouched() {
    let setup = Broker::logged_in(FakeConfig {
        access_ttl: Duration::from_secs(300),
        ..FakeConfig::default()
    });
    let state_file = setup.env.state_dir().join("default").join("state.journal");
    let saved = std::fs::read(&state_file).unwrap();
    let mut raw = RawConn::open(setup.broker.socket_path());
    let Response::Token(before) = raw.token() else {
        panic!("no token")
    };

    // Denied.
    let mut child = setup.relogin_json(&["--device"]);
    let event = child.expect_event("device_code");
    assert!(setup.fake.deny_device(event["user_code"].as_str().unwrap()));
    child.expect_event("error");
    assert_eq!(child.finish().0, Some(2));

    // Cancelled (the user pressed Ctrl-C in the browser login).
    let mut child = setup.relogin_json(&["--browser"]);
    child.expect_event("authorize_url");
    child.kill();
    setup.wait_for_log("login failed", STEP);

    let Response::Token(after) = raw.token() else {
        panic!("no token")
    };
    assert_eq!(after.token_id, before.token_id);
    assert_eq!(
        std::fs::read(&state_file).unwrap(),
        saved,
        "state file untouched"
    );
    let grant = setup.grant.as_ref().unwrap();
    assert!(setup.fake.is_refresh_token_current(grant.refresh()));
    assert_eq!(setup.fake.stats().grants_issued, 1);
}

#[test]
fn a_login_outlives_the_connection_idle_timeout() {
    let setup = Broker::builder()
        .extra_toml("[server]\nidle_timeout_secs = 1\n")
        .start();
    let mut child = setup.relogin_json(&["--device"]);
    let event = child.expect_event("device_code");
    // The user needs longer than the idle timeout.
    setup.fake.wait_for_device_polls(3, STEP).unwrap();
    assert!(setup
        .fake
        .approve_device(event["user_code"].as_str().unwrap()));
    child.expect_event("logged_in");
    assert_eq!(child.finish().0, Some(0));
}

#[test]
fn a_raw_client_pastes_the_redirect_on_the_logins_own_connection() {
    let setup = Broker::logged_out(FakeConfig::default());
    let mut raw = RawConn::open(setup.broker.socket_path());
    raw.send(&Request::Relogin {
        method: Some(LoginMethod::Browser),
    });
    let Response::Login(LoginEvent::AuthorizeUrl { url, .. }) = raw.recv() else {
        panic!("expected the authorization URL")
    };
    // Unreadable pastes are refused and the login keeps waiting.
    raw.send(&Request::CompleteLogin {
        redirect_url: "nonsense".into(),
    });
    let Response::Error(frame) = raw.recv() else {
        panic!("expected an error frame")
    };
    assert_eq!(frame.code.as_str(), "bad_request");
    // Other requests must wait for the login to end.
    raw.send(&Request::Status);
    assert!(matches!(raw.recv(), Response::Error(_)));

    let location = setup.fake.authorize(&url).unwrap();
    raw.send(&Request::CompleteLogin {
        redirect_url: location,
    });
    let Response::Login(LoginEvent::LoggedIn { .. }) = raw.recv() else {
        panic!("expected logged_in")
    };
    // The connection goes on as a normal one.
    assert!(matches!(raw.token(), Response::Token(_)));
}
