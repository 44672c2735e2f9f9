//! A whole `brokerctl token` process, as a shell hook or an `auth.command`
//! runs it: fork, exec, dynamic loading, connect, handshake, token, print, exit
//! — and, when oidc-agent is installed, `oidc-token` doing the same job beside
//! it, run by run in turn so that both see the same machine load.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::latency::{samples, Latency};
use super::oidc_token::OidcAgent;
use crate::harness::BrokerProcess;

/// Runs `brokerctl --socket <socket> token` `iterations` times (after
/// `warmup` runs) with the broker's client environment.
pub fn token_process(
    brokerctl: &Path,
    broker: &BrokerProcess,
    warmup: usize,
    iterations: usize,
) -> anyhow::Result<Latency> {
    samples(warmup, iterations, || brokerctl_token(brokerctl, broker)).map(Latency::of)
}

/// `brokerctl token` and `oidc-token` interleaved: run i of each follows run
/// i of the other, so a burst of load hits both alike.
pub fn token_process_beside_oidc_token(
    brokerctl: &Path,
    broker: &BrokerProcess,
    oidc: &OidcAgent,
    warmup: usize,
    iterations: usize,
) -> anyhow::Result<(Latency, Latency)> {
    for _ in 0..warmup {
        brokerctl_token(brokerctl, broker)?;
        oidc.token()?;
    }
    let mut ours = Vec::with_capacity(iterations);
    let mut theirs = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        ours.push(timed(|| brokerctl_token(brokerctl, broker))?);
        theirs.push(timed(|| oidc.token())?);
    }
    Ok((Latency::of(ours), Latency::of(theirs)))
}

fn timed(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    f()?;
    Ok(started.elapsed())
}

fn brokerctl_token(brokerctl: &Path, broker: &BrokerProcess) -> anyhow::Result<()> {
    let out = Command::new(brokerctl)
        .arg("--socket")
        .arg(broker.socket_path())
        .arg("token")
        .env_clear()
        .envs(broker.client_env().iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {}", brokerctl.display()))?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!(
            "brokerctl token failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
