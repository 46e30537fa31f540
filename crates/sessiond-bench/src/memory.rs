//! Login memory: sessiond's resident memory before, right after a burst of N concurrent failed
//! logins, and after the Argon2 pool's idle release. sessiond runs in this process (as in the
//! rest of the bench), so the figures are this process's VmRSS (`/proc/self/status`), taken
//! while the load generator holds nothing but the burst's connections.

use crate::server::{self, Sessiond, rss_bytes};
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the burst did to the resident memory.
#[derive(Debug, Clone)]
pub struct LoginMemory {
    pub burst: usize,
    pub hash_concurrency: usize,
    /// Answers other than 401 (there should be none: the bench tenant has no login limits).
    pub not_401: usize,
    pub rss_before: u64,
    pub rss_after_burst: u64,
    pub rss_after_idle: u64,
    pub idle: Duration,
    pub burst_secs: f64,
    /// Argon2 buffers that existed right after the burst, and after the idle period.
    pub buffers_after_burst: usize,
    pub buffers_after_idle: usize,
}

const MIB: f64 = 1024.0 * 1024.0;

impl LoginMemory {
    pub fn markdown(&self) -> String {
        let mib = |b: u64| b as f64 / MIB;
        format!(
            "## Login memory\n\n\
             {n} concurrent failed logins (wrong password, one account, no limits) against a \
             fresh in-process sessiond with hashing concurrency {c}; VmRSS of the process.\n\n\
             | moment | RSS (MiB) | Argon2 buffers |\n|---|---:|---:|\n\
             | before the burst | {before:.1} | |\n\
             | after the burst ({secs:.1} s) | {after:.1} | {b_after} |\n\
             | after {idle} s idle | {idled:.1} | {b_idle} |\n\n\
             Growth during the burst: {growth:.1} MiB (bound: {c} × 19 MiB = {bound} MiB of \
             Argon2 memory, plus the connections). Answers other than 401: {not_401}.\n",
            n = self.burst,
            c = self.hash_concurrency,
            before = mib(self.rss_before),
            after = mib(self.rss_after_burst),
            idled = mib(self.rss_after_idle),
            secs = self.burst_secs,
            idle = self.idle.as_secs(),
            b_after = self.buffers_after_burst,
            b_idle = self.buffers_after_idle,
            growth = mib(self.rss_after_burst.saturating_sub(self.rss_before)),
            bound = self.hash_concurrency * 19,
            not_401 = self.not_401,
        )
    }
}

/// One login with a wrong password on its own connection; returns the HTTP status.
async fn failed_login(addr: SocketAddr, username: &str) -> Result<u16> {
    let body = format!(r#"{{"username":"{username}","password":"not the password"}}"#);
    let req = format!(
        "POST /api/v2/auth/login HTTP/1.1\r\nHost: {addr}\r\nX-Tenant-ID: {tenant}\r\n\
         X-Activity-ID: {id}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\
         Connection: close\r\n\r\n{body}",
        tenant = server::TENANT,
        id = uuid::Uuid::new_v4(),
        len = body.len(),
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(req.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let head = String::from_utf8_lossy(&answer[..answer.len().min(64)]).into_owned();
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP answer: {head:?}"))
}

/// Starts a fresh sessiond, fires `burst` concurrent failed logins, then waits for the Argon2
/// pool's idle release (`idle`) and reads the RSS again.
pub fn login_memory(
    threads: usize,
    data_dir: &Path,
    client: &tokio::runtime::Runtime,
    burst: usize,
    idle: Duration,
) -> Result<LoginMemory> {
    let sd = Sessiond::start(threads, data_dir, 1)?;
    let addr = sd.addr;
    let Some((username, _, _)) = sd.users.first().cloned() else {
        bail!("no user to log in as");
    };
    // One warm-up login: connections, caches and the first Argon2 buffer exist before.
    let warm = client.block_on(failed_login(addr, &username))?;
    if warm != 401 {
        bail!("a failed login was answered {warm}, not 401");
    }
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = rss_bytes();
    let started = Instant::now();
    let statuses = client.block_on(async {
        let tasks: Vec<_> = (0..burst)
            .map(|_| {
                let username = username.clone();
                tokio::spawn(async move { failed_login(addr, &username).await })
            })
            .collect();
        let mut statuses = Vec::with_capacity(burst);
        for t in tasks {
            statuses.push(t.await??);
        }
        anyhow::Ok(statuses)
    })?;
    let burst_secs = started.elapsed().as_secs_f64();
    let rss_after_burst = rss_bytes();
    let buffers_after_burst = sd.engine().hashing_stats().buffers;
    std::thread::sleep(idle);
    let rss_after_idle = rss_bytes();
    let buffers_after_idle = sd.engine().hashing_stats().buffers;
    Ok(LoginMemory {
        burst,
        hash_concurrency: sd.engine().config().hash_concurrency,
        not_401: statuses.iter().filter(|&&s| s != 401).count(),
        rss_before,
        rss_after_burst,
        rss_after_idle,
        idle,
        burst_secs,
        buffers_after_burst,
        buffers_after_idle,
    })
}
