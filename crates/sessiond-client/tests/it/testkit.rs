//! Boots a real sessiond (SQLite in a temp dir, a hand-moved clock) on 127.0.0.1:0 and
//! records every request it answers, so tests count refreshes on the server's side; and a
//! [`Proxy`] in front of it that loses answers on purpose.

use axum::extract::Request;
use axum::middleware::Next;
use reqwest::Method;
use serde_json::Value;
use sessiond_client::{Client, ClientBuilder, MemoryStore};
use sessiond_core::token::Alg;
use sessiond_core::{Clock, ManualClock};
use sessiond_testkit::{Answer, Server};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use sessiond_testkit::{PASSWORD, START};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub tenant: Option<String>,
    pub activity: Option<String>,
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub struct TestServer {
    pub base: String,
    pub clock: Arc<ManualClock>,
    seen: Arc<Mutex<Vec<Seen>>>,
    _dir: TempDir,
    node: Server,
}

impl TestServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let (_, state) = sessiond_testkit::sqlite(dir.path(), clock.clone(), Alg::EdDSA).await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = sessiond_server::router(state).layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let log = log.clone();
                async move {
                    let (tenant, activity) =
                        (header(&req, "x-tenant-id"), header(&req, "x-activity-id"));
                    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
                    let res = next.run(req).await;
                    log.lock().unwrap().push(Seen {
                        method,
                        path,
                        status: res.status().as_u16(),
                        tenant,
                        activity,
                    });
                    res
                }
            },
        ));
        let node = Server::serve_router(app).await;
        Self {
            base: node.base.clone(),
            clock,
            seen,
            _dir: dir,
            node,
        }
    }

    /// Stops accepting requests (as a server that went away).
    pub fn stop(&mut self) {
        self.node.stop();
    }

    /// A client of this server for `tenant` on the server's clock (default refresh share and
    /// jitter: a token of 3600 s is due between 2700 s and 2880 s).
    pub fn builder(&self, tenant: &str) -> ClientBuilder {
        let clock = self.clock.clone();
        Client::builder(&self.base, tenant).clock(move || clock.now())
    }

    /// A client and a handle on its store.
    pub fn client(&self, tenant: &str) -> (Client, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::new());
        let client = self.builder(tenant).store(store.clone()).build().unwrap();
        (client, store)
    }

    /// Every request the server answered so far on `path` (any method).
    pub fn seen(&self, path: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.path == path).cloned().collect()
    }

    pub fn all_seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.node.admin_call(method, path, body).await
    }

    /// A tenant with one user `alice` (password [`PASSWORD`]).
    pub async fn tenant_with_user(&self, id: &str, profile: &str, policy: Value) {
        self.node.tenant_with_user(id, profile, policy).await;
    }

    /// The operator revokes a session.
    pub async fn revoke(&self, tenant: &str, session_id: &str) {
        let path = format!("/admin/v1/tenants/{tenant}/sessions/{session_id}");
        let r = self.admin(Method::DELETE, &path, None).await;
        assert_eq!(r.status, 204, "{}", r.body);
    }

    pub async fn audit(&self, tenant: &str, query: &str) -> Vec<Value> {
        let path = format!("/admin/v1/tenants/{tenant}/audit?{query}");
        let r = self.admin(Method::GET, &path, None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["events"].as_array().unwrap().clone()
    }
}

/// What [`Proxy`] does to one request on its path, after the server has answered it.
pub enum Fault {
    /// Closes the client's connection without a byte of the answer.
    Drop,
    /// Answers `502 Bad Gateway` instead (a gateway that lost the server's answer).
    BadGateway,
    /// Sends nothing until the client gives up and closes the connection.
    Stall,
    /// Holds the answer until notified, then passes it on.
    Hold(Arc<tokio::sync::Notify>),
}

/// A TCP proxy in front of a [`TestServer`] that loses answers on purpose: the next request
/// whose request line is `POST <path>` gets the next queued [`Fault`]. It looks at the first
/// request of each connection only, so its clients must open one per request (see
/// [`Proxy::http_client`]).
pub struct Proxy {
    pub base: String,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Proxy {
    pub async fn start(server: &TestServer, path: &str) -> Self {
        let upstream = server.base.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let faults = Arc::new(Mutex::new(VecDeque::new()));
        let (queue, line) = (faults.clone(), format!("POST {path} "));
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (queue, line, upstream) = (queue.clone(), line.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = relay(client, &upstream, &line, &queue).await;
                });
            }
        });
        Self {
            base,
            faults,
            accept,
        }
    }

    /// The next request on the proxy's path meets `fault`.
    pub fn push(&self, fault: Fault) {
        self.faults.lock().unwrap().push_back(fault);
    }

    pub fn pending(&self) -> usize {
        self.faults.lock().unwrap().len()
    }

    /// A client of `server` for `tenant` through this proxy, on the server's clock, with an
    /// HTTP client that opens a connection per request (as the proxy needs) and a short
    /// refresh timeout; and a handle on its store.
    pub fn client(&self, server: &TestServer, tenant: &str) -> (Client, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::new());
        let clock = server.clock.clone();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let client = Client::builder(&self.base, tenant)
            .clock(move || clock.now())
            .http_client(http)
            .refresh_timeout(Duration::from_millis(300))
            .store(store.clone())
            .build()
            .unwrap();
        (client, store)
    }
}

async fn relay(
    mut client: TcpStream,
    upstream: &str,
    line: &str,
    queue: &Mutex<VecDeque<Fault>>,
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    // The request line, to pick the fault.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    server.write_all(&head).await?;
    let fault = if head.starts_with(line.as_bytes()) {
        queue.lock().unwrap().pop_front()
    } else {
        None
    };
    let Some(fault) = fault else {
        tokio::io::copy_bidirectional(&mut client, &mut server).await?;
        return Ok(());
    };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let mut upload =
        tokio::spawn(async move { tokio::io::copy(&mut from_client, &mut to_server).await });
    // The first byte of the answer: the server has done the work (a 2xx is durable).
    let n = from_server.read(&mut buf).await?;
    match fault {
        Fault::Drop => {}
        Fault::BadGateway => {
            to_client
                .write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await?;
        }
        Fault::Stall => {
            let _ = (&mut upload).await;
        }
        Fault::Hold(release) => {
            release.notified().await;
            to_client.write_all(&buf[..n]).await?;
            // Until the client is done with the connection (the server keeps it open).
            tokio::select! {
                _ = tokio::io::copy(&mut from_server, &mut to_client) => {}
                _ = &mut upload => {}
            }
        }
    }
    upload.abort();
    Ok(())
}
