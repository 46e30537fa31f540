//! sessiond's HTTP benchmark (issue 7): sessiond in-process and a bare axum ceiling in the
//! same run, each on its own tokio runtime; a load generator on a third; the raw operations
//! each scenario cannot avoid (Argon2id, an fsync'd SQLite insert) measured beside them.
//! [`run`] returns a [`Report`]; [`Report::markdown`] and [`plot::draw`] render it.
//! `--backends` adds sessiond on PostgreSQL and Redis beside their raw operations
//! ([`backends`]). Where Node.js is available, node-oidc-provider's introspection runs beside
//! sessiond's ([`peer`]).

pub mod backends;
pub mod baseline;
pub mod load;
pub mod memory;
pub mod peer;
pub mod plot;
pub mod proxy;
pub mod server;

use anyhow::{Context, Result};
use load::{Op, RunResult, Workload};
pub use server::Backend;
use server::{Ceiling, Sessiond};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How much to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub concurrencies: Vec<usize>,
    /// Measured time of each scenario at each concurrency.
    pub duration: Duration,
    /// Cap on the requests of one run (the run ends at whichever comes first).
    pub max_requests: usize,
    pub warmup: Duration,
    /// Live sessions (and tokens) whoami and introspection cycle through.
    pub live_sessions: usize,
    /// Seeded sessions made ready for each logout run (a logout run ends when they are gone).
    pub logout_pool: usize,
    /// Fresh sessions for each cold whoami / introspection run: each request presents a
    /// token never seen before (the run ends early when they are gone).
    pub cold_pool: usize,
    /// Run the mix scenario twice more, identically, and report the RSS after each (a leak
    /// shows as growth between the two).
    pub leak_check: bool,
    /// The scale check's sessiond: capacity of its session and verified-token caches
    /// (`None`: sessiond's defaults, `cache.sessions` / `cache.tokens`).
    pub cache_size: Option<usize>,
    /// Users that log in (each login picks one).
    pub users: usize,
    /// The scale check: sessions seeded for the small and the large measurement.
    pub scale_small: usize,
    pub scale_large: usize,
    /// Seeding the large set stops after this long; the report says how many it made.
    pub seed_budget: Duration,
    /// Tokens of the large set whoami spreads over (the "spread" measurement).
    pub scale_spread_tokens: usize,
    pub skip_scale: bool,
    pub server_threads: usize,
    pub client_threads: usize,
    /// Where the temporary data dirs go (the same file system for sessiond and the baseline).
    pub data_dir: PathBuf,
    /// Print progress to stderr.
    pub verbose: bool,
    /// Run only these scenarios (by name; the ceilings run with whoami / introspect).
    pub only: Option<Vec<String>>,
    /// Store backends. With SQLite the suite above runs (on SQLite); with any other, the
    /// "Backends" comparison runs too, for every backend listed (SQLite included).
    pub backends: Vec<Backend>,
    /// Concurrency of the backend comparison (sessiond and the raw operations alike).
    pub backend_concurrency: usize,
    /// Sessions seeded to measure each store's bytes per session.
    pub bytes_sessions: usize,
    /// Requests of each scenario in the round-trip counting pass (0: no such pass).
    pub trip_requests: usize,
    pub postgres_url: String,
    /// Standalone Redis (the Cluster is a throwaway loopback one).
    pub redis_url: String,
    pub cluster_masters: usize,
    /// Concurrent failed logins of the login-memory measurement (0 skips it; it waits out the
    /// Argon2 pool's 30-second idle release).
    pub login_memory_burst: usize,
    /// Run the optional peers: node-oidc-provider's introspection beside sessiond's (skipped,
    /// with the reason in the report, where Node.js or its packages are not available).
    pub peers: bool,
    /// node-oidc-provider's directory (package.json, package-lock.json, server.js).
    pub peer_dir: PathBuf,
}

impl Options {
    fn wants(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|s| s == scenario))
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl Options {
    /// The default: about 8–10 minutes on 2 cores.
    pub fn full() -> Self {
        Self {
            concurrencies: vec![1, 16, 64],
            duration: Duration::from_secs(5),
            max_requests: usize::MAX,
            warmup: Duration::from_secs(2),
            live_sessions: 10_000,
            logout_pool: 60_000,
            cold_pool: 20_000,
            leak_check: true,
            cache_size: None,
            users: 16,
            scale_small: 1_000,
            scale_large: 1_000_000,
            seed_budget: Duration::from_secs(300),
            scale_spread_tokens: 100_000,
            skip_scale: false,
            server_threads: cores(),
            client_threads: cores(),
            data_dir: std::env::temp_dir(),
            verbose: true,
            only: None,
            backends: vec![Backend::Sqlite],
            backend_concurrency: 16,
            bytes_sessions: 10_000,
            trip_requests: 200,
            postgres_url: std::env::var("SESSIOND_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            redis_url: std::env::var("SESSIOND_TEST_REDIS")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            cluster_masters: 3,
            login_memory_burst: 120,
            peers: true,
            peer_dir: peer::default_dir(),
        }
    }

    /// A 30-second smoke run.
    pub fn quick() -> Self {
        Self {
            duration: Duration::from_millis(700),
            warmup: Duration::from_millis(300),
            live_sessions: 2_000,
            logout_pool: 6_000,
            cold_pool: 2_000,
            users: 4,
            scale_large: 20_000,
            seed_budget: Duration::from_secs(20),
            scale_spread_tokens: 5_000,
            login_memory_burst: 0,
            ..Self::full()
        }
    }

    /// A few seconds, tiny counts: for the CI smoke test.
    pub fn tiny() -> Self {
        Self {
            concurrencies: vec![1, 4],
            duration: Duration::from_millis(250),
            max_requests: 40,
            warmup: Duration::from_millis(50),
            live_sessions: 50,
            logout_pool: 60,
            cold_pool: 40,
            users: 2,
            scale_small: 50,
            scale_large: 200,
            seed_budget: Duration::from_secs(10),
            scale_spread_tokens: 100,
            verbose: false,
            backend_concurrency: 4,
            bytes_sessions: 100,
            trip_requests: 20,
            // tests/oidc_peer.rs tests the peer.
            peers: false,
            ..Self::quick()
        }
    }
}

/// One scenario at one concurrency.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: &'static str,
    pub concurrency: usize,
    pub ok: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// The baseline's name and rate.
    pub baseline: Option<(String, f64)>,
    pub first_error: Option<String>,
}

impl Row {
    pub fn ratio(&self) -> Option<f64> {
        self.baseline.as_ref().map(|(_, b)| self.rps / b.max(1e-9))
    }
}

#[derive(Debug, Clone)]
pub struct BaselineRow {
    pub name: String,
    pub threads: usize,
    pub ops: u64,
    pub per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

#[derive(Debug, Clone)]
pub struct ScaleRow {
    pub label: String,
    pub sessions: usize,
    pub distinct_tokens: usize,
    /// The pass that presents each token once, before the measurement (the cold path).
    pub first_use_rps: f64,
    pub first_use_p99_us: u64,
    pub rps: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
    pub rss: u64,
    pub store_logical: u64,
    pub store_on_disk: u64,
}

#[derive(Debug, Clone)]
pub struct Scale {
    pub rows: Vec<ScaleRow>,
    pub seeded_large: usize,
    pub seed_secs: f64,
    pub bytes_per_session: f64,
    /// Bytes of the session tokens the load generator itself holds (part of the RSS).
    pub client_token_bytes: usize,
    pub budget_hit: bool,
    /// RSS with the scale check's sessiond started and nothing seeded yet.
    pub rss_before: u64,
    /// The session and verified-token caches' capacity (each).
    pub cache_capacity: usize,
}

#[derive(Debug, Clone)]
pub struct Starvation {
    pub concurrency: usize,
    pub idle_p99_us: u64,
    pub loaded_p99_us: u64,
    pub loaded_whoami_rps: f64,
    pub login_rps: f64,
}

/// The leak check: RSS after each of two identical mix runs, and at the suite's start and end.
#[derive(Debug, Clone)]
pub struct Leak {
    pub concurrency: usize,
    pub requests: [u64; 2],
    pub rss_after: [u64; 2],
}

/// Where one login run's CPU went, per login.
#[derive(Debug, Clone, Copy)]
pub struct LoginCpu {
    pub concurrency: usize,
    /// Time the server's Argon2 computed, per verification.
    pub hash_ms: f64,
    /// The process's CPU time (server and load generator) during the login slices, per login,
    /// less the Argon2 time: everything a login costs besides hashing. A lower bound: the
    /// Argon2 time is wall time, which includes preemption once the cores are busy.
    pub other_cpu_ms: f64,
}

/// Login and raw Argon2 are measured in this many alternating slices each (of `--duration`).
pub const LOGIN_SLICES: u32 = 5;

/// The scenario name of node-oidc-provider's introspection rows.
pub const PEER_SCENARIO: &str = "oidc-provider-introspect";
/// Issue 13: sessiond's introspection at least this many times node-oidc-provider's.
pub const PEER_TARGET: f64 = 15.0;

/// What became of the node-oidc-provider comparison (absent when it was not asked for).
#[derive(Debug, Clone)]
pub enum PeerStatus {
    /// Measured: the peer's rows are [`PEER_SCENARIO`]; its label, e.g. "node-oidc-provider
    /// 8.8.1 on Node.js v20.20.2".
    Measured(String),
    /// Not measured, and why (one line).
    NotMeasured(String),
}

impl PeerStatus {
    fn not_measured(why: &anyhow::Error) -> Self {
        // One table cell: no pipes, no line breaks, not too long.
        let line = format!("{why:#}")
            .replace('|', "/")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Self::NotMeasured(match line.char_indices().nth(400) {
            Some((i, _)) => format!("{}…", &line[..i]),
            None => line,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Clone)]
pub struct Report {
    /// The suite on SQLite (empty when `--backends` does not list SQLite).
    pub rows: Vec<Row>,
    pub baselines: Vec<BaselineRow>,
    pub starvation: Option<Starvation>,
    pub scale: Option<Scale>,
    pub targets: Vec<Target>,
    /// The backend comparison (empty unless a backend other than SQLite was asked for).
    pub backends: Vec<backends::BackendResult>,
    /// RSS before / after a burst of failed logins / after idle.
    pub login_memory: Option<memory::LoginMemory>,
    /// The process's RSS when the run started and when it ended.
    pub rss_start: u64,
    pub rss_end: u64,
    pub leak: Option<Leak>,
    /// The node-oidc-provider comparison (`None`: not asked for).
    pub peer: Option<PeerStatus>,
    /// Per login run: where its CPU went.
    pub login_cpu: Vec<LoginCpu>,
    pub options: Options,
    pub total_secs: f64,
}

macro_rules! say {
    ($o:expr, $($t:tt)*) => {
        if $o.verbose {
            eprintln!($($t)*);
        }
    };
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("load")
        .enable_all()
        .build()
        .context("cannot build the load generator's runtime")
}

/// Runs the whole suite: on SQLite if `o.backends` lists it, then the backend comparison if
/// it lists any other backend.
pub fn run(o: &Options) -> Result<Report> {
    let started = Instant::now();
    let rss_start = server::rss_bytes();
    let client = runtime(o.client_threads)?;
    let mut report = if o.backends.contains(&Backend::Sqlite) {
        suite(o, &client)?
    } else {
        Report {
            rows: Vec::new(),
            baselines: Vec::new(),
            starvation: None,
            scale: None,
            targets: Vec::new(),
            backends: Vec::new(),
            login_memory: None,
            rss_start: 0,
            rss_end: 0,
            leak: None,
            peer: None,
            login_cpu: Vec::new(),
            options: o.clone(),
            total_secs: 0.0,
        }
    };
    if o.backends.iter().any(|&b| b != Backend::Sqlite) {
        report.backends = backends::run_all(o, &client)?;
    }
    report.rss_start = rss_start;
    report.rss_end = server::rss_bytes();
    report.targets = report.evaluate();
    report.total_secs = started.elapsed().as_secs_f64();
    client.shutdown_background();
    Ok(report)
}

/// The suite on SQLite (what `run` did before `--backends`).
fn suite(o: &Options, client: &tokio::runtime::Runtime) -> Result<Report> {
    // Login memory first, on a fresh sessiond in a fresh process, so that its RSS is not
    // mixed with what the other scenarios leave behind.
    let login_memory = if o.login_memory_burst > 0 && o.wants("login-memory") {
        let idle = sessiond_core::password::IDLE_RELEASE + Duration::from_secs(2);
        let m = memory::login_memory(
            o.server_threads,
            &o.data_dir,
            client,
            o.login_memory_burst,
            idle,
        )?;
        say!(
            o,
            "login memory: RSS {:.1} MiB before, {:.1} MiB after {} failed logins, {:.1} MiB after {} s idle",
            m.rss_before as f64 / 1048576.0,
            m.rss_after_burst as f64 / 1048576.0,
            m.burst,
            m.rss_after_idle as f64 / 1048576.0,
            idle.as_secs()
        );
        Some(m)
    } else {
        None
    };
    // The scale check first, on its own sessiond, so that its RSS is not inflated by what the
    // other scenarios leave in the allocator.
    let scale = if o.skip_scale || !o.wants("scale") {
        None
    } else {
        Some(scale_check(o, client)?)
    };
    let ceiling = Ceiling::start(o.server_threads)?;
    let sd = Sessiond::start(o.server_threads, &o.data_dir, o.users)?;
    say!(
        o,
        "sessiond on {}, ceiling on {}, data in {}",
        sd.addr,
        ceiling.addr,
        sd.db_path.display()
    );

    // Baselines, with both servers idle.
    let base_ops = u64::try_from(o.max_requests).unwrap_or(u64::MAX);
    let hash_threads = sd.engine().config().hash_concurrency;
    let argon = baseline::argon2(hash_threads, o.duration, base_ops)?;
    let sqlite = baseline::sqlite_insert(&o.data_dir, o.duration, base_ops)?;
    let baselines = vec![
        BaselineRow {
            name: "Argon2id hash (m=19456,t=2,p=1)".into(),
            threads: hash_threads,
            ops: argon.ops,
            per_sec: argon.per_sec(),
            p50_us: argon.hist.value_at_quantile(0.5),
            p99_us: argon.hist.value_at_quantile(0.99),
        },
        BaselineRow {
            name: "SQLite INSERT, WAL + synchronous=FULL, 1 row/txn".into(),
            threads: 1,
            ops: sqlite.ops,
            per_sec: sqlite.per_sec(),
            p50_us: sqlite.hist.value_at_quantile(0.5),
            p99_us: sqlite.hist.value_at_quantile(0.99),
        },
    ];
    say!(
        o,
        "baselines: argon2 {:.1}/s on {hash_threads} threads, sqlite insert {:.0}/s",
        argon.per_sec(),
        sqlite.per_sec()
    );

    let (_, live) = client.block_on(sd.seed(o.live_sessions, 1, 256, None))?;
    let workload = |spare: Vec<server::Seeded>, addr| {
        Arc::new(Workload {
            addr,
            tenant: server::TENANT.into(),
            basic_auth: load::basic_auth(&sd.client_id, &sd.client_secret),
            users: sd.users.iter().map(|u| u.0.clone()).collect(),
            live: Arc::new(live.iter().map(|s| s.session_token.clone()).collect()),
            spare: Mutex::new(spare),
        })
    };
    let run_op = |w: Arc<Workload>, op: Op, c: usize| -> Result<RunResult> {
        client.block_on(load::run(w, op, c, o.duration, o.max_requests))
    };
    let maxc = o.concurrencies.iter().copied().max().unwrap_or(1);
    // Warm-up: connections, caches (every live token verified once), allocator.
    client.block_on(load::run(
        workload(Vec::new(), sd.addr),
        Op::Whoami,
        maxc,
        o.warmup,
        o.max_requests,
    ))?;
    client.block_on(load::run(
        workload(Vec::new(), sd.addr),
        Op::Introspect,
        maxc,
        o.warmup,
        o.max_requests,
    ))?;

    // node-oidc-provider, started (and warmed up) once; measured right after sessiond's
    // introspection at each concurrency.
    let mut peer_run = None;
    let mut peer_status = None;
    if o.peers && o.wants("introspect") {
        match start_peer(o, client, maxc) {
            Ok(p) => {
                say!(o, "peer: {} on {}", p.peer.label, p.peer.addr);
                peer_status = Some(PeerStatus::Measured(p.peer.label.clone()));
                peer_run = Some(p);
            }
            Err(e) => {
                say!(o, "node-oidc-provider not measured: {e:#}");
                peer_status = Some(PeerStatus::not_measured(&e));
            }
        }
    }

    let mut rows: Vec<Row> = Vec::new();
    let mut push =
        |scenario: &'static str, c: usize, r: &RunResult, base: Option<(String, f64)>| {
            say!(
                o,
                "{scenario:>14} c={c:<3} {:>9.1}/s p50 {:>7}µs p99 {:>7}µs errors {}{}",
                r.rps(),
                r.p50_us(),
                r.p99_us(),
                r.errors,
                r.first_error
                    .as_deref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            );
            rows.push(Row {
                scenario,
                concurrency: c,
                ok: r.ok,
                errors: r.errors,
                rps: r.rps(),
                p50_us: r.p50_us(),
                p99_us: r.p99_us(),
                baseline: base,
                first_error: r.first_error.clone(),
            });
        };

    // Each baseline below is measured right before the run it is compared with, at the same
    // concurrency: the machine's state is the same for both.
    let mut interleaved: Vec<BaselineRow> = Vec::new();
    let mut note = |name: String, threads: usize, r: &baseline::Rate| {
        interleaved.push(BaselineRow {
            name,
            threads,
            ops: r.ops,
            per_sec: r.per_sec(),
            p50_us: r.hist.value_at_quantile(0.5),
            p99_us: r.hist.value_at_quantile(0.99),
        });
        r.per_sec()
    };
    for &c in &o.concurrencies {
        if o.wants("whoami") {
            let ceil = run_op(workload(Vec::new(), ceiling.addr), Op::CeilingGet, c)?;
            push("ceiling-get", c, &ceil, None);
            let r = run_op(workload(Vec::new(), sd.addr), Op::Whoami, c)?;
            push("whoami", c, &r, Some(("ceiling-get".into(), ceil.rps())));
            let (_, fresh) = client.block_on(sd.seed(o.cold_pool, 1, 256, None))?;
            let r = run_op(workload(fresh, sd.addr), Op::WhoamiCold, c)?;
            push(
                "whoami-cold",
                c,
                &r,
                Some(("ceiling-get".into(), ceil.rps())),
            );
        }
        if o.wants("introspect") {
            let ceil = run_op(workload(Vec::new(), ceiling.addr), Op::CeilingPost, c)?;
            push("ceiling-post", c, &ceil, None);
            let r = run_op(workload(Vec::new(), sd.addr), Op::Introspect, c)?;
            push(
                "introspect",
                c,
                &r,
                Some(("ceiling-post".into(), ceil.rps())),
            );
            let (_, fresh) = client.block_on(sd.seed(o.cold_pool, 1, 256, None))?;
            let r = run_op(workload(fresh, sd.addr), Op::IntrospectCold, c)?;
            push(
                "introspect-cold",
                c,
                &r,
                Some(("ceiling-post".into(), ceil.rps())),
            );
            if let Some(p) = &peer_run {
                let failed = match run_op(p.workload.clone(), Op::PeerIntrospect, c) {
                    Ok(r) if r.ok > 0 => {
                        push(PEER_SCENARIO, c, &r, None);
                        None
                    }
                    Ok(r) => Some(anyhow::anyhow!(
                        "no answer at c={c}: {}; its stderr: {}",
                        r.first_error.as_deref().unwrap_or("none"),
                        p.peer.stderr_tail()
                    )),
                    Err(e) => Some(e.context(format!("at c={c}"))),
                };
                if let Some(e) = failed {
                    say!(o, "node-oidc-provider not measured: {e:#}");
                    peer_status = Some(PeerStatus::not_measured(&e));
                    peer_run = None;
                }
            }
        }
    }
    // Stops node (idle from here on).
    drop(peer_run);
    let mut login_cpu_runs = Vec::new();
    for &c in o.concurrencies.iter().filter(|_| o.wants("login")) {
        // Raw hashing as fast as this machine hashes for c clients: c hashes at once up to
        // the hashing concurrency (more at once than cores only thrash the CPU caches with
        // 19 MiB blocks, which would flatter login).
        // Both in alternating slices (see `baseline::interleaved`): the host's speed drifts
        // by tens of percent over a minute, which compared one after the other moved the c = 1
        // ratio between 0.72× and 0.92× from run to run.
        let threads = c.min(hash_threads).max(1);
        let slice = o.duration / LOGIN_SLICES;
        let before = sd.engine().hashing_stats();
        let mut login_cpu = std::time::Duration::ZERO;
        let (raw, r) = baseline::interleaved(
            LOGIN_SLICES,
            || baseline::argon2(threads, slice, base_ops),
            || {
                let cpu = server::cpu_time();
                let r = client.block_on(load::run(
                    workload(Vec::new(), sd.addr),
                    Op::Login,
                    c,
                    slice,
                    o.max_requests,
                ));
                login_cpu += server::cpu_time().saturating_sub(cpu);
                r
            },
        )?;
        let after = sd.engine().hashing_stats();
        let rate = note(
            format!("Argon2id hash, {threads} at once (for c={c}; interleaved with login)"),
            threads,
            &raw,
        );
        let count =
            |s: &sessiond_core::password::HashingStats| -> u64 { s.verifications.values().sum() };
        let hashes = count(&after).saturating_sub(count(&before));
        if hashes > 0 {
            let busy = after.busy.saturating_sub(before.busy);
            let per = |d: std::time::Duration| d.as_secs_f64() * 1e3 / hashes as f64;
            login_cpu_runs.push(LoginCpu {
                concurrency: c,
                hash_ms: per(busy),
                other_cpu_ms: per(login_cpu.saturating_sub(busy)),
            });
        }
        push("login", c, &r, Some((format!("argon2 c={c}"), rate)));
    }
    for &c in o.concurrencies.iter().filter(|_| o.wants("refresh")) {
        let (_, chains) = client.block_on(sd.seed(c, 1, 64, None))?;
        let raw = baseline::sqlite_group_insert(&o.data_dir, c, o.duration, base_ops)?;
        let rate = note(format!("SQLite INSERT, group commit, {c} clients"), c, &raw);
        let r = run_op(workload(chains, sd.addr), Op::Refresh, c)?;
        push(
            "refresh",
            c,
            &r,
            Some((format!("sqlite group insert c={c}"), rate)),
        );
    }
    for &c in o.concurrencies.iter().filter(|_| o.wants("logout")) {
        let (_, pool) = client.block_on(sd.seed(o.logout_pool, 1, 256, None))?;
        let raw = baseline::sqlite_group_insert(&o.data_dir, c, o.duration, base_ops)?;
        let rate = note(format!("SQLite INSERT, group commit, {c} clients"), c, &raw);
        let r = run_op(workload(pool, sd.addr), Op::Logout, c)?;
        push(
            "logout",
            c,
            &r,
            Some((format!("sqlite group insert c={c}"), rate)),
        );
    }
    for &c in o.concurrencies.iter().filter(|_| o.wants("mix")) {
        let (_, pool) = client.block_on(sd.seed(o.logout_pool / 4 + c, 1, 256, None))?;
        let r = run_op(workload(pool, sd.addr), Op::Mix, c)?;
        push("mix", c, &r, None);
    }
    // The leak check: the same mix run twice more; what a leak keeps shows as growth.
    let leak = if o.leak_check && o.wants("mix") {
        let c = 16.min(maxc);
        let mut requests = [0u64; 2];
        let mut rss_after = [0u64; 2];
        for i in 0..2 {
            let (_, pool) = client.block_on(sd.seed(o.logout_pool / 4 + c, 1, 256, None))?;
            let r = run_op(workload(pool, sd.addr), Op::Mix, c)?;
            requests[i] = r.ok;
            rss_after[i] = server::rss_bytes();
            say!(
                o,
                "leak check {}: {} requests, RSS {:.1} MiB",
                i + 1,
                r.ok,
                rss_after[i] as f64 / 1048576.0
            );
        }
        Some(Leak {
            concurrency: c,
            requests,
            rss_after,
        })
    } else {
        None
    };

    // Logins must not starve validation: whoami alone, then beside saturating logins.
    let sc = 16.min(maxc);
    let starvation = if o.wants("starvation") {
        Some(starvation(o, client, &workload, sd.addr, sc)?)
    } else {
        None
    };
    drop(sd);
    drop(ceiling);
    let mut baselines = baselines;
    baselines.extend(interleaved);
    Ok(Report {
        rows,
        baselines,
        starvation,
        scale,
        targets: Vec::new(),
        backends: Vec::new(),
        login_memory,
        rss_start: 0,
        rss_end: 0,
        leak,
        peer: peer_status,
        login_cpu: login_cpu_runs,
        options: o.clone(),
        total_secs: 0.0,
    })
}

/// node-oidc-provider with its token pool, warmed up.
struct PeerRun {
    peer: peer::OidcPeer,
    workload: Arc<Workload>,
}

/// Starts node-oidc-provider, takes [`peer::POOL`] tokens from it and warms it up (V8's JIT
/// included) at the highest concurrency. The error says why it cannot be measured.
fn start_peer(o: &Options, client: &tokio::runtime::Runtime, maxc: usize) -> Result<PeerRun> {
    let peer = peer::OidcPeer::start(&o.peer_dir, &|m| say!(o, "{m}"))?;
    let tokens = client
        .block_on(peer.tokens(peer::POOL, 8))
        .context("cannot get its access tokens")?;
    let workload = Arc::new(Workload {
        addr: peer.addr,
        tenant: String::new(),
        basic_auth: peer.basic_auth(),
        users: Vec::new(),
        live: Arc::new(tokens),
        spare: Mutex::new(Vec::new()),
    });
    let warm = client.block_on(load::run(
        workload.clone(),
        Op::PeerIntrospect,
        maxc,
        o.warmup,
        o.max_requests,
    ))?;
    if warm.ok == 0 || warm.errors > 0 {
        anyhow::bail!(
            "its warm-up failed ({} answers, {} errors; first: {}); its stderr: {}",
            warm.ok,
            warm.errors,
            warm.first_error.as_deref().unwrap_or("none"),
            peer.stderr_tail()
        );
    }
    Ok(PeerRun { peer, workload })
}

fn starvation(
    o: &Options,
    client: &tokio::runtime::Runtime,
    workload: &dyn Fn(Vec<server::Seeded>, std::net::SocketAddr) -> Arc<Workload>,
    addr: std::net::SocketAddr,
    sc: usize,
) -> Result<Starvation> {
    let run_op = |w: Arc<Workload>, op: Op, c: usize| -> Result<RunResult> {
        client.block_on(load::run(w, op, c, o.duration, o.max_requests))
    };
    let idle = run_op(workload(Vec::new(), addr), Op::Whoami, sc)?;
    let (loaded, logins) = client.block_on(async {
        let a = tokio::spawn(load::run(
            workload(Vec::new(), addr),
            Op::Whoami,
            sc,
            o.duration,
            o.max_requests,
        ));
        let b = tokio::spawn(load::run(
            workload(Vec::new(), addr),
            Op::Login,
            sc,
            o.duration,
            o.max_requests,
        ));
        anyhow::Ok((a.await??, b.await??))
    })?;
    let s = Starvation {
        concurrency: sc,
        idle_p99_us: idle.p99_us(),
        loaded_p99_us: loaded.p99_us(),
        loaded_whoami_rps: loaded.rps(),
        login_rps: logins.rps(),
    };
    say!(
        o,
        "whoami p99 idle {}µs, beside {sc} logging-in clients {}µs ({:.1} logins/s)",
        s.idle_p99_us,
        s.loaded_p99_us,
        s.login_rps
    );
    Ok(s)
}

/// whoami p99, RSS and store size with a small and a large number of seeded sessions, on a
/// fresh sessiond (the main one is gone by then).
fn scale_check(o: &Options, client: &tokio::runtime::Runtime) -> Result<Scale> {
    // Caches sized for the working set, as a deployment serving it would set `cache.sessions`
    // and `cache.tokens` (`--cache-size` overrides).
    let cache_capacity = o
        .cache_size
        .unwrap_or((o.scale_spread_tokens * 5 / 2).max(100_000));
    let sd = Sessiond::start_on(
        o.server_threads,
        &o.data_dir,
        o.users,
        None,
        Some(cache_capacity),
    )?;
    let rss_before = server::rss_bytes();
    let c = 16.min(o.concurrencies.iter().copied().max().unwrap_or(1));
    let mut rows = Vec::new();
    let measure = |label: String,
                   sessions: usize,
                   tokens: &[server::Seeded],
                   rows: &mut Vec<ScaleRow>|
     -> Result<()> {
        let w = Arc::new(Workload {
            addr: sd.addr,
            tenant: server::TENANT.into(),
            basic_auth: String::new(),
            users: Vec::new(),
            live: Arc::new(tokens.iter().map(|s| s.session_token.clone()).collect()),
            spare: Mutex::new(Vec::new()),
        });
        // Every token once first: its first use (a signature check and a store read, the
        // cold path) is not what the measurement is about — the latency of a warm working set
        // of this size is. `first_use` keeps that pass's figures for the report.
        let first = client.block_on(load::run(
            w.clone(),
            Op::Whoami,
            c,
            o.seed_budget,
            tokens.len(),
        ))?;
        client.block_on(load::run(
            w.clone(),
            Op::Whoami,
            c,
            o.warmup,
            o.max_requests,
        ))?;
        let r = client.block_on(load::run(w, Op::Whoami, c, o.duration, o.max_requests))?;
        say!(
            o,
            "scale {label}, first use of each of {} tokens: {:.0}/s p99 {}µs",
            tokens.len(),
            first.rps(),
            first.p99_us()
        );
        let (logical, on_disk) = sd.store_size()?;
        say!(
            o,
            "scale {label}: {:.0}/s p99 {}µs rss {} MiB store {} MiB",
            r.rps(),
            r.p99_us(),
            server::rss_bytes() >> 20,
            logical >> 20
        );
        rows.push(ScaleRow {
            label,
            sessions,
            distinct_tokens: tokens.len(),
            first_use_rps: first.rps(),
            first_use_p99_us: first.p99_us(),
            rps: r.rps(),
            p50_us: r.p50_us(),
            p99_us: r.p99_us(),
            errors: r.errors,
            rss: server::rss_bytes(),
            store_logical: logical,
            store_on_disk: on_disk,
        });
        Ok(())
    };
    let (small, hot) = client.block_on(sd.seed(o.scale_small, 1, 256, None))?;
    measure(format!("{small} sessions"), small, &hot, &mut rows)?;
    let (size_small, _) = sd.store_size()?;
    let more = o.scale_large.saturating_sub(small);
    let keep_every = more.div_ceil(o.scale_spread_tokens.max(1)).max(1);
    let t0 = Instant::now();
    let deadline = t0 + o.seed_budget;
    say!(
        o,
        "seeding {more} more sessions (budget {:?})",
        o.seed_budget
    );
    let (made, spread) = client.block_on(sd.seed(more, keep_every, 512, Some(deadline)))?;
    let seed_secs = t0.elapsed().as_secs_f64();
    let total = small + made;
    let (size_large, _) = sd.store_size()?;
    measure(
        format!("{total} sessions, same {small} tokens"),
        total,
        &hot,
        &mut rows,
    )?;
    measure(
        format!("{total} sessions, {} tokens spread", spread.len()),
        total,
        &spread,
        &mut rows,
    )?;
    let client_token_bytes = hot
        .iter()
        .chain(spread.iter())
        .map(|s| s.session_token.len() + s.refresh_token.len())
        .sum();
    Ok(Scale {
        rows,
        seeded_large: total,
        seed_secs,
        bytes_per_session: size_large.saturating_sub(size_small) as f64 / made.max(1) as f64,
        client_token_bytes,
        budget_hit: made < more,
        rss_before,
        cache_capacity,
    })
}

impl Report {
    pub fn row(&self, scenario: &str, c: usize) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.concurrency == c)
    }

    /// sessiond's introspection against node-oidc-provider's, at each concurrency both ran:
    /// (concurrency, sessiond's rate, the peer's rate).
    pub fn peer_ratios(&self) -> Vec<(usize, f64, f64)> {
        if !matches!(self.peer, Some(PeerStatus::Measured(_))) {
            return Vec::new();
        }
        self.options
            .concurrencies
            .iter()
            .filter_map(|&c| {
                let ours = self.row("introspect", c)?.rps;
                let theirs = self.row(PEER_SCENARIO, c)?.rps;
                Some((c, ours, theirs))
            })
            .collect()
    }

    /// "25.1× at c=1, 30.2× at c=16, 28.0× at c=64".
    fn peer_ratios_text(&self) -> String {
        self.peer_ratios()
            .iter()
            .map(|(c, ours, theirs)| format!("{:.1}× at c={c}", ours / theirs.max(1e-9)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn evaluate(&self) -> Vec<Target> {
        let mut t = Vec::new();
        let maxc = self
            .options
            .concurrencies
            .iter()
            .copied()
            .max()
            .unwrap_or(1);
        let minc = self
            .options
            .concurrencies
            .iter()
            .copied()
            .min()
            .unwrap_or(1);
        let mut ratio_target = |name: &str, scenario: &str, c: usize, min: f64| {
            if let Some(r) = self
                .row(scenario, c)
                .and_then(|r| r.ratio().map(|x| (r, x)))
            {
                t.push(Target {
                    name: name.into(),
                    measured: format!("{:.2}× at c={c} ({:.0}/s)", r.1, r.0.rps),
                    met: r.1 >= min,
                });
            }
        };
        ratio_target("whoami ≥ 0.6× ceiling", "whoami", maxc, 0.6);
        ratio_target("introspection ≥ 0.5× ceiling", "introspect", maxc, 0.5);
        for c in [minc, maxc] {
            ratio_target(
                &format!("login ≥ 0.9× raw Argon2id at c={c}"),
                "login",
                c,
                0.9,
            );
            ratio_target(
                &format!("refresh ≥ 0.5× group-committed insert at c={c}"),
                "refresh",
                c,
                0.5,
            );
        }
        // node-oidc-provider's introspection, at the highest concurrency both ran.
        let peer = self.peer_ratios();
        if let Some(&(c, ours, theirs)) = peer.iter().find(|p| p.0 == maxc).or(peer.last()) {
            let x = ours / theirs.max(1e-9);
            t.push(Target {
                name: format!("introspection ≥ {PEER_TARGET}× node-oidc-provider's introspection"),
                measured: format!(
                    "{x:.1}× at c={c} ({ours:.0}/s vs {theirs:.0}/s); all: {}",
                    self.peer_ratios_text()
                ),
                met: x >= PEER_TARGET,
            });
        }
        // Keycloak's sizing guide: 120 refreshes/s and 15 logins/s per vCPU.
        let cores = self.options.server_threads.max(1) as f64;
        for (scenario, per_core, times) in [("refresh", 120.0, 10.0), ("login", 15.0, 3.0)] {
            if let Some(r) = self.row(scenario, maxc) {
                let x = r.rps / cores / per_core;
                t.push(Target {
                    name: format!("{scenario} ≥ {times}× Keycloak's {per_core}/s per core"),
                    measured: format!("{x:.2}× ({:.0}/s on {cores} cores at c={maxc})", r.rps),
                    met: x >= times,
                });
            }
        }
        if let Some(l) = &self.leak {
            let growth = l.rss_after[1] as f64 / l.rss_after[0].max(1) as f64 - 1.0;
            t.push(Target {
                name: "no RSS growth between two identical mix runs (≤ 2%)".into(),
                measured: format!(
                    "{:+.1}% ({:.1} → {:.1} MiB, {} and {} requests at c={})",
                    growth * 100.0,
                    l.rss_after[0] as f64 / 1048576.0,
                    l.rss_after[1] as f64 / 1048576.0,
                    l.requests[0],
                    l.requests[1],
                    l.concurrency
                ),
                met: growth <= 0.02,
            });
        }
        if let Some(s) = &self.starvation {
            let x = s.loaded_p99_us as f64 / s.idle_p99_us.max(1) as f64;
            t.push(Target {
                name: "whoami p99 beside saturating logins ≤ 2× idle".into(),
                measured: format!(
                    "{x:.2}× ({} µs vs {} µs, c={})",
                    s.loaded_p99_us, s.idle_p99_us, s.concurrency
                ),
                met: x <= 2.0,
            });
        }
        // Traffic spread over the large set (the last row) against the small set.
        if let Some(s) = &self.scale
            && let (Some(small), Some(large)) = (s.rows.first(), s.rows.last())
            && s.rows.len() > 1
        {
            let x = large.p99_us as f64 / small.p99_us.max(1) as f64;
            t.push(Target {
                name: format!(
                    "whoami p99 with {} sessions, {} tokens spread, ≤ 2× with {}",
                    large.sessions, large.distinct_tokens, small.sessions
                ),
                measured: format!("{x:.2}× ({} µs vs {} µs)", large.p99_us, small.p99_us),
                met: x <= 2.0,
            });
        }
        t
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let o = &self.options;
        let _ = writeln!(
            m,
            "Run: {} s per scenario and concurrency, concurrencies {:?}, {} server threads per \
             server, {} load-generator threads; total {:.0} s.\n",
            o.duration.as_secs_f64(),
            o.concurrencies,
            o.server_threads,
            o.client_threads,
            self.total_secs
        );
        if !self.baselines.is_empty() {
            self.scenarios_markdown(&mut m);
        }
        if !self.backends.is_empty() {
            self.backends_markdown(&mut m);
        }
        if let Some(lm) = &self.login_memory {
            let _ = writeln!(m, "\n#{}", lm.markdown());
        }
        m
    }

    fn scenarios_markdown(&self, m: &mut String) {
        let _ = writeln!(m, "### Scenarios\n");
        let _ = writeln!(
            m,
            "| scenario | conc. | req/s | p50 µs | p99 µs | errors | baseline | baseline /s | ratio |"
        );
        let _ = writeln!(m, "|---|---:|---:|---:|---:|---:|---|---:|---:|");
        for r in &self.rows {
            let (bn, bv) = r
                .baseline
                .as_ref()
                .map_or(("—".to_owned(), "—".to_owned()), |(n, v)| {
                    (n.clone(), format!("{v:.1}"))
                });
            let ratio = r.ratio().map_or("—".to_owned(), |x| format!("{x:.2}×"));
            let _ = writeln!(
                m,
                "| {} | {} | {:.1} | {} | {} | {} | {bn} | {bv} | {ratio} |",
                r.scenario, r.concurrency, r.rps, r.p50_us, r.p99_us, r.errors
            );
        }
        match &self.peer {
            Some(PeerStatus::Measured(label)) => {
                let _ = writeln!(
                    m,
                    "\nintrospection vs node-oidc-provider: {}, target ≥ {PEER_TARGET}× ({label}, \
                     one process; {} opaque client_credentials tokens in its default in-memory \
                     adapter, POST {} with client_secret_basic).",
                    self.peer_ratios_text(),
                    peer::POOL,
                    peer::INTROSPECTION_PATH
                );
            }
            Some(PeerStatus::NotMeasured(why)) => {
                let _ = writeln!(
                    m,
                    "\nintrospection vs node-oidc-provider: not measured: {why}"
                );
            }
            None => {}
        }
        let _ = writeln!(m, "\n### Baselines\n");
        let _ = writeln!(m, "| operation | threads | ops | ops/s | p50 µs | p99 µs |");
        let _ = writeln!(m, "|---|---:|---:|---:|---:|---:|");
        for b in &self.baselines {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {:.1} | {} | {} |",
                b.name, b.threads, b.ops, b.per_sec, b.p50_us, b.p99_us
            );
        }
        if !self.login_cpu.is_empty() {
            let per_run: Vec<String> = self
                .login_cpu
                .iter()
                .map(|l| {
                    format!(
                        "{:.1} ms Argon2 + {:.1} ms other at c={}",
                        l.hash_ms, l.other_cpu_ms, l.concurrency
                    )
                })
                .collect();
            let _ = writeln!(
                m,
                "\nCPU per login during the login runs — Argon2 inside the server (time \
                 computing, per verification) and everything else this process (server and \
                 load generator) spent, per login: {}.",
                per_run.join(", ")
            );
        }
        if let Some(s) = &self.starvation {
            let _ = writeln!(
                m,
                "\n### Logins beside validation\n\nwhoami at c={}: p99 {} µs alone, {} µs beside \
                 {} clients logging in ({:.1} logins/s, {:.0} whoami/s).",
                s.concurrency,
                s.idle_p99_us,
                s.loaded_p99_us,
                s.concurrency,
                s.login_rps,
                s.loaded_whoami_rps
            );
        }
        if let Some(s) = &self.scale {
            let _ = writeln!(
                m,
                "\n### Scale (whoami at c=16; session and token caches of {} entries each)\n",
                s.cache_capacity
            );
            let _ = writeln!(
                m,
                "| seeded | distinct tokens | first use: req/s, p99 µs | req/s | p50 µs | p99 µs | errors | process RSS MiB | store MiB (logical / on disk) |"
            );
            let _ = writeln!(m, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
            for r in &s.rows {
                let _ = writeln!(
                    m,
                    "| {} | {} | {:.0}, {} | {:.0} | {} | {} | {} | {:.1} | {:.1} / {:.1} |",
                    r.label,
                    r.distinct_tokens,
                    r.first_use_rps,
                    r.first_use_p99_us,
                    r.rps,
                    r.p50_us,
                    r.p99_us,
                    r.errors,
                    r.rss as f64 / 1048576.0,
                    r.store_logical as f64 / 1048576.0,
                    r.store_on_disk as f64 / 1048576.0
                );
            }
            let _ = writeln!(
                m,
                "\nSeeded {} sessions in {:.0} s{}; {:.0} bytes per session in SQLite (session \
                 row + refresh-token row + indexes). The load generator's own token pools hold \
                 {:.1} MiB of that RSS; before seeding, the process's RSS was {:.1} MiB.",
                s.seeded_large,
                s.seed_secs,
                if s.budget_hit {
                    " (the seeding budget ran out before the requested count)"
                } else {
                    ""
                },
                s.bytes_per_session,
                s.client_token_bytes as f64 / 1048576.0,
                s.rss_before as f64 / 1048576.0
            );
        }
        let _ = writeln!(
            m,
            "\nProcess RSS (both servers and the load generator): {:.1} MiB at the start, {:.1} \
             MiB at the end.",
            self.rss_start as f64 / 1048576.0,
            self.rss_end as f64 / 1048576.0
        );
        let _ = writeln!(m, "\n### Targets (issue 13)\n");
        let _ = writeln!(m, "| target | measured | met |");
        let _ = writeln!(m, "|---|---|---|");
        for t in &self.targets {
            let _ = writeln!(
                m,
                "| {} | {} | {} |",
                t.name,
                t.measured,
                if t.met { "yes" } else { "**no**" }
            );
        }
        if let Some(PeerStatus::NotMeasured(why)) = &self.peer {
            let _ = writeln!(
                m,
                "| introspection ≥ {PEER_TARGET}× node-oidc-provider's introspection | not \
                 measured: {why} | — |"
            );
        }
    }

    /// The backend comparison: the ratio table, the detail rows, bytes per session and the
    /// store traffic per request.
    fn backends_markdown(&self, m: &mut String) {
        let ratio = |r: Option<&Row>| {
            r.and_then(Row::ratio)
                .map_or("—".to_owned(), |x| format!("{x:.2}×"))
        };
        let rps = |r: Option<&Row>| r.map_or("—".to_owned(), |r| format!("{:.0}", r.rps));
        let per_sec =
            |b: Option<&BaselineRow>| b.map_or("—".to_owned(), |b| format!("{:.0}", b.per_sec));
        let _ = writeln!(m, "\n### Backends\n");
        let _ = writeln!(
            m,
            "| backend | conc. | whoami/s | refresh/s | login/s | raw write/s | raw read/s | Argon2id/s | refresh ÷ raw write | whoami ÷ raw read | login ÷ Argon2id | bytes/session |"
        );
        let _ = writeln!(
            m,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for b in &self.backends {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {:.0} |",
                b.backend.name(),
                b.concurrency,
                rps(b.row("whoami")),
                rps(b.row("refresh")),
                rps(b.row("login")),
                per_sec(b.baseline("raw write")),
                per_sec(b.baseline("raw read")),
                b.baseline("Argon2id").map_or(0.0, |x| x.per_sec),
                ratio(b.row("refresh")),
                ratio(b.row("whoami")),
                ratio(b.row("login")),
                b.bytes.per_session
            );
        }
        for b in self.backends.iter().filter(|b| b.backend.is_redis()) {
            if let (Some(r), Some(pg)) = (b.row("refresh"), b.baseline("identity raw write")) {
                let _ = writeln!(
                    m,
                    "\n{}: refresh ÷ PostgreSQL raw write (identity store, same run, same tasks) = \
                     {:.2}× ({:.0}/s vs {:.0}/s).",
                    b.backend.name(),
                    r.rps / pg.per_sec.max(1e-9),
                    r.rps,
                    pg.per_sec
                );
            }
        }
        let _ = writeln!(m, "\n#### Backends: detail\n");
        let _ = writeln!(
            m,
            "| backend | scenario | conc. | req/s | p50 µs | p99 µs | errors | compared with | ratio |"
        );
        let _ = writeln!(m, "|---|---|---:|---:|---:|---:|---:|---|---:|");
        for b in &self.backends {
            for r in &b.rows {
                let base = r
                    .baseline
                    .as_ref()
                    .map_or("—", |(n, _)| n.split(':').next().unwrap_or(n));
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {:.1} | {} | {} | {} | {base} | {} |",
                    b.backend.name(),
                    r.scenario,
                    r.concurrency,
                    r.rps,
                    r.p50_us,
                    r.p99_us,
                    r.errors,
                    ratio(Some(r))
                );
            }
        }
        let _ = writeln!(
            m,
            "\n#### Backends: raw baselines (same run, same tasks, same duration)\n"
        );
        let _ = writeln!(
            m,
            "| backend | operation | tasks | ops | ops/s | p50 µs | p99 µs |"
        );
        let _ = writeln!(m, "|---|---|---:|---:|---:|---:|---:|");
        for b in &self.backends {
            for x in &b.baselines {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {:.1} | {} | {} |",
                    b.backend.name(),
                    x.name,
                    x.threads,
                    x.ops,
                    x.per_sec,
                    x.p50_us,
                    x.p99_us
                );
            }
        }
        let _ = writeln!(m, "\n#### Backends: bytes per session\n");
        let _ = writeln!(
            m,
            "| backend | sessions seeded | bytes/session | measured as | cross-check |"
        );
        let _ = writeln!(m, "|---|---:|---:|---|---|");
        for b in &self.backends {
            let _ = writeln!(
                m,
                "| {} | {} | {:.0} | {} | {} |",
                b.backend.name(),
                b.bytes.sessions,
                b.bytes.per_session,
                b.bytes.what,
                b.bytes
                    .cross_check
                    .as_ref()
                    .map_or("—".to_owned(), |(w, v)| format!("{v:.0} ({w})"))
            );
        }
        if self.backends.iter().any(|b| !b.trips.is_empty()) {
            let _ = writeln!(
                m,
                "\n#### Backends: store traffic per request (counting proxy, separate pass)\n"
            );
            let _ = writeln!(
                m,
                "| backend | scenario | conc. | requests | PostgreSQL round trips / request | of which | Redis commands / request | Redis commands |"
            );
            let _ = writeln!(m, "|---|---|---:|---:|---:|---|---:|---|");
            for b in &self.backends {
                for t in &b.trips {
                    let list = |v: &[(String, f64)]| {
                        if v.is_empty() {
                            "—".to_owned()
                        } else {
                            v.iter()
                                .map(|(k, v)| format!("{k} {v:.2}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    };
                    let _ = writeln!(
                        m,
                        "| {} | {} | {} | {} | {} | {} | {} | {} |",
                        b.backend.name(),
                        t.scenario,
                        t.concurrency,
                        t.requests,
                        t.pg.map_or("—".to_owned(), |x| format!("{x:.2}")),
                        list(&t.pg_by_kind),
                        t.redis.map_or("—".to_owned(), |x| format!("{x:.2}")),
                        list(&t.redis_by_command)
                    );
                }
            }
            let _ = writeln!(
                m,
                "\nIdle traffic of one node (change-log followers), subtracted above; the \
                 followers' Redis `GET` / `ZRANGEBYSCORE` sweeps are left out of the per-request \
                 counts:\n"
            );
            for b in &self.backends {
                let mut parts = Vec::new();
                if let Some(x) = b.idle_pg_per_sec {
                    parts.push(format!("{x:.1} PostgreSQL round trips/s"));
                }
                if let Some(x) = b.idle_redis_per_sec {
                    parts.push(format!(
                        "{x:.0} Redis commands/s{}",
                        if b.backend == Backend::RedisCluster {
                            " (INFO commandstats of the run's own Cluster)"
                        } else {
                            ""
                        }
                    ));
                }
                if !parts.is_empty() {
                    let _ = writeln!(m, "- {}: {}", b.backend.name(), parts.join(", "));
                }
            }
        }
        let notes: Vec<&String> = self.backends.iter().flat_map(|b| &b.notes).collect();
        let mut seen = std::collections::BTreeSet::new();
        let _ = writeln!(m);
        for n in notes {
            if seen.insert(n) {
                let _ = writeln!(m, "- {n}");
            }
        }
    }
}
