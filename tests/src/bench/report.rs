//! The benchmark's table (Markdown, pasted into the README as is) and the
//! verdict on each target of the "Performance" issue.

use std::fmt::Write as _;
use std::time::Duration;

use super::brokerctl::{ProcessRuns, TokenProcesses};
use super::latency::{Human, Latency};
use super::storm::{StateWrites, StormResult};
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
            self.processes.under_two_ms(),
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
        verdicts.extend(self.processes.against_oidc_token());
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
        rows.extend(self.processes.rows());
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
                storm_line(storm),
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
        let p = &self.proxy;
        let added = p.proxied.p50.saturating_sub(p.direct.p50);
        rows.push([
            "Header-injecting proxy: small POST, added latency per request (proxied − direct, keep-alive both)".into(),
            format!(
                "**+{}** at p50 (direct {}, proxied {}; p99 {} → {})",
                Human(added),
                Human(p.direct.p50),
                Human(p.proxied.p50),
                Human(p.direct.p99),
                Human(p.proxied.p99),
            ),
            "p50 ≤ +0.3 ms".into(),
            if added <= Duration::from_micros(300) { "yes" } else { "**no**" }.into(),
        ]);
        rows.push([
            "Proxy: time to first SSE event".into(),
            format!(
                "direct p50 {} · proxied p50 {} (p99 {} → {})",
                Human(p.direct_first_byte.p50),
                Human(p.proxied_first_byte.p50),
                Human(p.direct_first_byte.p99),
                Human(p.proxied_first_byte.p99),
            ),
            "—".into(),
            String::new(),
        ]);
        rows.push([
            format!(
                "Proxy: complete SSE streams/s, {} concurrent clients",
                super::proxy::STREAM_CLIENTS
            ),
            format!(
                "direct {}/s · proxied {}/s",
                thousands(p.direct_streams_per_sec.round() as u64),
                thousands(p.proxied_streams_per_sec.round() as u64),
            ),
            "—".into(),
            String::new(),
        ]);
        rows.push([
            format!(
                "brokerd resident memory, {} SSE streams open through the proxy",
                thousands(p.open_streams as u64)
            ),
            format!("{} (before: {})", mib(p.streams_kib), mib(p.idle_kib)),
            "—".into(),
            String::new(),
        ]);

        table(rows)
    }
}

impl TokenProcesses {
    /// The 2 ms target of `brokerctl token`.
    pub fn under_two_ms(&self) -> Verdict {
        Verdict {
            target: "brokerctl token under 2 ms median",
            met: self.brokerctl.wall.p50 < BROKERCTL_TARGET,
        }
    }

    /// The ratio target, when `oidc-token` ran.
    pub fn against_oidc_token(&self) -> Option<Verdict> {
        Some(Verdict {
            target: "brokerctl token median at most 0.8x oidc-token's",
            met: self.wall_ratio()? <= OIDC_TOKEN_RATIO_TARGET,
        })
    }

    /// `brokerctl token` / `oidc-token`, wall-time medians.
    pub fn wall_ratio(&self) -> Option<f64> {
        let oidc = self.oidc_token?;
        Some(ratio(self.brokerctl.wall.p50, oidc.wall.p50))
    }

    /// `brokerctl token` / `oidc-token`, CPU-time medians.
    pub fn cpu_ratio(&self) -> Option<f64> {
        let oidc = self.oidc_token?;
        Some(ratio(self.brokerctl.cpu.p50, oidc.cpu.p50))
    }

    /// Every verdict of these rows.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut verdicts = vec![self.under_two_ms()];
        verdicts.extend(self.against_oidc_token());
        verdicts
    }

    /// A table of these rows alone (`bench --only token`).
    pub fn markdown(&self) -> String {
        table(self.rows())
    }

    /// The table rows: `brokerctl token`, `oidc-token`, the C no-op.
    pub fn rows(&self) -> Vec<[String; 4]> {
        let yes = |v: Verdict| if v.met { "yes" } else { "**no**" }.to_owned();
        let mut rows = vec![[
            "`brokerctl token`, whole process".into(),
            process(&self.brokerctl),
            "p50 < 2 ms".into(),
            yes(self.under_two_ms()),
        ]];
        if let (Some(oidc), Some(wall), Some(cpu), Some(verdict)) = (
            &self.oidc_token,
            self.wall_ratio(),
            self.cpu_ratio(),
            self.against_oidc_token(),
        ) {
            rows.push([
                "`oidc-token` (oidc-agent 4), whole process, interleaved with the row above".into(),
                format!(
                    "{} — `brokerctl token` / `oidc-token`: p50 **{wall:.2}×**, CPU p50 {cpu:.2}×",
                    process(oidc)
                ),
                "ratio ≤ 0.8×".into(),
                yes(verdict),
            ]);
        }
        rows.push([
            "C no-op (`true`), whole process, interleaved with the rows above: the floor".into(),
            process(&self.noop),
            "—".into(),
            String::new(),
        ]);
        rows
    }
}

fn process(runs: &ProcessRuns) -> String {
    format!(
        "p50 {} · p99 {} · CPU p50 {}",
        Human(runs.wall.p50),
        Human(runs.wall.p99),
        Human(runs.cpu.p50)
    )
}

fn table(rows: Vec<[String; 4]>) -> String {
    let mut out = String::from("| Measurement | Result | Target | Met |\n|---|---|---|---|\n");
    for [what, result, target, verdict] in rows {
        let _ = writeln!(out, "| {what} | {result} | {target} | {verdict} |");
    }
    out
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

/// What one storm measured, in one line (a table cell, or a line of
/// `bench --only storm`).
pub fn storm_line(storm: &StormResult) -> String {
    format!(
        "all served {} after resume (first {}; a single waiting client: {}); brokerd CPU {} ({} per client); {} refresh{}, {} distinct token{}; one token-endpoint round trip p50 {}",
        Human(storm.all_served),
        Human(storm.first_served),
        Human(storm.single_client),
        Human(storm.broker_cpu),
        Human(storm.broker_cpu / storm.clients.max(1) as u32),
        storm.refreshes,
        if storm.refreshes == 1 { "" } else { "es" },
        storm.distinct_tokens,
        if storm.distinct_tokens == 1 { "" } else { "s" },
        Human(storm.endpoint_round_trip.p50),
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
