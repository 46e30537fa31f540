//! node-oidc-provider, the optional peer of introspection (issue 13: "introspection ≥ 15×
//! node-oidc-provider's introspection, where Node.js is available").
//!
//! `peers/oidc-provider/server.js` (beside this crate's Cargo.toml; `oidc-provider` pinned in
//! its package.json and package-lock.json) runs under the machine's `node`, after `npm ci` when
//! its `node_modules` is missing or holds another version. It has one confidential client
//! (`client_secret_basic`, the `client_credentials` grant), the introspection feature on and the
//! provider's default in-memory adapter; its access tokens are opaque, so introspecting one
//! looks it up, as sessiond's introspection looks its token up. [`OidcPeer`] owns the process
//! and kills it when dropped (also on an early return or a panic); the process also exits by
//! itself when its standard input closes, so it does not outlive a bench killed outright.

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// The provider's token endpoint (its default route).
pub const TOKEN_PATH: &str = "/token";
/// The provider's introspection endpoint (its default route).
pub use crate::load::PEER_INTROSPECTION_PATH as INTROSPECTION_PATH;
/// Its in-memory adapter is an LRU of 1,000 entries: a larger pool would lose tokens.
pub const POOL: usize = 1_000;
/// How long `node server.js` may take to print `READY <port>`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `npm ci` may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// What is kept of the process's stderr (the end of it) for error messages.
const STDERR_KEEP: usize = 4096;

/// `peers/oidc-provider` beside this crate's Cargo.toml.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join("oidc-provider")
}

/// Why the peer cannot run here (no `node`; or no `npm` while its packages are not installed),
/// or `None`. [`OidcPeer::start`] can still fail for other reasons (a failed install).
pub fn unavailable(dir: &Path) -> Option<String> {
    if let Err(e) = node_version() {
        return Some(format!("{e:#}"));
    }
    if installed_version(dir).is_none() && tool_version("npm").is_err() {
        return Some(format!(
            "`npm` is not available to install {}'s packages",
            dir.display()
        ));
    }
    None
}

fn tool_version(tool: &str) -> Result<String> {
    let out = Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("`{tool}` is not on the PATH"))?;
    if !out.status.success() {
        bail!("`{tool} --version` failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn node_version() -> Result<String> {
    tool_version("node")
}

/// The `oidc-provider` version package.json pins.
fn pinned_version(dir: &Path) -> Result<String> {
    let path = dir.join("package.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    v["dependencies"]["oidc-provider"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("{} does not depend on oidc-provider", path.display()))
}

/// The `oidc-provider` version in `node_modules`, if installed.
fn installed_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(
        dir.join("node_modules")
            .join("oidc-provider")
            .join("package.json"),
    )
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["version"].as_str().map(str::to_owned)
}

/// The last `keep` bytes of `s` (on a character boundary), whitespace collapsed.
fn tail(s: &str, keep: usize) -> String {
    tail_raw(s, keep)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `npm ci` in `dir`, bounded by [`INSTALL_TIMEOUT`].
fn npm_ci(dir: &Path) -> Result<()> {
    let mut child = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("`npm` is not on the PATH")?;
    let mut err = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = reader.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => bail!(
            "`npm ci` in {} failed ({s}): {}",
            dir.display(),
            tail(&stderr, 600)
        ),
        None => bail!(
            "`npm ci` in {} took more than {} s",
            dir.display(),
            INSTALL_TIMEOUT.as_secs()
        ),
    }
}

/// The node process: killed and reaped when dropped. Its stdin is held open; closing it (here,
/// or by the kernel when this process dies) makes the peer exit by itself.
struct ChildGuard {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running node-oidc-provider.
pub struct OidcPeer {
    pub addr: SocketAddr,
    pub client_id: String,
    pub client_secret: String,
    /// e.g. "node-oidc-provider 8.8.1 on Node.js v20.20.2".
    pub label: String,
    stderr: Arc<Mutex<String>>,
    _child: ChildGuard,
}

impl OidcPeer {
    /// Installs the peer's packages if needed (`npm ci`; `log` is told), starts `node
    /// server.js` on a free loopback port and waits for it to listen. The error says why the
    /// peer cannot run.
    pub fn start(dir: &Path, log: &dyn Fn(&str)) -> Result<Self> {
        let node = node_version()?;
        if !dir.join("server.js").is_file() {
            bail!("{} has no server.js", dir.display());
        }
        let pinned = pinned_version(dir)?;
        if installed_version(dir).as_deref() != Some(pinned.as_str()) {
            log(&format!(
                "installing node-oidc-provider {pinned} in {} (npm ci)",
                dir.display()
            ));
            npm_ci(dir)?;
        }
        let client_id = "bench".to_owned();
        let client_secret = uuid::Uuid::new_v4().simple().to_string();
        let mut child = Command::new("node")
            .args(["server.js", "0"])
            .current_dir(dir)
            .env("PEER_EXIT_ON_STDIN_EOF", "1")
            .env("PEER_CLIENT_ID", &client_id)
            .env("PEER_CLIENT_SECRET", &client_secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run `node server.js`")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let err_pipe = child.stderr.take();
        let mut guard = ChildGuard { child, stdin };

        let stderr = Arc::new(Mutex::new(String::new()));
        let err_reader = err_pipe.map(|mut pipe| {
            let keep = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = keep.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                        if s.len() > 2 * STDERR_KEEP {
                            *s = tail_raw(&s, STDERR_KEEP);
                        }
                    }
                }
            })
        });
        let (tx, rx) = mpsc::channel::<u16>();
        if let Some(out) = stdout {
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if let Some(port) = line.strip_prefix("READY ")
                        && let Ok(port) = port.trim().parse::<u16>()
                        && let Some(tx) = tx.take()
                    {
                        let _ = tx.send(port);
                    }
                    // Anything else is read and dropped so that the pipe never fills.
                }
            });
        }
        let port = match rx.recv_timeout(START_TIMEOUT) {
            Ok(port) => port,
            Err(e) => {
                let why = match e {
                    mpsc::RecvTimeoutError::Timeout => {
                        format!("not listening after {} s", START_TIMEOUT.as_secs())
                    }
                    mpsc::RecvTimeoutError::Disconnected => "it exited".to_owned(),
                };
                let _ = guard.child.kill();
                let _ = guard.child.wait();
                if let Some(r) = err_reader {
                    let _ = r.join();
                }
                let said = stderr.lock().map(|s| tail(&s, 600)).unwrap_or_default();
                bail!("`node server.js` ({node}) did not start: {why}; stderr: {said}");
            }
        };
        Ok(Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            client_id,
            client_secret,
            label: format!("node-oidc-provider {pinned} on Node.js {node}"),
            stderr,
            _child: guard,
        })
    }

    /// `Authorization: Basic …` of the peer's client.
    pub fn basic_auth(&self) -> String {
        crate::load::basic_auth(&self.client_id, &self.client_secret)
    }

    /// The end of what the process wrote to stderr (whitespace collapsed).
    pub fn stderr_tail(&self) -> String {
        self.stderr
            .lock()
            .map(|s| tail(&s, 600))
            .unwrap_or_default()
    }

    /// `n` access tokens from the client_credentials grant, `parallel` connections at once.
    pub async fn tokens(&self, n: usize, parallel: usize) -> Result<Vec<String>> {
        let parallel = parallel.clamp(1, n.max(1));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..parallel {
            let count = n / parallel + usize::from(i < n % parallel);
            let (addr, auth) = (self.addr, self.basic_auth());
            tasks.spawn(async move {
                let mut send = connect(addr).await?;
                let mut got = Vec::with_capacity(count);
                for _ in 0..count {
                    let (status, body) = post_form(
                        &mut send,
                        addr,
                        &auth,
                        TOKEN_PATH,
                        "grant_type=client_credentials".into(),
                    )
                    .await?;
                    let v: serde_json::Value = serde_json::from_slice(&body)
                        .with_context(|| format!("token answer ({status}) is not JSON"))?;
                    match v["access_token"].as_str() {
                        Some(t) if status == StatusCode::OK => got.push(t.to_owned()),
                        _ => bail!("no access token ({status}): {v}"),
                    }
                }
                anyhow::Ok(got)
            });
        }
        let mut all = Vec::with_capacity(n);
        while let Some(r) = tasks.join_next().await {
            all.extend(r??);
        }
        Ok(all)
    }

    /// Introspects `token` with the client's credentials: the answer's JSON.
    pub async fn introspect(&self, token: &str) -> Result<serde_json::Value> {
        let mut send = connect(self.addr).await?;
        let (status, body) = post_form(
            &mut send,
            self.addr,
            &self.basic_auth(),
            INTROSPECTION_PATH,
            format!("token={}", form_encode(token)),
        )
        .await?;
        if status != StatusCode::OK {
            bail!(
                "introspection answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
        }
        serde_json::from_slice(&body).context("introspection's answer is not JSON")
    }
}

/// The last `keep` bytes of `s` on a character boundary, as they are.
fn tail_raw(s: &str, keep: usize) -> String {
    let mut start = s.len().saturating_sub(keep);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_owned()
}

/// `application/x-www-form-urlencoded` value: unreserved characters as they are, the rest
/// percent-encoded.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to the peer on {addr}"))?;
    stream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

async fn post_form(
    send: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    auth: &str,
    path: &str,
    body: String,
) -> Result<(StatusCode, Bytes)> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("host", addr.to_string())
        .header("authorization", auth)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))?;
    send.ready().await?;
    let res = send.send_request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_and_tails() {
        assert_eq!(form_encode("aZ9-._~"), "aZ9-._~");
        assert_eq!(form_encode("a b+/=é"), "a%20b%2B%2F%3D%C3%A9");
        assert_eq!(tail("x  y\n z", 100), "x y z");
        assert_eq!(tail("abcdé", 1), "");
        assert_eq!(tail_raw("abcdé", 2), "é");
    }
}
