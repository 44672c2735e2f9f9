//! The header-injecting proxy against a direct call of the same upstream (the
//! fake upstream on loopback), in one run: added latency per request, time to
//! the first streamed byte, streams per second with 64 concurrent clients,
//! and brokerd's resident memory with 1,000 streams open through it.
//!
//! Both sides use the same HTTP client (reqwest, keep-alive), so what differs
//! is the proxy's hop: its key check, the token from the snapshot, the header
//! rewrite and the second loopback connection.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use oauth_broker_client::ExposeSecret as _;

use super::latency::Latency;
use super::memory::{raise_fd_limit, vm_rss_kib};
use super::setup::BenchBroker;
use crate::fake_upstream::FakeUpstream;

/// What the proxy rows show.
#[derive(Debug, Clone)]
pub struct ProxyBench {
    /// A small POST answered with JSON, straight to the upstream.
    pub direct: Latency,
    /// The same through the proxy (interleaved with `direct`).
    pub proxied: Latency,
    /// Time to the first SSE event, straight to the upstream.
    pub direct_first_byte: Latency,
    /// The same through the proxy.
    pub proxied_first_byte: Latency,
    /// Complete SSE streams per second with [`STREAM_CLIENTS`] clients.
    pub direct_streams_per_sec: f64,
    /// The same through the proxy.
    pub proxied_streams_per_sec: f64,
    /// brokerd's VmRSS before the streams were opened.
    pub idle_kib: u64,
    /// brokerd's VmRSS with `open_streams` streams open through the proxy.
    pub streams_kib: u64,
    /// Streams held open.
    pub open_streams: usize,
}

/// Concurrent clients of the stream throughput rows.
pub const STREAM_CLIENTS: usize = 64;

/// Runs the proxy measurements: `requests` samples per latency row, a
/// throughput run of `duration`, `open_streams` for the memory row.
pub fn run(
    brokerd: &Path,
    requests: usize,
    duration: Duration,
    open_streams: usize,
) -> anyhow::Result<ProxyBench> {
    raise_fd_limit(open_streams * 3 + 256);
    let fast = FakeUpstream::start(Arc::new(|_| true));
    fast.release_streams();
    let held = FakeUpstream::start(Arc::new(|_| true));
    let extra = format!(
        "[[proxy]]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n\n[[proxy]]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n",
        fast.origin(),
        held.origin()
    );
    let bench = BenchBroker::logged_in_with(brokerd, Duration::from_secs(3600), &extra)?;
    let mut client = bench.client()?;
    let key = client
        .proxy_key(Some("bench"))
        .context("issuing a proxy key")?
        .key
        .expose_secret()
        .to_string();
    let status = client.status()?;
    let proxy_fast = status.proxies[0].listen.clone();
    let proxy_held = status.proxies[1].listen.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(usize::MAX)
            .build()?;
        let warmup = (requests / 10).clamp(1, 1000);
        let direct_url = format!("{}/v1/echo", fast.origin());
        let proxied_url = format!("{proxy_fast}/v1/echo");
        let mut direct = Vec::with_capacity(requests);
        let mut proxied = Vec::with_capacity(requests);
        for i in 0..warmup + requests {
            let d = post(&http, &direct_url, &key).await?;
            let p = post(&http, &proxied_url, &key).await?;
            if i >= warmup {
                direct.push(d);
                proxied.push(p);
            }
        }
        let mut direct_first = Vec::with_capacity(requests);
        let mut proxied_first = Vec::with_capacity(requests);
        for i in 0..warmup + requests {
            let d = first_byte(&http, &format!("{}/sse", fast.origin()), &key).await?;
            let p = first_byte(&http, &format!("{proxy_fast}/sse"), &key).await?;
            if i >= warmup {
                direct_first.push(d);
                proxied_first.push(p);
            }
        }
        let direct_streams =
            streams_per_sec(&http, &format!("{}/sse", fast.origin()), &key, duration).await?;
        let proxied_streams =
            streams_per_sec(&http, &format!("{proxy_fast}/sse"), &key, duration).await?;

        let pid = bench.broker.pid();
        let idle_kib = vm_rss_kib(pid)?;
        let mut open = Vec::with_capacity(open_streams);
        for _ in 0..open_streams {
            let mut response = http
                .get(format!("{proxy_held}/sse"))
                .bearer_auth(&key)
                .send()
                .await?;
            response.chunk().await?.context("a first event")?;
            open.push(response);
        }
        let streams_kib = vm_rss_kib(pid)?;
        held.release_streams();
        drop(open);
        Ok(ProxyBench {
            direct: Latency::of(direct),
            proxied: Latency::of(proxied),
            direct_first_byte: Latency::of(direct_first),
            proxied_first_byte: Latency::of(proxied_first),
            direct_streams_per_sec: direct_streams,
            proxied_streams_per_sec: proxied_streams,
            idle_kib,
            streams_kib,
            open_streams,
        })
    })
}

async fn post(http: &reqwest::Client, url: &str, key: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let response = http
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(r#"{"model":"m","input":"ping"}"#)
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "status {}", response.status());
    response.bytes().await?;
    Ok(started.elapsed())
}

async fn first_byte(http: &reqwest::Client, url: &str, key: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut response = http.get(url).bearer_auth(key).send().await?;
    response.chunk().await?.context("a first event")?;
    let elapsed = started.elapsed();
    while response.chunk().await?.is_some() {}
    Ok(elapsed)
}

async fn streams_per_sec(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    duration: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(STREAM_CLIENTS);
    for _ in 0..STREAM_CLIENTS {
        let (http, url, key) = (http.clone(), url.to_string(), key.to_string());
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let mut response = http.get(&url).bearer_auth(&key).send().await?;
                while response.chunk().await?.is_some() {}
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
