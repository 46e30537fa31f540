//! `--backends`: sessiond on each store backend beside that store's raw operations, measured
//! in the same run at the same concurrency for the same time; the bytes each store spends on
//! one session; and, in a separate pass through a counting proxy, the store round trips of
//! one request.
//!
//! Per backend: a fresh sessiond (`Sessiond::start_on`, wired as `sessiond serve` wires a
//! node), a fresh PostgreSQL schema `sessiond_t_<secs>_<pid>_bench_<backend>` and Redis key
//! prefix `sdbench:<secs>:<pid>:<backend>:`, both removed at the end (schema: `DROP SCHEMA …
//! CASCADE`; keys: `SCAN MATCH` + `UNLINK`); a Redis Cluster is a throwaway loopback one.

use crate::baseline::{self, Rate};
use crate::load::{self, Op, RunResult, Workload};
use crate::proxy::{self, Counts, Protocol, Proxy};
use crate::server::{self, Backend, Sessiond, StoreConfig};
use crate::{BaselineRow, Options, Row};
use anyhow::{Context, Result};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `store.postgres_pool`'s default in `sessiond serve`; the raw PostgreSQL baselines use a
/// pool of the same size.
pub const POSTGRES_POOL: u32 = 16;

/// The bytes one session (with its refresh token) takes in a store.
#[derive(Debug, Clone)]
pub struct Bytes {
    pub sessions: usize,
    pub per_session: f64,
    /// What was measured.
    pub what: String,
    /// A second measure of the same, when there is one: (what, bytes per session).
    pub cross_check: Option<(String, f64)>,
}

/// Store traffic of one request, from the counting pass.
#[derive(Debug, Clone)]
pub struct Trips {
    pub scenario: &'static str,
    pub concurrency: usize,
    pub requests: u64,
    /// PostgreSQL round trips (`Sync` + simple `Query` messages) per request.
    pub pg: Option<f64>,
    /// The PostgreSQL round trips by kind (`query`: simple protocol, e.g. BEGIN / COMMIT;
    /// `sync`: an extended-protocol statement), per request.
    pub pg_by_kind: Vec<(String, f64)>,
    /// Redis commands per request, the followers' sweeps excluded.
    pub redis: Option<f64>,
    /// The Redis commands by name, per request.
    pub redis_by_command: Vec<(String, f64)>,
}

#[derive(Debug, Clone)]
pub struct BackendResult {
    pub backend: Backend,
    pub concurrency: usize,
    /// whoami, refresh and login, each with its baseline (raw read, raw write, Argon2id).
    pub rows: Vec<Row>,
    pub baselines: Vec<BaselineRow>,
    pub bytes: Bytes,
    pub trips: Vec<Trips>,
    /// Idle traffic of one node (change-log followers), per second: PostgreSQL round trips
    /// and Redis commands.
    pub idle_pg_per_sec: Option<f64>,
    pub idle_redis_per_sec: Option<f64>,
    /// Server settings that bound what a write costs (fsync, persistence).
    pub notes: Vec<String>,
}

impl BackendResult {
    pub fn row(&self, scenario: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.scenario == scenario)
    }
    pub fn baseline(&self, prefix: &str) -> Option<&BaselineRow> {
        self.baselines.iter().find(|b| b.name.starts_with(prefix))
    }
}

macro_rules! say {
    ($o:expr, $($t:tt)*) => {
        if $o.verbose {
            eprintln!($($t)*);
        }
    };
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn tag(b: Backend) -> &'static str {
    match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "pg",
        Backend::Redis => "redis",
        Backend::RedisCluster => "rcluster",
    }
}

fn baseline_row(name: String, threads: usize, r: &Rate) -> BaselineRow {
    BaselineRow {
        name,
        threads,
        ops: r.ops,
        per_sec: r.per_sec(),
        p50_us: r.hist.value_at_quantile(0.5),
        p99_us: r.hist.value_at_quantile(0.99),
    }
}

fn row(scenario: &'static str, c: usize, r: &RunResult, base: Option<&BaselineRow>) -> Row {
    Row {
        scenario,
        concurrency: c,
        ok: r.ok,
        errors: r.errors,
        rps: r.rps(),
        p50_us: r.p50_us(),
        p99_us: r.p99_us(),
        baseline: base.map(|b| (b.name.clone(), b.per_sec)),
        first_error: r.first_error.clone(),
    }
}

/// The node URLs (`redis://h:p`) of a `redis-cluster://h:p,h:p` URL, or the URL itself.
pub fn redis_nodes(url: &str) -> Vec<String> {
    match url.strip_prefix("redis-cluster://") {
        Some(rest) => rest
            .split(['/', '?'])
            .next()
            .unwrap_or_default()
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("redis://{h}"))
            .collect(),
        None => vec![url.to_owned()],
    }
}

/// Runs every backend of `o.backends` (SQLite included, through the same path).
pub fn run_all(o: &Options, client: &tokio::runtime::Runtime) -> Result<Vec<BackendResult>> {
    let stamp = (unix_secs(), std::process::id());
    let mut out = Vec::new();
    for &b in &o.backends {
        say!(o, "backend {}", b.name());
        out.push(run_one(o, client, b, stamp)?);
    }
    Ok(out)
}

fn run_one(
    o: &Options,
    client: &tokio::runtime::Runtime,
    backend: Backend,
    (secs, pid): (u64, u32),
) -> Result<BackendResult> {
    let schema = format!("sessiond_t_{secs}_{pid}_bench_{}", tag(backend));
    let prefix = format!("sdbench:{secs}:{pid}:{}:", tag(backend));
    let cluster = if backend == Backend::RedisCluster {
        // Blocking (redis-server processes, redis-cli); panics if they cannot start.
        Some(sessiond_store_redis::testing::RedisCluster::start(
            o.cluster_masters,
        ))
    } else {
        None
    };
    let cfg = StoreConfig {
        backend,
        postgres_url: o.postgres_url.clone(),
        postgres_schema: schema.clone(),
        postgres_pool: POSTGRES_POOL,
        redis_url: cluster
            .as_ref()
            .map_or_else(|| o.redis_url.clone(), |c| c.url()),
        redis_prefix: prefix.clone(),
    };
    let admin = if backend == Backend::Sqlite {
        None
    } else {
        Some(
            client
                .block_on(
                    PgPoolOptions::new()
                        .max_connections(2)
                        .acquire_timeout(Duration::from_secs(5))
                        .connect(&o.postgres_url),
                )
                .with_context(|| format!("PostgreSQL must be reachable at {}", o.postgres_url))?,
        )
    };
    let result = measure(o, client, &cfg, admin.as_ref());
    // Clean up whatever happened.
    if let Some(admin) = &admin {
        for s in [schema.clone(), format!("{schema}_rt")] {
            if let Err(e) = client.block_on(
                sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{s}\" CASCADE")).execute(admin),
            ) {
                eprintln!("warning: cannot drop schema {s}: {e}");
            }
        }
        client.block_on(admin.close());
    }
    if backend == Backend::Redis {
        match client.block_on(delete_prefix(&cfg.redis_url, &prefix)) {
            Ok(n) => say!(o, "deleted {n} Redis keys under {prefix}"),
            Err(e) => eprintln!("warning: cannot delete the Redis keys under {prefix}: {e:#}"),
        }
    }
    drop(cluster);
    result
}

fn measure(
    o: &Options,
    client: &tokio::runtime::Runtime,
    cfg: &StoreConfig,
    admin: Option<&PgPool>,
) -> Result<BackendResult> {
    let backend = cfg.backend;
    let c = o.backend_concurrency;
    let base_ops = u64::try_from(o.max_requests).unwrap_or(u64::MAX);
    let shared = backend != Backend::Sqlite;
    let sd = Sessiond::start_on(
        o.server_threads,
        &o.data_dir,
        o.users,
        shared.then_some(cfg),
        None,
    )?;
    let hash_threads = sd.engine().config().hash_concurrency;
    let mut notes = Vec::new();
    if let Some(admin) = admin {
        notes.push(client.block_on(pg_settings(admin))?);
    }
    if backend.is_redis() {
        notes.push(client.block_on(redis_settings(&cfg.redis_url))?);
    }

    // Bytes per session: the store's growth over `bytes_sessions` sessions seeded straight
    // through `SessionStore::create_session`, each with a refresh token.
    let size = |sd: &Sessiond| -> Result<StoreSize> {
        match backend {
            Backend::Sqlite => {
                let (logical, _) = sd.store_size()?;
                Ok(StoreSize {
                    main: logical,
                    cross: None,
                })
            }
            Backend::Postgres => {
                let admin = admin.context("no PostgreSQL")?;
                client.block_on(pg_size(admin, &cfg.postgres_schema))
            }
            Backend::Redis | Backend::RedisCluster => {
                client.block_on(redis_size(&cfg.redis_url, &cfg.redis_prefix))
            }
        }
    };
    let before = size(&sd)?;
    let n = o.bytes_sessions.max(1);
    let keep_every = n.div_ceil(o.live_sessions.max(1)).max(1);
    let (made, live) = client.block_on(sd.seed(n, keep_every, 256, None))?;
    let after = size(&sd)?;
    let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / made.max(1) as f64;
    let bytes = Bytes {
        sessions: made,
        per_session: per(after.main, before.main),
        what: match backend {
            Backend::Sqlite => "SQLite page_count × page_size (WAL included)".into(),
            Backend::Postgres => {
                "pg_total_relation_size(sessions) + pg_total_relation_size(refresh_tokens) (heap, indexes, TOAST)".into()
            }
            Backend::Redis => "INFO memory used_memory".into(),
            Backend::RedisCluster => "INFO memory used_memory, summed over the masters".into(),
        },
        cross_check: after.cross.zip(before.cross).map(|(a, b)| {
            (
                match backend {
                    Backend::Postgres => "every table of the schema".to_owned(),
                    _ => "sum of MEMORY USAGE of the run's keys".to_owned(),
                },
                per(a, b),
            )
        }),
    };
    say!(
        o,
        "{}: {made} sessions, {:.0} bytes per session ({})",
        backend.name(),
        bytes.per_session,
        bytes.what
    );

    let workload = |spare: Vec<server::Seeded>| {
        Arc::new(Workload {
            addr: sd.addr,
            tenant: server::TENANT.into(),
            basic_auth: load::basic_auth(&sd.client_id, &sd.client_secret),
            users: sd.users.iter().map(|u| u.0.clone()).collect(),
            live: Arc::new(live.iter().map(|s| s.session_token.clone()).collect()),
            spare: Mutex::new(spare),
        })
    };
    let run_op = |w: Arc<Workload>, op: Op, d: Duration| -> Result<RunResult> {
        client.block_on(load::run(w, op, c, d, o.max_requests))
    };
    run_op(workload(Vec::new()), Op::Whoami, o.warmup)?;
    let whoami = run_op(workload(Vec::new()), Op::Whoami, o.duration)?;
    let (_, chains) = client.block_on(sd.seed(c, 1, 64, None))?;
    let refresh = run_op(workload(chains), Op::Refresh, o.duration)?;
    // Login against raw hashing in alternating slices, with the backend up for both (its
    // background work weighs on both alike).
    let (argon, login) = baseline::interleaved(
        crate::LOGIN_SLICES,
        || baseline::argon2(hash_threads, o.duration / crate::LOGIN_SLICES, base_ops),
        || {
            run_op(
                workload(Vec::new()),
                Op::Login,
                o.duration / crate::LOGIN_SLICES,
            )
        },
    )?;
    drop(sd);

    // The raw operations, with sessiond gone.
    let mut baselines = Vec::new();
    match backend {
        Backend::Sqlite => {
            let w = baseline::sqlite_insert(&o.data_dir, o.duration, base_ops)?;
            baselines.push(baseline_row(
                "raw write: SQLite INSERT, WAL + synchronous=FULL, 1 row/txn, 1 connection".into(),
                1,
                &w,
            ));
        }
        Backend::Postgres => {
            baselines.extend(client.block_on(pg_raw(o, cfg, "raw write", Some("raw read")))?);
        }
        Backend::Redis | Backend::RedisCluster => {
            baselines.extend(client.block_on(redis_raw(o, cfg))?);
            // Identity (audit events) is in PostgreSQL beside Redis.
            baselines.extend(client.block_on(pg_raw(o, cfg, "identity raw write", None))?);
        }
    }
    let argon = baseline_row(
        "Argon2id hash (m=19456,t=2,p=1), interleaved with login".into(),
        hash_threads,
        &argon,
    );
    baselines.push(argon);
    let find = |prefix: &str| baselines.iter().find(|b| b.name.starts_with(prefix));
    let rows = vec![
        row("whoami", c, &whoami, find("raw read")),
        row("refresh", c, &refresh, find("raw write")),
        row("login", c, &login, find("Argon2id")),
    ];
    for r in &rows {
        say!(
            o,
            "{:>14} {:>8} c={c:<3} {:>9.1}/s p99 {:>7}µs errors {} ratio {}{}",
            backend.name(),
            r.scenario,
            r.rps,
            r.p99_us,
            r.errors,
            r.ratio().map_or("—".into(), |x| format!("{x:.2}×")),
            r.first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
    }
    for b in &baselines {
        say!(o, "{:>14} {}: {:.1}/s", backend.name(), b.name, b.per_sec);
    }

    let mut result = BackendResult {
        backend,
        concurrency: c,
        rows,
        baselines,
        bytes,
        trips: Vec::new(),
        idle_pg_per_sec: None,
        idle_redis_per_sec: None,
        notes,
    };
    if shared && o.trip_requests > 0 {
        count_trips(o, client, cfg, &mut result)?;
    }
    Ok(result)
}

struct StoreSize {
    main: u64,
    cross: Option<u64>,
}

async fn pg_size(admin: &PgPool, schema: &str) -> Result<StoreSize> {
    let (main, all): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)) FILTER \
         (WHERE c.relname IN ('sessions', 'refresh_tokens')), 0)::BIGINT, \
         COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::BIGINT \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind = 'r'",
    )
    .bind(schema)
    .fetch_one(admin)
    .await?;
    Ok(StoreSize {
        main: u64::try_from(main)?,
        cross: Some(u64::try_from(all)?),
    })
}

async fn pg_settings(admin: &PgPool) -> Result<String> {
    let (version, fsync, sync_commit, wal_sync): (String, String, String, String) = sqlx::query_as(
        "SELECT current_setting('server_version'), current_setting('fsync'), \
             current_setting('synchronous_commit'), current_setting('wal_sync_method')",
    )
    .fetch_one(admin)
    .await?;
    Ok(format!(
        "PostgreSQL {version}: fsync={fsync}, synchronous_commit={sync_commit}, wal_sync_method={wal_sync}"
    ))
}

async fn node_conn(url: &str) -> Result<redis::aio::MultiplexedConnection> {
    let c = redis::Client::open(url)?;
    tokio::time::timeout(Duration::from_secs(5), c.get_multiplexed_async_connection())
        .await
        .with_context(|| format!("Redis at {url} did not answer"))?
        .with_context(|| format!("Redis must be reachable at {url}"))
}

async fn redis_settings(url: &str) -> Result<String> {
    let nodes = redis_nodes(url);
    let mut c = node_conn(&nodes[0]).await?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut c).await?;
    let version = info_field(&info, "redis_version").unwrap_or_default();
    let aof: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut c)
        .await?;
    let fsync: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendfsync")
        .query_async(&mut c)
        .await?;
    let save: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query_async(&mut c)
        .await?;
    let get = |v: &[String]| v.get(1).cloned().unwrap_or_default();
    Ok(format!(
        "Redis {version} ({} node{}): appendonly={}, appendfsync={}, save={:?}",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        get(&aof),
        get(&fsync),
        get(&save)
    ))
}

fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// Every key under `prefix` on one node.
async fn scan_prefix(
    c: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(c)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// `used_memory` summed over the nodes, and the `MEMORY USAGE` of the keys under `prefix`.
async fn redis_size(url: &str, prefix: &str) -> Result<StoreSize> {
    let (mut used, mut keys_bytes) = (0u64, 0u64);
    for node in redis_nodes(url) {
        let mut c = node_conn(&node).await?;
        let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
        used += info_field(&info, "used_memory")
            .and_then(|v| v.parse::<u64>().ok())
            .context("INFO memory has no used_memory")?;
        let keys = scan_prefix(&mut c, prefix).await?;
        for chunk in keys.chunks(500) {
            let mut p = redis::pipe();
            for k in chunk {
                p.cmd("MEMORY").arg("USAGE").arg(k).arg("SAMPLES").arg(0);
            }
            let sizes: Vec<Option<u64>> = p.query_async(&mut c).await?;
            keys_bytes += sizes.into_iter().flatten().sum::<u64>();
        }
    }
    Ok(StoreSize {
        main: used,
        cross: Some(keys_bytes),
    })
}

/// Commands the nodes executed (`INFO commandstats`, `INFO` itself left out), summed.
async fn commandstats_calls(url: &str) -> Result<u64> {
    let mut calls = 0;
    for node in redis_nodes(url) {
        let mut c = node_conn(&node).await?;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut c)
            .await?;
        for l in info.lines() {
            let Some((name, rest)) = l.strip_prefix("cmdstat_").and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            if name == "info" {
                continue;
            }
            calls += rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(calls)
}

/// Deletes every key under `prefix` (SCAN + UNLINK on each node); returns how many.
pub async fn delete_prefix(url: &str, prefix: &str) -> Result<usize> {
    let mut n = 0;
    for node in redis_nodes(url) {
        let mut c = node_conn(&node).await?;
        let keys = scan_prefix(&mut c, prefix).await?;
        for chunk in keys.chunks(500) {
            redis::cmd("UNLINK")
                .arg(chunk)
                .query_async::<()>(&mut c)
                .await?;
        }
        n += keys.len();
    }
    Ok(n)
}

/// `BEGIN; INSERT; COMMIT` (named `write`) and, if `read` names it, `SELECT` by key, through
/// a pool of the store's size on a `bench_raw` table in the run's schema.
async fn pg_raw(
    o: &Options,
    cfg: &StoreConfig,
    write: &str,
    read: Option<&str>,
) -> Result<Vec<BaselineRow>> {
    let c = o.backend_concurrency;
    let max = u64::try_from(o.max_requests).unwrap_or(u64::MAX);
    let pool = PgPoolOptions::new()
        .max_connections(POSTGRES_POOL)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&cfg.postgres_url)
        .await
        .with_context(|| format!("PostgreSQL must be reachable at {}", cfg.postgres_url))?;
    let table = format!("\"{}\".bench_raw", cfg.postgres_schema);
    baseline::postgres_raw::create_table(&pool, &table).await?;
    let (w, rows) = baseline::postgres_raw::write(pool.clone(), &table, c, o.duration, max).await?;
    let mut out = vec![baseline_row(
        format!("{write}: PostgreSQL BEGIN; INSERT (1 row); COMMIT, pool of {POSTGRES_POOL}"),
        c,
        &w,
    )];
    if let Some(read) = read {
        let r =
            baseline::postgres_raw::read(pool.clone(), &table, rows, c, o.duration, max).await?;
        out.push(baseline_row(
            format!("{read}: PostgreSQL SELECT by primary key, pool of {POSTGRES_POOL}"),
            c,
            &r,
        ));
    }
    pool.close().await;
    Ok(out)
}

async fn redis_raw(o: &Options, cfg: &StoreConfig) -> Result<Vec<BaselineRow>> {
    let c = o.backend_concurrency;
    let max = u64::try_from(o.max_requests).unwrap_or(u64::MAX);
    let prefix = &cfg.redis_prefix;
    let (w, r, e, kind) = if cfg.backend == Backend::RedisCluster {
        let conn = redis::cluster::ClusterClientBuilder::new(redis_nodes(&cfg.redis_url))
            .build()?
            .get_async_connection()
            .await?;
        let (w, n) = baseline::redis_raw::set(conn.clone(), prefix, c, o.duration, max).await?;
        let r = baseline::redis_raw::get(conn.clone(), prefix, n, c, o.duration, max).await?;
        let e = baseline::redis_raw::rotate(conn, prefix, c, o.duration, max).await?;
        (w, r, e, "one cluster async connection")
    } else {
        let conn = redis::aio::ConnectionManager::new(redis::Client::open(cfg.redis_url.as_str())?)
            .await?;
        let (w, n) = baseline::redis_raw::set(conn.clone(), prefix, c, o.duration, max).await?;
        let r = baseline::redis_raw::get(conn.clone(), prefix, n, c, o.duration, max).await?;
        let e = baseline::redis_raw::rotate(conn, prefix, c, o.duration, max).await?;
        (w, r, e, "one ConnectionManager")
    };
    // A refresh is compared with the bare script touching the same keys, not with one SET.
    Ok(vec![
        baseline_row(
            format!(
                "raw write: Redis EVALSHA touching a rotation's 4 keys (HMGET, 3 HSET, EXPIRE, \
                 ZADD), {kind}"
            ),
            c,
            &e,
        ),
        baseline_row(format!("raw SET: Redis SET, {kind}"), c, &w),
        baseline_row(format!("raw read: Redis GET, {kind}"), c, &r),
    ])
}

/// The followers' sweep commands (`read_log`: a `GET` of the partition head and a
/// `ZRANGEBYSCORE`, for each of 256 partitions, every `bound / 4`): left out of the
/// per-request counts, reported as idle traffic.
const FOLLOWER_COMMANDS: [&str; 2] = ["get", "zrangebyscore"];

fn total(c: &Counts, skip: &[&str]) -> u64 {
    c.iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(_, v)| v)
        .sum()
}

/// Counts per request by name: `during` less `idle` × `idle_scale`, over `ok` requests,
/// names in `skip` left out, largest first, below 0.01 dropped.
fn per_request(
    during: &Counts,
    idle: &Counts,
    idle_scale: f64,
    ok: u64,
    skip: &[&str],
) -> Vec<(String, f64)> {
    let ok = ok.max(1) as f64;
    let mut by: Vec<(String, f64)> = during
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| {
            let idle = idle.get(k).copied().unwrap_or(0) as f64 * idle_scale;
            (k.clone(), ((*v as f64 - idle) / ok).max(0.0))
        })
        .filter(|(_, v)| *v >= 0.01)
        .collect();
    by.sort_by(|a, b| b.1.total_cmp(&a.1));
    by
}

/// The counting pass: a second sessiond on the same backend whose store connections go
/// through counting proxies (PostgreSQL always; standalone Redis too — a Cluster client finds
/// the nodes' own addresses, so its Redis commands are not counted). A few requests of each
/// scenario; the idle traffic measured just before is subtracted.
fn count_trips(
    o: &Options,
    client: &tokio::runtime::Runtime,
    cfg: &StoreConfig,
    result: &mut BackendResult,
) -> Result<()> {
    let pg_proxy = client.block_on(Proxy::start(
        proxy::url_addr(&cfg.postgres_url, 5432)?,
        Protocol::Postgres,
    ))?;
    let redis_proxy = if cfg.backend == Backend::Redis {
        Some(client.block_on(Proxy::start(
            proxy::url_addr(&cfg.redis_url, 6379)?,
            Protocol::Redis,
        ))?)
    } else {
        None
    };
    let mut counted = cfg.clone();
    counted.postgres_url = proxy::url_via(&cfg.postgres_url, pg_proxy.addr)?;
    counted.postgres_schema = format!("{}_rt", cfg.postgres_schema);
    counted.redis_prefix = format!("{}rt:", cfg.redis_prefix);
    if let Some(p) = &redis_proxy {
        counted.redis_url = proxy::url_via(&cfg.redis_url, p.addr)?;
    }
    let sd = Sessiond::start_on(o.server_threads, &o.data_dir, o.users, Some(&counted), None)?;
    let c = 4.min(o.backend_concurrency).max(1);
    let n = o.trip_requests;
    let (_, live) = client.block_on(sd.seed(64, 1, 16, None))?;
    let workload = |spare: Vec<server::Seeded>| {
        Arc::new(Workload {
            addr: sd.addr,
            tenant: server::TENANT.into(),
            basic_auth: String::new(),
            users: sd.users.iter().map(|u| u.0.clone()).collect(),
            live: Arc::new(live.iter().map(|s| s.session_token.clone()).collect()),
            spare: Mutex::new(spare),
        })
    };
    let snapshot = || {
        (
            pg_proxy.counts(),
            redis_proxy.as_ref().map(Proxy::counts).unwrap_or_default(),
        )
    };
    // Every live token verified and its session cached; the followers settled.
    client.block_on(load::run(
        workload(Vec::new()),
        Op::Whoami,
        c,
        Duration::from_secs(10),
        live.len() * 2,
    ))?;
    std::thread::sleep(Duration::from_millis(1500));
    let idle_for = Duration::from_secs(2);
    let stats = |url: &str| client.block_on(commandstats_calls(url));
    let cluster_url = (cfg.backend == Backend::RedisCluster).then_some(cfg.redis_url.as_str());
    let cs0 = cluster_url.map(stats).transpose()?;
    let (pg0, rd0) = snapshot();
    std::thread::sleep(idle_for);
    let (pg1, rd1) = snapshot();
    let cs1 = cluster_url.map(stats).transpose()?;
    if let (Some(a), Some(b)) = (cs0, cs1) {
        // The Cluster is this run's own: its command statistics are this node's traffic.
        result.idle_redis_per_sec = Some(b.saturating_sub(a) as f64 / idle_for.as_secs_f64());
    }
    let idle_pg = proxy::delta(&pg0, &pg1);
    let idle_rd = proxy::delta(&rd0, &rd1);
    let idle_pg_rate = total(&idle_pg, &[]) as f64 / idle_for.as_secs_f64();
    result.idle_pg_per_sec = Some(idle_pg_rate);
    if redis_proxy.is_some() {
        result.idle_redis_per_sec = Some(total(&idle_rd, &[]) as f64 / idle_for.as_secs_f64());
    }
    for (scenario, op, requests) in [
        ("whoami", Op::Whoami, n),
        ("refresh", Op::Refresh, n),
        ("login", Op::Login, (n / 4).max(4)),
    ] {
        let spare = if op == Op::Refresh {
            client.block_on(sd.seed(c, 1, 16, None))?.1
        } else {
            Vec::new()
        };
        let (pg0, rd0) = snapshot();
        let t0 = Instant::now();
        let r = client.block_on(load::run(
            workload(spare),
            op,
            c,
            Duration::from_secs(30),
            requests,
        ))?;
        let elapsed = t0.elapsed().as_secs_f64();
        let (pg1, rd1) = snapshot();
        anyhow::ensure!(
            r.errors == 0,
            "{scenario} through the counting proxy failed: {:?}",
            r.first_error
        );
        let idle_scale = elapsed / idle_for.as_secs_f64();
        let pg_by_kind = per_request(&proxy::delta(&pg0, &pg1), &idle_pg, idle_scale, r.ok, &[]);
        let pg = pg_by_kind.iter().map(|(_, v)| v).sum::<f64>().max(0.0);
        let (redis, by_command) = if redis_proxy.is_some() {
            let by = per_request(
                &proxy::delta(&rd0, &rd1),
                &idle_rd,
                idle_scale,
                r.ok,
                &FOLLOWER_COMMANDS,
            );
            (Some(by.iter().map(|(_, v)| v).sum::<f64>().max(0.0)), by)
        } else {
            (None, Vec::new())
        };
        say!(
            o,
            "{} {scenario}: {:.2} PostgreSQL round trips/request {pg_by_kind:?}{}",
            cfg.backend.name(),
            pg,
            redis.map_or(String::new(), |r| format!(
                ", {r:.2} Redis commands/request {by_command:?}"
            ))
        );
        result.trips.push(Trips {
            scenario,
            concurrency: c,
            requests: r.ok,
            pg: Some(pg),
            pg_by_kind,
            redis,
            redis_by_command: by_command,
        });
    }
    drop(sd);
    Ok(())
}
