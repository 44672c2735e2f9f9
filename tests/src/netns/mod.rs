//! Running a real tool whose URLs are fixed (no setting or variable redirects
//! them) against the fakes, offline.
//!
//! The tool runs in a private user + network + mount namespace (`unshare
//! -rnm`, no privileges needed): a hosts file bind-mounted over `/etc/hosts`
//! maps the real hostnames to loopback addresses of the namespace's own, and
//! the namespace has no other interface, so nothing it sends can leave the
//! machine. Inside, `relay.py` (run with the tool's own Python) listens on
//! those addresses and forwards each connection to a Unix socket — a file, so
//! it crosses network namespaces where TCP cannot — and the [`Netns`] here
//! serves those sockets from the test process: byte for byte to a fake that
//! speaks TLS itself, or terminating TLS (with the fake ChatGPT backend's
//! certificate, which names the real hosts) in front of a plain-HTTP fake.
//! The tool trusts the one throw-away CA through its CA variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

/// The relay run inside the namespace.
const RELAY_PY: &str = include_str!("relay.py");

/// Where a route's connections go.
pub enum Upstream {
    /// Forwarded byte for byte (the upstream speaks TLS itself).
    Raw(SocketAddr),
    /// TLS terminated here with `config`, plain bytes forwarded.
    TerminateTls {
        config: Arc<rustls::ServerConfig>,
        upstream: SocketAddr,
    },
}

/// Real hostnames (all on `port`) answered by one upstream.
pub struct Route {
    pub hostnames: Vec<String>,
    pub port: u16,
    pub upstream: Upstream,
}

/// The running host side of the namespace's routes; stops when dropped.
pub struct Netns {
    dir: PathBuf,
    relay_args: Vec<String>,
    lifecycle: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Netns {
    /// Whether this machine lets an unprivileged process make the namespace.
    pub fn available() -> Result<(), String> {
        let out = Command::new("unshare")
            .args(["-rnm", "true"])
            .output()
            .map_err(|e| format!("cannot run unshare (util-linux): {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`unshare -rnm true` failed ({}): user namespaces are not allowed here ({}); the Hermes Agent test needs them: allow them (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1, or a container that permits unshare)",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Serves `routes` from `dir` (sockets, hosts file, relay script).
    /// `sinkholes` are hostnames the tool looks up on its own (update checks,
    /// model catalogues): they resolve to the namespace's 127.0.0.1, where
    /// nothing listens, so they fail at once instead of waiting for DNS.
    pub fn start(dir: &Path, routes: Vec<Route>, sinkholes: &[&str]) -> Netns {
        std::fs::create_dir_all(dir).expect("netns: create its directory");
        let mut hosts = format!("127.0.0.1 localhost {}\n", sinkholes.join(" "));
        let mut relay_args = Vec::new();
        let mut served = Vec::new();
        for (i, route) in routes.into_iter().enumerate() {
            let address = format!("127.0.0.{}", i + 2);
            hosts.push_str(&format!("{address} {}\n", route.hostnames.join(" ")));
            let socket = dir.join(format!("route-{i}.sock"));
            let _ = std::fs::remove_file(&socket);
            let listener = std::os::unix::net::UnixListener::bind(&socket).expect("netns: bind");
            listener.set_nonblocking(true).expect("netns: nonblocking");
            relay_args.push(format!("{address}:{}={}", route.port, socket.display()));
            served.push((listener, route.upstream));
        }
        std::fs::write(dir.join("hosts"), hosts).expect("netns: write hosts");
        std::fs::write(
            dir.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .expect("netns: write resolv.conf");
        std::fs::write(dir.join("relay.py"), RELAY_PY).expect("netns: write relay.py");

        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("netns-routes".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("netns: tokio runtime");
                rt.block_on(async move {
                    for (listener, upstream) in served {
                        let listener = tokio::net::UnixListener::from_std(listener)
                            .expect("netns: register listener");
                        tokio::spawn(serve(listener, Arc::new(upstream)));
                    }
                    let _ = stop_rx.await;
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("netns: spawn thread");
        Netns {
            dir: dir.to_path_buf(),
            relay_args,
            lifecycle: Some((stop_tx, thread)),
        }
    }

    /// `program` (with the caller's arguments and environment added to the
    /// returned command) run inside the namespace; `python` runs the relay.
    pub fn command(&self, python: &Path, program: &Path) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.arg("-rnm")
            .arg("sh")
            .arg("-c")
            .arg(concat!(
                "mount --bind \"$1\" /etc/hosts && ",
                "{ [ ! -e /etc/resolv.conf ] || mount --bind \"$2\" /etc/resolv.conf; } && ",
                "shift 2 && exec \"$@\""
            ))
            .arg("netns")
            .arg(self.dir.join("hosts"))
            .arg(self.dir.join("resolv.conf"))
            .arg(python)
            .arg(self.dir.join("relay.py"))
            .args(&self.relay_args)
            .arg("--")
            .arg(program);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.lifecycle.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

async fn serve(listener: tokio::net::UnixListener, upstream: Arc<Upstream>) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let _ = forward(conn, &upstream).await;
        });
    }
}

async fn forward(conn: tokio::net::UnixStream, upstream: &Upstream) -> std::io::Result<()> {
    match upstream {
        Upstream::Raw(addr) => {
            let mut tcp = tokio::net::TcpStream::connect(addr).await?;
            let mut conn = conn;
            tokio::io::copy_bidirectional(&mut conn, &mut tcp).await?;
        }
        Upstream::TerminateTls { config, upstream } => {
            let mut tls = tokio_rustls::TlsAcceptor::from(config.clone())
                .accept(conn)
                .await?;
            let mut tcp = tokio::net::TcpStream::connect(upstream).await?;
            tokio::io::copy_bidirectional(&mut tls, &mut tcp).await?;
        }
    }
    Ok(())
}
