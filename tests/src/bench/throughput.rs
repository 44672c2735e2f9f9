//! Tokens per second with many concurrent callers, two ways:
//!
//! * **blocking** — each caller a thread with its own persistent connection
//!   and the blocking client, as separate programs would be. Every token costs
//!   each side a sleep and a wake-up, so on a small machine this measures the
//!   kernel's context switching as much as the broker;
//! * **async** — the callers are tasks of the async client on one thread (how
//!   a load generator drives a server): what brokerd itself can serve.
//!
//! Both report the CPU time brokerd and the callers spent per token, which —
//! unlike tokens per second — does not depend on what else the machine is
//! doing.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::cpu;
use super::round_trip::MIN_VALID;
use super::setup::connect;

/// How the callers wait for their answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callers {
    /// A thread per caller, blocking client.
    Threads,
    /// Tasks of the async client on one thread.
    Async,
}

/// Result of one throughput run.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub clients: usize,
    pub callers: Callers,
    pub requests: u64,
    pub elapsed: Duration,
    /// CPU time brokerd spent (zero for the raw baseline, which has none).
    pub broker_cpu: Duration,
    /// CPU time the calling process spent.
    pub client_cpu: Duration,
}

impl Throughput {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU time per token, both sides together.
    pub fn cpu_per_token(&self) -> Duration {
        (self.broker_cpu + self.client_cpu)
            .checked_div(self.requests.max(1).try_into().unwrap_or(u32::MAX))
            .unwrap_or_default()
    }
}

/// Runs `clients` callers calling `token()` back to back for `duration`
/// against the broker process `broker_pid` at `socket`.
pub fn run(
    socket: &Path,
    broker_pid: u32,
    callers: Callers,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let measure = |work: &mut dyn FnMut() -> anyhow::Result<(u64, Duration)>| {
        let (broker0, client0) = (cpu::used(Some(broker_pid))?, cpu::used(None)?);
        let (requests, elapsed) = work()?;
        let (broker1, client1) = (cpu::used(Some(broker_pid))?, cpu::used(None)?);
        Ok::<_, anyhow::Error>(Throughput {
            clients,
            callers,
            requests,
            elapsed,
            broker_cpu: broker1.saturating_sub(broker0),
            client_cpu: client1.saturating_sub(client0),
        })
    };
    match callers {
        Callers::Threads => {
            let mut prepared = threads(socket, clients)?;
            measure(&mut || prepared.run(duration))
        }
        Callers::Async => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let connected = runtime.block_on(async_clients(socket, clients))?;
            let mut connected = Some(connected);
            measure(&mut || {
                let clients = connected.take().context("measured twice")?;
                runtime.block_on(run_async(clients, duration))
            })
        }
    }
}

/// Client threads, connected and waiting for the start.
struct Threads {
    start: Arc<Barrier>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<anyhow::Result<u64>>>,
}

fn threads(socket: &Path, clients: usize) -> anyhow::Result<Threads> {
    let start = Arc::new(Barrier::new(clients + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::with_capacity(clients);
    for i in 0..clients {
        let mut client = connect(socket).with_context(|| format!("client {i} of {clients}"))?;
        let (start, stop) = (start.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || -> anyhow::Result<u64> {
                start.wait();
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    client.token(MIN_VALID)?;
                    done += 1;
                }
                Ok(done)
            })
            .context("spawning a client thread")?;
        threads.push(thread);
    }
    Ok(Threads {
        start,
        stop,
        threads,
    })
}

impl Threads {
    fn run(&mut self, duration: Duration) -> anyhow::Result<(u64, Duration)> {
        self.start.wait();
        let started = Instant::now();
        std::thread::sleep(duration);
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = started.elapsed();
        let mut requests = 0;
        for thread in self.threads.drain(..) {
            requests += thread
                .join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        }
        Ok((requests, elapsed))
    }
}

async fn async_clients(
    socket: &Path,
    clients: usize,
) -> anyhow::Result<Vec<oauth_broker_client::tokio::Client>> {
    let mut connected = Vec::with_capacity(clients);
    for i in 0..clients {
        connected.push(
            oauth_broker_client::tokio::Client::builder()
                .socket(socket)
                .client_name("bench")
                .connect()
                .await
                .with_context(|| format!("async client {i} of {clients}"))?,
        );
    }
    Ok(connected)
}

async fn run_async(
    clients: Vec<oauth_broker_client::tokio::Client>,
    duration: Duration,
) -> anyhow::Result<(u64, Duration)> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    client.token(MIN_VALID).await?;
                    done += 1;
                }
                Ok::<u64, oauth_broker_client::Error>(done)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut requests = 0;
    for task in tasks {
        requests += task.await.context("an async client task panicked")??;
    }
    Ok((requests, elapsed))
}
