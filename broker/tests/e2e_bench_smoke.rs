//! Keeps the benchmark (`--bin bench`) working: every measurement runs with
//! tiny counts against the real brokerd and brokerctl. No timing is asserted —
//! only what must hold however fast the machine is (one refresh for the whole
//! storm, one token for every waiter, a complete table).

use crate::common::{brokerctl, brokerd};
use oauth_broker_tests::bench::{self, BenchConfig};
use oauth_broker_tests::binaries::Binaries;

#[test]
fn every_measurement_runs_and_the_table_is_complete() {
    let binaries = Binaries::new(brokerd(), brokerctl());
    let config = BenchConfig::smoke();
    let report = bench::run(&binaries, &config, |_| {}).expect("the benchmark runs");

    assert_eq!(report.raw.samples, config.round_trips);
    assert_eq!(report.cached.samples, config.round_trips);
    assert_eq!(report.fresh_connection.samples, config.fresh_connections);
    assert_eq!(report.fresh_pipelined.samples, config.fresh_connections);
    assert_eq!(report.client_cache.samples, config.cache_hits);
    assert_eq!(
        report.processes.brokerctl.wall.samples,
        config.brokerctl_runs
    );
    assert_eq!(report.processes.noop.cpu.samples, config.brokerctl_runs);
    assert_eq!(report.startup.samples, config.startups);
    assert_eq!(report.throughput.len(), config.throughput_clients.len());
    assert!(report
        .throughput
        .iter()
        .all(|t| t.raw.requests > 0 && t.threads.requests > 0 && t.tasks.requests > 0));
    assert!(report.frames.request > 4 && report.frames.response > report.frames.request);

    // Single flight, whatever the speed: one refresh, one token for everybody.
    assert_eq!(report.storm.clients, config.storm_clients);
    assert_eq!(report.storm.refreshes, 1, "{:?}", report.storm);
    assert_eq!(report.storm.distinct_tokens, 1, "{:?}", report.storm);
    // The same with state.json replaced per write, as before the journal.
    assert_eq!(
        report.storm_replace.refreshes, 1,
        "{:?}",
        report.storm_replace
    );
    assert_eq!(
        report.storm_replace.distinct_tokens, 1,
        "{:?}",
        report.storm_replace
    );

    assert!(report.memory.idle_kib > 0);
    assert!(report.memory.busy_kib > 0);

    let table = report.markdown();
    // `oidc-token` is measured beside `brokerctl token` when oidc-agent is
    // installed, with a verdict and a row of its own.
    if let Some(oidc) = &report.processes.oidc_token {
        assert_eq!(oidc.wall.samples, config.brokerctl_runs);
        assert!(table.contains("`oidc-token`"), "{table}");
    }
    let with_oidc = usize::from(report.processes.oidc_token.is_some());
    assert_eq!(report.verdicts().len(), 8 + with_oidc);
    for row in [
        "Raw Unix-socket ping-pong",
        "Cached token",
        "fresh connection",
        "in the hello's write",
        "Client-side cache",
        "Throughput",
        "brokerctl token",
        "Refresh storm",
        "state journal",
        "replaced per write",
        "start-to-ready",
        "resident memory",
        "C no-op",
    ] {
        assert!(table.contains(row), "{row} missing from:\n{table}");
    }
}
