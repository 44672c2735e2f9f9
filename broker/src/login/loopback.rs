//! The loopback redirect listener of a browser login (RFC 8252 §7.3).
//!
//! Bound to `127.0.0.1` only — never a wildcard address — on the preset's port
//! (or one the OS chooses). When the redirect URI says `localhost`, `[::1]` is
//! bound on the same port too when possible, because browsers may resolve
//! `localhost` to either. It speaks just enough HTTP/1 for one GET: anything
//! but the callback path gets a 404 and the listener keeps waiting; the
//! callback gets a small page saying what happened, and its `state` is checked
//! before the code is accepted. A callback with a `state` that is not this
//! login's gets a 400 and the listener keeps waiting too: any local process can
//! reach the port, and must not be able to end (or hijack) the user's login.

use super::failure::LoginFailure;
use super::redirect::Redirect;
use oauth_broker_proto::SecretString;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A browser must send its request this fast once connected.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read.
const MAX_REQUEST: usize = 16 * 1024;

/// A bound loopback listener waiting for the redirect.
#[derive(Debug)]
pub struct Loopback {
    listeners: Vec<TcpListener>,
    port: u16,
    path: String,
}

impl Loopback {
    /// Binds `127.0.0.1:preferred` (0 = any free port), else the first free
    /// fallback; with `also_ipv6`, `[::1]` on the same port as well (best
    /// effort). The error names the port and the fix.
    pub async fn bind(
        preferred: u16,
        fallbacks: &[u16],
        path: &str,
        also_ipv6: bool,
    ) -> Result<Loopback, String> {
        let mut last_error = None;
        for port in std::iter::once(preferred).chain(fallbacks.iter().copied()) {
            match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
                Ok(v4) => {
                    let port = v4.local_addr().map_err(|e| e.to_string())?.port();
                    let mut listeners = vec![v4];
                    if also_ipv6 {
                        if let Ok(v6) =
                            TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).await
                        {
                            listeners.push(v6);
                        }
                    }
                    return Ok(Loopback {
                        listeners,
                        port,
                        path: path.to_string(),
                    });
                }
                Err(e) => last_error = Some((port, e)),
            }
        }
        let (port, e) = last_error.expect("at least one port was tried");
        Err(format!(
            "cannot listen on 127.0.0.1:{port} for the browser's redirect ({e}); another login (e.g. the provider's own CLI) may be running — finish or stop it, or set `redirect_port` in the config"
        ))
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves requests until the redirect with this login's `state` arrives on
    /// the callback path; answers the browser with a page saying what happened
    /// and returns the code or why the login failed. Never returns on its own
    /// otherwise: the caller bounds the wait.
    pub async fn wait(
        &self,
        expected_state: &str,
        account: &str,
    ) -> Result<SecretString, LoginFailure> {
        loop {
            let mut stream = match self.accept().await {
                Ok(stream) => stream,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "loopback listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let target = match tokio::time::timeout(REQUEST_TIMEOUT, read_target(&mut stream)).await
            {
                Ok(Ok(target)) => target,
                Ok(Err(status)) => {
                    respond(
                        &mut stream,
                        status,
                        "Bad request",
                        "This is not a request this page understands.",
                    )
                    .await;
                    continue;
                }
                Err(_) => continue,
            };
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            if path != self.path {
                respond(&mut stream, 404, "Not found", "Nothing here.").await;
                continue;
            }
            let Some(redirect) = Redirect::from_query(query) else {
                respond(
                    &mut stream,
                    400,
                    "Login not completed",
                    "The redirect carries neither a code nor an error. Start again with brokerctl relogin.",
                )
                .await;
                continue;
            };
            if !redirect.state_matches(expected_state) {
                // The code (if any) is dropped unused.
                tracing::warn!("loopback listener: ignored a redirect whose state is not this login's (a stale tab or another program); still waiting for the real one");
                respond(
                    &mut stream,
                    400,
                    "State did not match",
                    "The state did not match: this redirect does not belong to the login oauth-broker is waiting for (a stale browser tab, or a request from another program). Its code was not used. The login keeps waiting: finish it in the tab that brokerctl relogin opened.",
                )
                .await;
                continue;
            }
            let result = redirect.into_code(expected_state, account);
            match &result {
                Ok(_) => {
                    respond(
                        &mut stream,
                        200,
                        "Authorization received",
                        "oauth-broker is finishing the login. You can close this tab and return to the terminal.",
                    )
                    .await
                }
                Err(failure) => respond(&mut stream, 400, "Login failed", &failure.message).await,
            }
            return result;
        }
    }

    async fn accept(&self) -> std::io::Result<TcpStream> {
        let accepts = self
            .listeners
            .iter()
            .map(|listener| Box::pin(listener.accept()));
        let (result, _, _) = futures_util::future::select_all(accepts).await;
        result.map(|(stream, _)| stream)
    }
}

/// Reads the request head and returns the request target of a GET, or the
/// HTTP status to answer with.
async fn read_target(stream: &mut TcpStream) -> Result<String, u16> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            return Err(431);
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) if target.starts_with('/') => Ok(target.to_string()),
        (Some(_), Some(_)) => Err(405),
        _ => Err(400),
    }
}

async fn respond(stream: &mut TcpStream, status: u16, title: &str, text: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    let body = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
<body style=\"font-family:sans-serif;margin:3em\"><h1>{title}</h1><p>{}</p></body></html>\n",
        escape(text)
    );
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth_broker_proto::ExposeSecret;

    async fn get(port: u16, target: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_404_then_takes_the_code_with_the_right_state() {
        let lb = Loopback::bind(0, &[], "/callback", false).await.unwrap();
        let port = lb.port();
        let waiter = tokio::spawn(async move { lb.wait("st", "default").await });
        assert!(get(port, "/favicon.ico").await.starts_with("HTTP/1.1 404"));
        let page = get(port, "/callback?code=the-code&state=st").await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(!page.contains("the-code"));
        let code = waiter.await.unwrap().unwrap();
        assert_eq!(code.expose_secret(), "the-code");
    }

    #[tokio::test]
    async fn a_wrong_state_is_refused_and_the_login_keeps_waiting() {
        let lb = Loopback::bind(0, &[], "/cb", false).await.unwrap();
        let port = lb.port();
        let waiter = tokio::spawn(async move { lb.wait("st", "default").await });
        let page = get(port, "/cb?code=forged-code&state=forged").await;
        assert!(page.starts_with("HTTP/1.1 400"), "{page}");
        assert!(page.contains("state did not match"), "{page}");
        // Neither a forged denial nor a missing state ends the login.
        let page = get(port, "/cb?error=access_denied&state=forged").await;
        assert!(page.starts_with("HTTP/1.1 400"), "{page}");
        let page = get(port, "/cb?code=c").await;
        assert!(page.starts_with("HTTP/1.1 400"), "{page}");
        assert!(!waiter.is_finished());
        // The real redirect still completes it, with its own code.
        let page = get(port, "/cb?code=real-code&state=st").await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        let code = waiter.await.unwrap().unwrap();
        assert_eq!(code.expose_secret(), "real-code");
    }

    #[tokio::test]
    async fn a_denial_with_the_right_state_ends_the_login() {
        let lb = Loopback::bind(0, &[], "/cb", false).await.unwrap();
        let port = lb.port();
        let waiter = tokio::spawn(async move { lb.wait("st", "default").await });
        let page = get(port, "/cb?error=access_denied&state=st").await;
        assert!(page.starts_with("HTTP/1.1 400"), "{page}");
        let err = waiter.await.unwrap().unwrap_err();
        assert!(err.message.contains("access_denied"), "{}", err.message);
    }

    #[tokio::test]
    async fn busy_port_falls_back_and_names_the_port() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap().port();
        let err = Loopback::bind(busy, &[], "/cb", false).await.unwrap_err();
        assert!(err.contains(&busy.to_string()), "{err}");
        let lb = Loopback::bind(busy, &[0], "/cb", false).await.unwrap();
        assert_ne!(lb.port(), busy);
    }
}
