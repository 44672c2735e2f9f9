//! The benchmark's table (Markdown, pasted into the README as is) and the
//! verdict on each target of the "Performance" issue.

use std::fmt::Write as _;
use std::time::Duration;

use super::latency::{Human, Latency};
use super::storm::StateWrites;
use super::Report;

/// The clients count whose throughput has a target.
pub const THROUGHPUT_TARGET_CLIENTS: usize = 64;
/// Tokens per second wanted with [`THROUGHPUT_TARGET_CLIENTS`] clients.
pub const THROUGHPUT_TARGET: f64 = 100_000.0;
/// `brokerctl token` median wanted.
pub const BROKERCTL_TARGET: Duration = Duration::from_millis(2);
/// `brokerctl token` median wanted, relative to `oidc-token`'s.
pub const OIDC_TOKEN_RATIO_TARGET: f64 = 0.8;
/// Allowance over one token-endpoint round trip for serving a whole storm.
pub const STORM_ALLOWANCE: Duration = Duration::from_millis(5);
/// Start-to-ready wanted.
pub const STARTUP_TARGET: Duration = Duration::from_millis(50);
/// Idle resident memory wanted, KiB.
pub const IDLE_RSS_TARGET_KIB: u64 = 10 * 1024;

/// One target and whether this run met it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub target: &'static str,
    pub met: bool,
}

impl Report {
    /// Every target of the issue with this run's verdict.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let throughput = self
            .throughput
            .iter()
            .find(|t| t.clients == THROUGHPUT_TARGET_CLIENTS);
        let mut verdicts = vec![
            Verdict {
                target: "cached p50 within 2x of the raw ping-pong",
                met: ratio(self.cached.p50, self.raw.p50) <= 2.0,
            },
            Verdict {
                target: "cached p99 within 4x of the raw ping-pong",
                met: ratio(self.cached.p99, self.raw.p99) <= 4.0,
            },
            Verdict {
                target: "at least 100,000 tokens/s with 64 clients",
                met: throughput.is_some_and(|t| {
                    t.tasks.per_second().max(t.threads.per_second()) >= THROUGHPUT_TARGET
                }),
            },
            Verdict {
                target: "brokerctl token under 2 ms median",
                met: self.brokerctl.p50 < BROKERCTL_TARGET,
            },
            Verdict {
                target: "storm served within one endpoint round trip + 5 ms",
                met: self.storm.all_served <= self.storm.endpoint_round_trip.p50 + STORM_ALLOWANCE,
            },
            Verdict {
                target: "storm causes exactly one refresh",
                met: self.storm.refreshes == 1,
            },
            Verdict {
                target: "brokerd ready in under 50 ms",
                met: self.startup.p50 < STARTUP_TARGET,
            },
            Verdict {
                target: "brokerd under 10 MiB resident when idle",
                met: self.memory.idle_kib < IDLE_RSS_TARGET_KIB,
            },
        ];
        // Only when oidc-agent is installed.
        if let Some(oidc) = &self.oidc_token {
            verdicts.push(Verdict {
                target: "brokerctl token median at most 0.8x oidc-token's",
                met: ratio(self.brokerctl.p50, oidc.p50) <= OIDC_TOKEN_RATIO_TARGET,
            });
        }
        verdicts
    }

    /// The Markdown table of the run.
    pub fn markdown(&self) -> String {
        let verdicts = self.verdicts();
        let met = |i: usize| if verdicts[i].met { "yes" } else { "**no**" };
        let mut rows: Vec<[String; 4]> = Vec::new();
        rows.push([
            format!(
                "Raw Unix-socket ping-pong, {} B → {} B (the physical limit)",
                self.frames.request, self.frames.response
            ),
            percentiles(&self.raw),
            "—".into(),
            String::new(),
        ]);
        rows.push([
            "Cached token, persistent connection (client crate → brokerd)".into(),
            format!(
                "p50 {} ({:.1}×) · p99 {} ({:.1}×) · p99.9 {} ({:.1}×)",
                Human(self.cached.p50),
                ratio(self.cached.p50, self.raw.p50),
                Human(self.cached.p99),
                ratio(self.cached.p99, self.raw.p99),
                Human(self.cached.p999),
                ratio(self.cached.p999, self.raw.p999),
            ),
            "p50 ≤ 2× raw, p99 ≤ 4× raw".into(),
            format!("{} / {}", met(0), met(1)),
        ]);
        rows.push([
            "Connect + handshake + token, fresh connection".into(),
            percentiles(&self.fresh_connection),
            "—".into(),
            String::new(),
        ]);
        rows.push([
            "Connect + token in the hello's write (`connect_and_token`, as `brokerctl token`)"
                .into(),
            percentiles(&self.fresh_pipelined),
            "—".into(),
            String::new(),
        ]);
        rows.push([
            "Client-side cache (`CachingClient::token`, no IPC)".into(),
            percentiles(&self.client_cache),
            "—".into(),
            String::new(),
        ]);
        for t in &self.throughput {
            let (target, verdict) = if t.clients == THROUGHPUT_TARGET_CLIENTS {
                ("≥ 100,000 tokens/s".to_owned(), met(2).to_owned())
            } else {
                ("—".to_owned(), String::new())
            };
            rows.push([
                format!(
                    "Throughput, {} concurrent client{}",
                    t.clients,
                    if t.clients == 1 { "" } else { "s" }
                ),
                format!(
                    "async client, one thread: **{}/s** ({} CPU per token) · blocking client, a thread each: {}/s ({} CPU per token; raw ping-pong limit for {} thread{}: {}/s)",
                    thousands(t.tasks.per_second().round() as u64),
                    Human(t.tasks.cpu_per_token()),
                    thousands(t.threads.per_second().round() as u64),
                    Human(t.threads.cpu_per_token()),
                    t.clients,
                    if t.clients == 1 { "" } else { "s" },
                    thousands(t.raw.per_second().round() as u64),
                ),
                target,
                verdict,
            ]);
        }
        rows.push([
            "`brokerctl token`, whole process".into(),
            format!(
                "p50 {} · p99 {}",
                Human(self.brokerctl.p50),
                Human(self.brokerctl.p99)
            ),
            "p50 < 2 ms".into(),
            met(3).into(),
        ]);
        if let Some(oidc) = &self.oidc_token {
            rows.push([
                "`oidc-token` (oidc-agent 4), whole process, interleaved with the row above".into(),
                format!(
                    "p50 {} · p99 {} — `brokerctl token` / `oidc-token` p50: **{:.2}×**",
                    Human(oidc.p50),
                    Human(oidc.p99),
                    ratio(self.brokerctl.p50, oidc.p50)
                ),
                "ratio ≤ 0.8×".into(),
                met(8).into(),
            ]);
        }
        for (storm, verdict) in [
            (&self.storm, format!("{} / {}", met(4), met(5))),
            (&self.storm_replace, String::new()),
        ] {
            rows.push([
                format!(
                    "Refresh storm: {} clients waiting when the token expires — {}",
                    storm.clients,
                    match storm.writes {
                        StateWrites::Journal => "state journal, `fdatasync` per record (default)",
                        StateWrites::Replace => "`state.json` replaced per write (`[state] writes = \"replace\"`, as before)",
                    }
                ),
                format!(
                    "all served {} after resume (first {}; a single waiting client: {}); {} refresh{}, {} distinct token{}; one token-endpoint round trip p50 {}",
                    Human(storm.all_served),
                    Human(storm.first_served),
                    Human(storm.single_client),
                    storm.refreshes,
                    if storm.refreshes == 1 { "" } else { "es" },
                    storm.distinct_tokens,
                    if storm.distinct_tokens == 1 { "" } else { "s" },
                    Human(storm.endpoint_round_trip.p50),
                ),
                if verdict.is_empty() {
                    "—".into()
                } else {
                    "≤ round trip + 5 ms, exactly 1 refresh".into()
                },
                verdict,
            ]);
        }
        rows.push([
            "brokerd start-to-ready (saved login restored)".into(),
            format!(
                "p50 {} · max {}",
                Human(self.startup.p50),
                Human(self.startup.max)
            ),
            "< 50 ms".into(),
            met(6).into(),
        ]);
        rows.push([
            "brokerd resident memory (VmRSS), idle".into(),
            mib(self.memory.idle_kib),
            "< 10 MiB".into(),
            met(7).into(),
        ]);
        rows.push([
            format!(
                "brokerd resident memory, {} open connections",
                thousands(self.memory.connections as u64)
            ),
            mib(self.memory.busy_kib),
            "—".into(),
            String::new(),
        ]);

        let mut out = String::from("| Measurement | Result | Target | Met |\n|---|---|---|---|\n");
        for [what, result, target, verdict] in rows {
            let _ = writeln!(out, "| {what} | {result} | {target} | {verdict} |");
        }
        out
    }
}

fn percentiles(l: &Latency) -> String {
    format!(
        "p50 {} · p99 {} · p99.9 {}",
        Human(l.p50),
        Human(l.p99),
        Human(l.p999)
    )
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-12)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One line about the machine: cores, CPU model, memory, kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({model}), {:.0} GiB RAM, Linux {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
