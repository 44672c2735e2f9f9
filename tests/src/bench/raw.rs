//! The physical limit: a Unix-socket ping-pong between two threads with the
//! exact frame sizes of a token request and its answer, and nothing else — no
//! JSON, no runtime, no broker logic. Every other latency is read against it.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;

use super::throughput::{Callers, Throughput};

/// A raw ping-pong pair: a server thread answering every `request_len` bytes
/// with `response_len` bytes, and the client end.
pub struct PingPong {
    stream: UnixStream,
    request: Vec<u8>,
    response: Vec<u8>,
    server: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl PingPong {
    /// Starts the server thread on a socket in `dir` and connects to it.
    pub fn start(dir: &Path, request_len: usize, response_len: usize) -> anyhow::Result<Self> {
        let path = dir.join("raw-ping-pong.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).context("binding the raw ping-pong socket")?;
        let server = std::thread::spawn(move || -> std::io::Result<()> {
            let (mut stream, _) = listener.accept()?;
            let mut request = vec![0u8; request_len];
            let response = vec![b'x'; response_len];
            loop {
                match stream.read_exact(&mut request) {
                    Ok(()) => stream.write_all(&response)?,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        });
        let stream =
            UnixStream::connect(&path).context("connecting to the raw ping-pong socket")?;
        let _ = std::fs::remove_file(&path);
        Ok(PingPong {
            stream,
            request: vec![b'x'; request_len],
            response: vec![0u8; response_len],
            server: Some(server),
        })
    }

    /// One round trip.
    pub fn round_trip(&mut self) -> std::io::Result<()> {
        self.stream.write_all(&self.request)?;
        self.stream.read_exact(&mut self.response)
    }

    /// Closes the connection and waits for the server thread.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.stream.shutdown(std::net::Shutdown::Both)?;
        if let Some(server) = self.server.take() {
            server
                .join()
                .map_err(|_| anyhow::anyhow!("the raw ping-pong server thread panicked"))??;
        }
        Ok(())
    }
}

/// The physical limit for many blocking callers: `clients` threads doing the
/// same ping-pong on their own socket pairs against one thread that serves
/// them all with `epoll` and does nothing else. CPU time is this whole process.
pub fn throughput(
    request_len: usize,
    response_len: usize,
    clients: usize,
    duration: std::time::Duration,
) -> anyhow::Result<Throughput> {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Barrier};

    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let mut served = Vec::with_capacity(clients);
    let mut callers = Vec::with_capacity(clients);
    for i in 0..clients {
        let (caller, server_end) = UnixStream::pair()?;
        server_end.set_nonblocking(true)?;
        epoll.add(&server_end, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
        served.push((server_end, 0usize));
        callers.push(caller);
    }
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let response = vec![b'x'; response_len];
        let mut buf = vec![0u8; 64 * 1024];
        let mut events = vec![EpollEvent::empty(); 256];
        let mut open = served.len();
        while open > 0 {
            let ready = epoll
                .wait(&mut events, EpollTimeout::from(100u16))
                .map_err(std::io::Error::from)?;
            for event in &events[..ready] {
                let (stream, partial) = &mut served[event.data() as usize];
                match stream.read(&mut buf) {
                    Ok(0) => {
                        epoll.delete(&*stream).map_err(std::io::Error::from)?;
                        open -= 1;
                    }
                    Ok(n) => {
                        *partial += n;
                        while *partial >= request_len {
                            *partial -= request_len;
                            write_all_spinning(stream, &response)?;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    });

    let start = Arc::new(Barrier::new(clients + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = callers
        .into_iter()
        .map(|mut stream| {
            let (start, stop) = (start.clone(), stop.clone());
            std::thread::Builder::new().stack_size(128 * 1024).spawn(
                move || -> std::io::Result<u64> {
                    let request = vec![b'x'; request_len];
                    let mut response = vec![0u8; response_len];
                    start.wait();
                    let mut done = 0;
                    while !stop.load(Ordering::Relaxed) {
                        stream.write_all(&request)?;
                        stream.read_exact(&mut response)?;
                        done += 1;
                    }
                    Ok(done)
                },
            )
        })
        .collect::<std::io::Result<_>>()?;
    let cpu_before = super::cpu::used(None)?;
    start.wait();
    let started = Instant::now();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut requests = 0;
    for thread in threads {
        requests += thread
            .join()
            .map_err(|_| anyhow::anyhow!("a raw caller thread panicked"))??;
    }
    let cpu_after = super::cpu::used(None)?;
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the raw server thread panicked"))??;
    Ok(Throughput {
        clients,
        callers: Callers::Threads,
        requests,
        elapsed,
        broker_cpu: std::time::Duration::ZERO,
        client_cpu: cpu_after.saturating_sub(cpu_before),
    })
}

/// Writes a whole (small) answer on a non-blocking socket.
fn write_all_spinning(mut stream: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
