//! A minimal "browser": one HTTP/1.0 GET over a std TCP stream.
//!
//! Why not reqwest: it is async-only in this workspace and the harness must
//! work from plain `#[test]` functions; following one loopback redirect to
//! the broker's PKCE callback needs nothing more than this. HTTP/1.0 keeps
//! the answer un-chunked and the connection closing after it.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};

/// Status code and body of a GET.
pub(crate) fn get(url: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    let u = url::Url::parse(url).with_context(|| format!("invalid URL {url}"))?;
    if u.scheme() != "http" {
        bail!("only http:// URLs can be visited, got {url}");
    }
    let host = u.host_str().ok_or_else(|| anyhow!("no host in {url}"))?;
    let port = u.port_or_known_default().unwrap_or(80);
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow!("cannot resolve {host}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let target = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    };
    // One write: a minimal server that reads a single segment must see the
    // whole request.
    let request = format!(
        "GET {target} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: fake-browser\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        // A server that closes right after answering may reset the
        // connection; what arrived before the reset is still the answer.
        if raw.is_empty() {
            return Err(e).context("reading the answer");
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP status line in answer from {url}"))?;
    Ok((status, body.to_owned()))
}
