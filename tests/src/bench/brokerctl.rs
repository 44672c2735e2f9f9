//! A whole `brokerctl token` process, as a shell hook or an `auth.command`
//! runs it: fork, exec, dynamic loading, connect, handshake, token, print, exit.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

use super::latency::{sample, Latency};
use crate::harness::BrokerProcess;

/// Runs `brokerctl --socket <socket> token` `iterations` times (after
/// `warmup` runs) with the broker's client environment.
pub fn token_process(
    brokerctl: &Path,
    broker: &BrokerProcess,
    warmup: usize,
    iterations: usize,
) -> anyhow::Result<Latency> {
    sample(warmup, iterations, || {
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
    })
}
