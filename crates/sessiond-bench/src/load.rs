//! The load generator: `concurrency` virtual users, each with one keep-alive HTTP/1.1
//! connection (hyper's client connection, no pool in between), sending its next request as
//! soon as the previous answer has been read, until the run's deadline or request budget.
//! Each records every request's latency in its own HDR histogram; they are merged at the end.

use crate::server::{PASSWORD, Seeded};
use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Whoami,
    Introspect,
    /// whoami with a token never presented before (one seeded session each): the signature
    /// is checked and the session read from the store, no cache helps.
    WhoamiCold,
    /// Introspection of a token never presented before.
    IntrospectCold,
    Login,
    Refresh,
    Logout,
    /// 90% whoami, 8% refresh, 1% login, 1% logout.
    Mix,
    /// The bare axum server, with the request of whoami (GET).
    CeilingGet,
    /// The bare axum server, with the request of introspection (POST, form body).
    CeilingPost,
    /// node-oidc-provider's introspection ([`crate::peer`]), cycling through its tokens.
    PeerIntrospect,
}

/// node-oidc-provider's introspection endpoint (its default route; see [`crate::peer`]).
pub const PEER_INTROSPECTION_PATH: &str = "/token/introspection";

/// What the virtual users share: the server, the credentials and the pools of live tokens.
pub struct Workload {
    pub addr: SocketAddr,
    pub tenant: String,
    pub basic_auth: String,
    pub users: Vec<String>,
    /// Live session tokens, read-only: whoami and introspection cycle through them.
    pub live: Arc<Vec<String>>,
    /// Sessions to log out or refresh, each used by one virtual user only.
    pub spare: Mutex<Vec<Seeded>>,
}

impl Workload {
    fn take_spare(&self) -> Option<Seeded> {
        self.spare.lock().ok().and_then(|mut s| s.pop())
    }
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub hist: Histogram<u64>,
    pub first_error: Option<String>,
}

impl RunResult {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn p50_us(&self) -> u64 {
        self.hist.value_at_quantile(0.50)
    }
    pub fn p99_us(&self) -> u64 {
        self.hist.value_at_quantile(0.99)
    }
}

struct Conn {
    send: SendRequest<Full<Bytes>>,
}

async fn connect(addr: SocketAddr) -> Result<Conn> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { send })
}

/// One virtual user's state.
struct Vu {
    id: usize,
    conn: Conn,
    activity: String,
    cursor: usize,
    rng: u64,
    refresh: Option<String>,
    host: String,
}

enum Step {
    Done,
    Ok,
    Failed(String),
}

impl Vu {
    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn live_token<'a>(&mut self, w: &'a Workload) -> &'a str {
        self.cursor = (self.cursor + 1) % w.live.len().max(1);
        w.live.get(self.cursor).map_or("", String::as_str)
    }

    fn api(&self, w: &Workload, method: Method, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("x-tenant-id", &w.tenant)
            .header("x-activity-id", &self.activity)
    }

    async fn send(&mut self, req: Request<Full<Bytes>>, want: StatusCode) -> Result<Bytes> {
        self.conn.send.ready().await?;
        let res = self.conn.send.send_request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        if status != want {
            return Err(anyhow!(
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        Ok(body)
    }

    async fn whoami(&mut self, w: &Workload, path: &str) -> Result<()> {
        let token = self.live_token(w);
        self.whoami_with(w, path, token).await
    }

    async fn whoami_with(&mut self, w: &Workload, path: &str, token: &str) -> Result<()> {
        let req = self
            .api(w, Method::GET, path)
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))?;
        self.send(req, StatusCode::OK).await.map(drop)
    }

    async fn introspect(&mut self, w: &Workload, path: &str) -> Result<()> {
        let token = self.live_token(w);
        self.introspect_with(w, path, token).await
    }

    async fn introspect_with(&mut self, w: &Workload, path: &str, token: &str) -> Result<()> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", &self.host)
            .header("authorization", &w.basic_auth)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(format!("token={token}"))))?;
        let body = self.send(req, StatusCode::OK).await?;
        // Every introspection must say active (the ceiling's fixed body is not one).
        if path != "/ceiling" && !body.starts_with(b"{\"active\":true") {
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            if v["active"] != true {
                return Err(anyhow!("introspection said inactive: {v}"));
            }
        }
        Ok(())
    }

    async fn login(&mut self, w: &Workload) -> Result<()> {
        let user = &w.users[self.next_rand() as usize % w.users.len()];
        let body = serde_json::json!({"username": user, "password": PASSWORD}).to_string();
        let req = self
            .api(w, Method::POST, "/api/v2/auth/login")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        self.send(req, StatusCode::OK).await.map(drop)
    }

    /// Rotates this user's own refresh-token chain (a seeded session of its own).
    async fn refresh(&mut self, w: &Workload) -> Result<bool> {
        if self.refresh.is_none() {
            self.refresh = w.take_spare().map(|s| s.refresh_token);
        }
        let Some(rt) = self.refresh.take() else {
            return Ok(false);
        };
        let body = serde_json::json!({ "refreshToken": rt }).to_string();
        let req = self
            .api(w, Method::POST, "/api/v2/auth/refresh")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let answer = self.send(req, StatusCode::OK).await?;
        let v: serde_json::Value = serde_json::from_slice(&answer)?;
        self.refresh = v["refreshToken"].as_str().map(str::to_owned);
        Ok(true)
    }

    /// Logs out a seeded session nobody else uses; false when the pool is empty.
    async fn logout(&mut self, w: &Workload) -> Result<bool> {
        let Some(s) = w.take_spare() else {
            return Ok(false);
        };
        let req = self
            .api(w, Method::POST, "/api/v2/auth/logout")
            .header("authorization", format!("Bearer {}", s.session_token))
            .body(Full::new(Bytes::new()))?;
        self.send(req, StatusCode::NO_CONTENT).await.map(|_| true)
    }

    async fn step(&mut self, w: &Workload, op: Op) -> Step {
        let r = match op {
            Op::Whoami => self.whoami(w, "/api/v2/session").await.map(|()| true),
            Op::CeilingGet => self.whoami(w, "/ceiling").await.map(|()| true),
            Op::Introspect => self
                .introspect(w, "/oauth2/introspect")
                .await
                .map(|()| true),
            Op::CeilingPost => self.introspect(w, "/ceiling").await.map(|()| true),
            Op::PeerIntrospect => self
                .introspect(w, PEER_INTROSPECTION_PATH)
                .await
                .map(|()| true),
            Op::WhoamiCold => match w.take_spare() {
                Some(s) => self
                    .whoami_with(w, "/api/v2/session", &s.session_token)
                    .await
                    .map(|()| true),
                None => Ok(false),
            },
            Op::IntrospectCold => match w.take_spare() {
                Some(s) => self
                    .introspect_with(w, "/oauth2/introspect", &s.session_token)
                    .await
                    .map(|()| true),
                None => Ok(false),
            },
            Op::Login => self.login(w).await.map(|()| true),
            Op::Refresh => self.refresh(w).await,
            Op::Logout => self.logout(w).await,
            Op::Mix => match self.next_rand() % 100 {
                0..90 => self.whoami(w, "/api/v2/session").await.map(|()| true),
                90..98 => match self.refresh(w).await {
                    Ok(false) => self.whoami(w, "/api/v2/session").await.map(|()| true),
                    r => r,
                },
                98 => self.login(w).await.map(|()| true),
                _ => match self.logout(w).await {
                    Ok(false) => self.whoami(w, "/api/v2/session").await.map(|()| true),
                    r => r,
                },
            },
        };
        match r {
            Ok(true) => Step::Ok,
            Ok(false) => Step::Done,
            Err(e) => Step::Failed(format!("{e:#}")),
        }
    }
}

/// Drives `op` against `w` with `concurrency` virtual users for `duration` or until
/// `max_requests` requests have completed, whichever comes first.
pub async fn run(
    w: Arc<Workload>,
    op: Op,
    concurrency: usize,
    duration: Duration,
    max_requests: usize,
) -> Result<RunResult> {
    let mut vus = Vec::with_capacity(concurrency);
    for id in 0..concurrency.max(1) {
        let live = w.live.len().max(1);
        vus.push(Vu {
            id,
            conn: connect(w.addr)
                .await
                .with_context(|| format!("cannot connect to {}", w.addr))?,
            activity: uuid::Uuid::new_v4().to_string(),
            // Evenly spaced starts: n requests of the run, shared out, visit n distinct
            // tokens (a warm-up over the whole pool visits each once).
            cursor: (id * live / concurrency.max(1)) % live,
            rng: 0x9e37_79b9_7f4a_7c15 ^ ((id as u64 + 1) << 17),
            refresh: None,
            host: w.addr.to_string(),
        });
    }
    let budget = Arc::new(AtomicUsize::new(max_requests));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for mut vu in vus {
        let w = w.clone();
        let budget = budget.clone();
        tasks.spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            while Instant::now() < deadline {
                if budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                    .is_err()
                {
                    break;
                }
                let t0 = Instant::now();
                match vu.step(&w, op).await {
                    Step::Done => break,
                    Step::Ok => {
                        ok += 1;
                        let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                        hist.saturating_record(us.max(1));
                    }
                    Step::Failed(e) => {
                        errors += 1;
                        first_error.get_or_insert(format!("vu {}: {e}", vu.id));
                        // A broken connection is replaced; a refused request is not retried.
                        if vu.conn.send.is_closed() {
                            match connect(w.addr).await {
                                Ok(c) => vu.conn = c,
                                Err(_) => break,
                            }
                        }
                    }
                }
            }
            anyhow::Ok((ok, errors, hist, first_error, Instant::now()))
        });
    }
    let mut total = RunResult {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        hist: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        first_error: None,
    };
    let mut end = start;
    while let Some(r) = tasks.join_next().await {
        let (ok, errors, hist, first_error, finished) = r??;
        total.ok += ok;
        total.errors += errors;
        total.hist.add(&hist)?;
        if total.first_error.is_none() {
            total.first_error = first_error;
        }
        end = end.max(finished);
    }
    total.elapsed = end - start;
    Ok(total)
}

/// `Authorization: Basic …` for a service client.
pub fn basic_auth(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}
