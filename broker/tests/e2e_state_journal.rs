//! The state journal from the outside: a user upgrading from a version that
//! wrote `state.json` keeps the login, and a record cut short by a crash is
//! ignored in favour of the last complete one.

use crate::common::Broker;
use oauth_broker::journal;
use oauth_broker_client::proto::ExposeSecret;
use oauth_broker_tests::fake_server::{FakeAuthServer, FakeConfig};
use oauth_broker_tests::harness::TestEnv;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_login_saved_by_an_earlier_version_survives_the_upgrade_and_keeps_refreshing() {
    let fake = FakeAuthServer::start(FakeConfig {
        access_ttl: Duration::from_secs(600),
        ..FakeConfig::default()
    });
    let grant = fake.issue_grant();
    let env = TestEnv::new();
    let dir = env.state_dir().join("default");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .unwrap();
    // Exactly what the versions before the journal wrote: pretty JSON in
    // state.json, 0600.
    let now = unix_now();
    let old = serde_json::json!({
        "version": 1,
        "account": "default",
        "credentials": {
            "access_token": grant.access_token,
            "expires_at": now + grant.expires_in,
            "obtained_at": now,
            "refresh_token": grant.refresh(),
            "id_token": null,
            "token_type": "Bearer",
            "scopes": grant.scope.split(' ').collect::<Vec<_>>(),
            "account_id": null,
            "metadata": {},
            "refresh_hint_at": null
        },
        "refresh_in_flight": null,
        "relogin": null,
        "refresh_count": 3,
        "last_refresh_at": now,
        "spent_refresh_tokens": ["0123456789ab"]
    });
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join("state.json"))
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, &serde_json::to_vec_pretty(&old).unwrap())
        })
        .unwrap();

    let mut rig = Broker::builder().fake_server(fake).test_env(env).start();
    let token = rig.client().token(Duration::ZERO).expect("the saved login");
    assert_eq!(token.secret().expose_secret(), grant.access_token);
    assert_eq!(rig.status().refresh_count, 3);
    assert!(dir.join("state.journal").exists(), "no journal written");
    assert!(!dir.join("state.json").exists(), "state.json left behind");
    assert!(rig.logs().contains("converted to the state journal"));

    // It refreshes, persists into the journal, and survives a restart.
    let fresh = rig.client().unauthorized(&token).expect("a refresh");
    assert!(rig.server_accepts(&fresh));
    let disk = rig.disk_refresh_token().expect("a refresh token on disk");
    assert!(rig.fake.is_refresh_token_current(&disk));
    let state = rig.read_state().unwrap();
    assert_eq!(
        state.spent_refresh_tokens.first().map(String::as_str),
        Some("0123456789ab")
    );
    rig.restart();
    let again = rig.client().token(Duration::ZERO).expect("after a restart");
    assert_eq!(again.token_id(), fresh.token_id());
    let stats = rig.fake.stats();
    assert_eq!((stats.reuse_detections, stats.families_revoked), (0, 0));
    rig.assert_no_token_in_logs();
}

#[test]
fn a_record_cut_short_by_a_crash_is_ignored_and_the_last_complete_state_served() {
    let mut rig = Broker::builder().ttl(Duration::from_secs(600)).logged_in();
    let token = rig.client().token(Duration::ZERO).expect("token");
    rig.broker.kill().unwrap();

    // What a crash (or a power cut) in the middle of an append leaves: the
    // first part of a record holding a state the broker never got to use.
    let journal_path = rig.state_dir().join("state.journal");
    let bytes = std::fs::read(&journal_path).unwrap();
    let scan = journal::scan(&bytes).unwrap();
    let mut never_committed = rig.read_state().unwrap();
    never_committed.refresh_count = 99;
    let record =
        journal::encode(scan.seq + 1, &serde_json::to_vec(&never_committed).unwrap()).unwrap();
    let mut torn = bytes.clone();
    let at = scan.end as usize;
    torn[at..at + record.len() / 2].copy_from_slice(&record[..record.len() / 2]);
    std::fs::write(&journal_path, &torn).unwrap();

    rig.restart_after_kill();
    let served = rig
        .client()
        .token(Duration::ZERO)
        .expect("the last complete state");
    assert_eq!(served.token_id(), token.token_id());
    assert!(rig.server_accepts(&served));
    assert_ne!(rig.status().refresh_count, 99, "the torn record was read");
    assert!(
        rig.logs().contains("ends in an incomplete record"),
        "the torn record was not reported"
    );

    // The next write takes the torn record's place, and a restart reads it.
    let fresh = rig.client().unauthorized(&served).expect("a refresh");
    rig.restart();
    let after = rig.client().token(Duration::ZERO).expect("after a restart");
    assert_eq!(after.token_id(), fresh.token_id());
    assert!(rig.server_accepts(&after));
    let stats = rig.fake.stats();
    assert_eq!((stats.reuse_detections, stats.families_revoked), (0, 0));
}
