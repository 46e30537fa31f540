//! Argon2's memory is bounded and given back: a burst of concurrent failed logins against the
//! real binary raises its resident memory by at most (hashing concurrency × 19 MiB) plus the
//! connections' own, and once the hasher has been idle for 30 s the buffers are unmapped.
//! (Before the pool, each verification allocated 19 MiB on whichever blocking thread ran it,
//! and the allocator's per-thread arenas kept it: hundreds of MiB, for good.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::{Value, json};
use std::time::{Duration, Instant};

const ADMIN: &str = "hashing-memory-admin-token-0123";
const MIB: u64 = 1024 * 1024;
/// Argon2id's memory cost per verification.
const ARGON2_MEMORY: u64 = 19 * MIB;
const BURST: usize = 120;

/// A field of /proc/<pid>/status in bytes (`VmRSS`: resident now, `VmHWM`: the peak).
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().unwrap();
    kib * 1024
}

/// POSTs `body` to `path` for tenant `hm` (with the admin token for `/admin` paths).
async fn post(http: &reqwest::Client, base: &str, path: &str, body: Value) -> u16 {
    let mut rb = http
        .post(format!("{base}{path}"))
        .header("X-Tenant-ID", "hm")
        .header("X-Activity-ID", uuid::Uuid::new_v4().to_string());
    if path.starts_with("/admin") {
        rb = rb.bearer_auth(ADMIN);
    }
    rb.json(&body).send().await.unwrap().status().as_u16()
}

async fn login(http: &reqwest::Client, base: &str, password: &str) -> u16 {
    let body = json!({"username": "alice", "password": password});
    post(http, base, "/api/v2/auth/login", body).await
}

async fn verifications(http: &reqwest::Client, base: &str) -> u64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("sessiond_password_verifications_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_failed_logins_keeps_argon2_memory_bounded_and_gives_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::spawn(|cmd| {
        cmd.env("SESSIOND_DATA_DIR", dir.path())
            .env("SESSIOND_ADMIN_TOKEN", ADMIN)
            .env("SESSIOND_LOG_LEVEL", "warn")
            // No per-IP limits: every login of the burst reaches Argon2.
            .env("SESSIOND_LIMITS_AUTH_PER_MINUTE", "0")
            .env("SESSIOND_LIMITS_AUTH_FAILURES_PER_MINUTE", "0");
    });
    let pid = server.child.id();
    // The binary hashes as many passwords at once as it has cores (`hash_concurrency`); the
    // child sees the same cores as this test.
    let concurrency = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let http = reqwest::Client::new();
    let base = server.base.as_str();
    let started = status_bytes(pid, "VmRSS");

    // No per-account backoff or rate limit either.
    let tenant = json!({"id": "hm", "profile": "integration",
        "policy": {"loginBackoffAfter": 0, "loginRatePerMinute": 0}});
    assert_eq!(post(&http, base, "/admin/v1/tenants", tenant).await, 201);
    let user = json!({"username": "alice", "password": "correct horse battery"});
    assert_eq!(
        post(&http, base, "/admin/v1/tenants/hm/users", user).await,
        201
    );
    assert_eq!(login(&http, base, "correct horse battery").await, 200);
    let before = status_bytes(pid, "VmRSS");
    let counted = verifications(&http, base).await;

    let burst: Vec<_> = (0..BURST)
        .map(|_| {
            let (http, base) = (http.clone(), base.to_owned());
            tokio::spawn(async move { login(&http, &base, "wrong password!").await })
        })
        .collect();
    for b in burst {
        assert_eq!(b.await.unwrap(), 401, "every login of the burst fails");
    }
    assert_eq!(
        verifications(&http, base).await - counted,
        BURST as u64,
        "each login of the burst ran Argon2"
    );
    let peak = status_bytes(pid, "VmHWM");
    let after = status_bytes(pid, "VmRSS");
    eprintln!(
        "RSS: at start {} MiB, before the burst {} MiB, after it {} MiB, peak {} MiB \
         (hashing concurrency {concurrency})",
        started / MIB,
        before / MIB,
        after / MIB,
        peak / MIB
    );
    // The buffers (concurrency × 19 MiB) plus 64 MiB for 120 connections, their requests, the
    // runtime's threads and the allocator's slack. Without the pool this is 100s of MiB.
    let bound = started + concurrency * ARGON2_MEMORY + 64 * MIB;
    assert!(
        peak <= bound,
        "peak RSS {} MiB over {} MiB: Argon2 memory is not bounded by the hashing concurrency",
        peak / MIB,
        bound / MIB
    );

    // Idle for 30 s: the spare buffers are unmapped. Back under what it took before any
    // password was hashed plus less than one buffer.
    let released = started + ARGON2_MEMORY - 2 * MIB;
    let deadline = Instant::now() + Duration::from_secs(50);
    let mut now = status_bytes(pid, "VmRSS");
    while now > released && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        now = status_bytes(pid, "VmRSS");
    }
    eprintln!("RSS after idle: {} MiB", now / MIB);
    assert!(
        now <= released,
        "RSS {} MiB after idle, over {} MiB: the Argon2 buffers were not given back",
        now / MIB,
        released / MIB
    );
    // And logins still work after the release.
    assert_eq!(login(&http, base, "correct horse battery").await, 200);
}
