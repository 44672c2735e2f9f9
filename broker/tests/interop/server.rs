//! [`OidcProvider`]: panva's `oidc-provider` (an OpenID Certified
//! authorization server nobody here wrote) as a child process on loopback.
//!
//! Why a process of its own, started by the test: the point is to meet a
//! server whose behaviour we do not control, so it runs exactly as its
//! package ships, configured by `tests/interop/oidc-provider/server.mjs`.
//! Rules that keep the run robust:
//! * the npm packages are installed on first use (`tools::ensure_oidc_provider`);
//!   missing Node.js or an unreachable npm registry is a test failure that says
//!   what to do, never a silent pass;
//! * ready = the server's own `{"event":"ready"}` line on stdout, awaited
//!   with a time limit; an early exit fails with the server's stderr;
//! * `Drop` kills the process (also when the test panics), and the server
//!   exits by itself when its stdin closes, so even a test killed by SIGKILL
//!   leaves nothing behind.

use serde_json::Value;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// How long the server may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Limit of one HTTP request to the server's test routes.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The User-Agent of the test's own requests, to tell them from the broker's
/// in the server's records.
pub const TEST_USER_AGENT: &str = "oauth-broker-interop-test";

/// The package directory with `package.json`, the lockfile and `server.mjs`.
pub fn package_dir() -> PathBuf {
    let broker_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    broker_crate
        .parent()
        .unwrap_or(broker_crate)
        .join("tests/interop/oidc-provider")
}

/// What the test asks of the server.
pub struct ServerOptions {
    /// The public client's id.
    pub client_id: String,
    /// Access-token lifetime, whole seconds.
    pub access_token_ttl: Duration,
    /// Redirect URIs registered for the client (loopback: any port matches).
    pub redirect_uris: Vec<String>,
}

/// A running `oidc-provider`.
pub struct OidcProvider {
    child: Child,
    // Held open: the server exits when it closes.
    _stdin: ChildStdin,
    issuer: Url,
    version: String,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: PathBuf,
    http: reqwest::Client,
}

impl OidcProvider {
    /// Starts `node server.mjs` and waits for its ready line. `log_dir`
    /// receives the server's stderr.
    pub fn start(options: &ServerOptions, log_dir: &Path) -> OidcProvider {
        oauth_broker_tests::tools::ensure_oidc_provider();
        let dir = package_dir();
        let version = installed_version(&dir);
        check_node();
        let stderr = log_dir.join("oidc-provider.stderr.log");
        let stderr_file = std::fs::File::create(&stderr).expect("create server log");
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(&dir)
            .env("CLIENT_ID", &options.client_id)
            .env(
                "ACCESS_TOKEN_TTL_SECS",
                options.access_token_ttl.as_secs().to_string(),
            )
            .env("REDIRECT_URIS", options.redirect_uris.join(","))
            .env("NODE_ENV", "test")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `node server.mjs` in {}: {e}", dir.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                let mut ready_tx = Some(ready_tx);
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.contains(r#""event":"ready""#) {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(line.clone());
                        }
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let mut server = OidcProvider {
            child,
            _stdin: stdin,
            issuer: Url::parse("http://127.0.0.1/").unwrap(),
            version,
            lines,
            stderr,
            http: reqwest::Client::builder()
                .user_agent(TEST_USER_AGENT)
                .timeout(HTTP_TIMEOUT)
                // A fresh connection per call: none can race the server
                // closing an idle one.
                .pool_max_idle_per_host(0)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
        };
        let ready = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let exited = server.child.try_wait().ok().flatten();
                panic!(
                    "oidc-provider did not print its ready line within {READY_TIMEOUT:?} ({}); stderr:\n{}",
                    match exited {
                        Some(status) => format!("it exited: {status}"),
                        None => "still running".to_string(),
                    },
                    server.stderr_text()
                );
            }
        };
        let ready: Value = serde_json::from_str(&ready).expect("ready line is JSON");
        server.issuer = Url::parse(ready["issuer"].as_str().expect("ready line has the issuer"))
            .expect("issuer is a URL");
        server
    }

    /// `http://127.0.0.1:<port>` (no trailing slash in the server's own form).
    pub fn issuer(&self) -> String {
        self.issuer.as_str().trim_end_matches('/').to_string()
    }

    /// The `oidc-provider` version installed from the lockfile.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Everything the server printed on stdout so far (its event log).
    pub fn event_log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The server's stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The server's discovery document.
    pub async fn discovery(&self) -> Value {
        let url = format!("{}/.well-known/openid-configuration", self.issuer());
        self.get_json(&url).await
    }

    /// The server's own records (`GET /__test/records`): every token-endpoint
    /// outcome, reuse detections, revoked grants.
    pub async fn records(&self) -> Value {
        self.get_json(&format!("{}/__test/records", self.issuer()))
            .await
    }

    /// Revokes every grant of `account` at the server (all its tokens too),
    /// as an administrator would. Returns the revoked grant ids.
    pub async fn revoke_account(&self, account: &str) -> Vec<String> {
        let url = format!("{}/__test/revoke?account={account}", self.issuer());
        let resp = self
            .http
            .post(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        assert!(resp.status().is_success(), "POST {url}: {}", resp.status());
        let body: Value = resp.json().await.expect("revoke answer is JSON");
        body["revoked"]
            .as_array()
            .expect("revoked list")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Calls the userinfo endpoint (from discovery) with `access_token`;
    /// returns the HTTP status. This is how a resource server judges a token.
    pub async fn userinfo_status(&self, userinfo_endpoint: &str, access_token: &str) -> u16 {
        self.http
            .get(userinfo_endpoint)
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {userinfo_endpoint}: {e}"))
            .status()
            .as_u16()
    }

    /// A refresh at `token_endpoint` with `refresh_token`, as a public
    /// client would send it; returns the HTTP status and the JSON body.
    pub async fn refresh(
        &self,
        token_endpoint: &str,
        client_id: &str,
        refresh_token: &str,
    ) -> (u16, Value) {
        let resp = self
            .http
            .post(token_endpoint)
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {token_endpoint}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get_json(&self, url: &str) -> Value {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        resp.json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The installed `oidc-provider` version; fails with the fix when `npm ci`
/// has not run.
fn installed_version(dir: &Path) -> String {
    let manifest = dir.join("node_modules/oidc-provider/package.json");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|_| {
        panic!(
            "oidc-provider is not installed ({} is missing): run `npm ci --no-audit --no-fund` in {} \
             (tools::ensure_oidc_provider does this on first use; it needs the npm registry)",
            manifest.display(),
            dir.display()
        )
    });
    let value: Value = serde_json::from_str(&text).expect("package.json is JSON");
    value["version"].as_str().unwrap_or("unknown").to_string()
}

/// Fails with the fix when Node.js is not on PATH.
fn check_node() {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`node --version` failed ({}): the interop test needs Node.js >= 20.19 on PATH",
            out.status
        ),
        Err(e) => panic!(
            "cannot run `node` ({e}): the interop test needs Node.js >= 20.19 on PATH \
             (Debian: apt-get install nodejs npm)"
        ),
    }
}
