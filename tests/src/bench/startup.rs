//! brokerd start-to-ready: from spawning the process until its socket accepts
//! a connection, for a broker that restores a saved login (the usual start at
//! login time or by socket activation).

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::latency::Latency;
use super::setup::{config_for, BenchBroker};
use crate::harness::{BrokerProcess, BrokerSpec};

/// Give up on one start after this long.
const START_LIMIT: Duration = Duration::from_secs(10);

/// Starts brokerd `iterations` times on the same (logged-in) state and stops
/// it with SIGTERM each time.
pub fn start_to_ready(brokerd: &Path, iterations: usize) -> anyhow::Result<Latency> {
    let bench = BenchBroker::logged_in(brokerd, Duration::from_secs(3600))?;
    let BenchBroker {
        mut broker,
        fake,
        env,
    } = bench;
    broker.terminate()?;
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let mut spec = BrokerSpec::new(brokerd, &env, config_for(&fake));
        spec.rust_log = "info".to_owned();
        let started = Instant::now();
        let mut broker = BrokerProcess::spawn(spec)?;
        loop {
            if UnixStream::connect(broker.socket_path()).is_ok() {
                break;
            }
            if started.elapsed() > START_LIMIT || broker.try_wait()?.is_some() {
                bail!(
                    "brokerd did not become ready within {START_LIMIT:?}; log:\n{}",
                    broker.logs()
                );
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        samples.push(started.elapsed());
        broker.terminate()?;
    }
    Ok(Latency::of(samples))
}
