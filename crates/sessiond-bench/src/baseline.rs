//! The raw operations each scenario cannot avoid, measured in the same run.

use crate::load::RunResult;
use anyhow::Result;
use hdrhistogram::Histogram;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Rate {
    pub ops: u64,
    pub elapsed: Duration,
    pub hist: Histogram<u64>,
}

impl Rate {
    pub fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Argon2id hashes per second with sessiond's parameters (`password::hash_password`:
/// m = 19456 KiB, t = 2, p = 1) on `threads` threads at once — what login can reach when
/// `hash_concurrency` = `threads`. A login verifies rather than hashes: the same work.
pub fn argon2(threads: usize, duration: Duration, max_ops: u64) -> Result<Rate> {
    let start = Instant::now();
    let per_thread = max_ops.div_ceil(threads.max(1) as u64).max(1);
    let results: Vec<Result<(u64, Histogram<u64>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(move || {
                    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
                    let mut n = 0;
                    while n < per_thread && start.elapsed() < duration {
                        let t0 = Instant::now();
                        sessiond_core::password::hash_password("correct horse battery")?;
                        hist.saturating_record(
                            u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX),
                        );
                        n += 1;
                    }
                    anyhow::Ok((n, hist))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("argon2 thread panicked")))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut ops = 0;
    for r in results {
        let (n, h) = r?;
        ops += n;
        hist.add(&h)?;
    }
    Ok(Rate { ops, elapsed, hist })
}

/// Runs `raw` and `run` in `slices` alternating turns each (raw, run, run, raw, raw, run, …), so
/// that the machine speeding up or slowing down during the measurement (a shared VM does)
/// weighs on both alike, and returns both merged: the baseline and the run it is compared
/// with are taken over the same stretch of time.
pub fn interleaved(
    slices: u32,
    mut raw: impl FnMut() -> Result<Rate>,
    mut run: impl FnMut() -> Result<RunResult>,
) -> Result<(Rate, RunResult)> {
    let (mut raws, mut runs) = (Vec::new(), Vec::new());
    for i in 0..slices.max(1) {
        if i % 2 == 0 {
            raws.push(raw()?);
            runs.push(run()?);
        } else {
            runs.push(run()?);
            raws.push(raw()?);
        }
    }
    Ok((merged(raws)?, merged(runs)?))
}

/// A measurement taken in slices, which add up.
pub trait Slices: Sized {
    /// Adds another slice of the same measurement.
    fn absorb(&mut self, other: &Self) -> Result<()>;
}

/// The slices of one measurement, added up.
fn merged<T: Slices>(slices: Vec<T>) -> Result<T> {
    let mut slices = slices.into_iter();
    let mut all = slices
        .next()
        .ok_or_else(|| anyhow::anyhow!("no slice measured"))?;
    for s in slices {
        all.absorb(&s)?;
    }
    Ok(all)
}

impl Slices for RunResult {
    fn absorb(&mut self, other: &RunResult) -> Result<()> {
        self.ok += other.ok;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.hist.add(&other.hist)?;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        Ok(())
    }
}

impl Slices for Rate {
    fn absorb(&mut self, other: &Rate) -> Result<()> {
        self.ops += other.ops;
        self.elapsed += other.elapsed;
        self.hist.add(&other.hist)?;
        Ok(())
    }
}

/// A bare SQLite single-row INSERT of a refresh-token-sized row, one transaction (one fsync)
/// each, WAL with `synchronous = FULL` — the durability sessiond's store promises — at
/// concurrency 1, in a fresh file under `dir` (the file system sessiond's store is on).
pub fn sqlite_insert(dir: &Path, duration: Duration, max_ops: u64) -> Result<Rate> {
    let tmp = tempfile::Builder::new()
        .prefix("sqlite-baseline-")
        .tempdir_in(dir)?;
    let c = rusqlite::Connection::open(tmp.path().join("baseline.db"))?;
    let mode: String = c.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "WAL unavailable: {mode}");
    c.pragma_update(None, "synchronous", "FULL")?;
    c.execute_batch(
        "CREATE TABLE t (hash BLOB PRIMARY KEY, tenant_id TEXT NOT NULL, \
         session_id TEXT NOT NULL, expires_at INTEGER NOT NULL) STRICT",
    )?;
    let mut stmt = c.prepare(
        "INSERT INTO t (hash, tenant_id, session_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let start = Instant::now();
    let mut ops: u64 = 0;
    while ops < max_ops && start.elapsed() < duration {
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&ops.to_le_bytes());
        hash[8..16].copy_from_slice(&(start.elapsed().as_nanos() as u64).to_le_bytes());
        let t0 = Instant::now();
        stmt.execute(rusqlite::params![
            &hash[..],
            "bench",
            "AAAAAAAAAAAAAAAAAAAAAA",
            1_800_000_000i64
        ])?;
        hist.saturating_record(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
        ops += 1;
    }
    Ok(Rate {
        ops,
        elapsed: start.elapsed(),
        hist,
    })
}

/// The same bare INSERT at `concurrency`, with the batching sessiond's SQLite writer does
/// (group commit): `concurrency` closed-loop clients hand their row to one writer thread,
/// which takes whatever is queued (up to 1024 rows), inserts it in one transaction, commits
/// (one fsync) and then answers each client. What refresh and logout at the same concurrency
/// are compared with.
pub fn sqlite_group_insert(
    dir: &Path,
    concurrency: usize,
    duration: Duration,
    max_ops: u64,
) -> Result<Rate> {
    use std::sync::mpsc;
    type Job = (u64, mpsc::SyncSender<()>);
    let tmp = tempfile::Builder::new()
        .prefix("sqlite-group-baseline-")
        .tempdir_in(dir)?;
    let mut c = rusqlite::Connection::open(tmp.path().join("baseline.db"))?;
    let mode: String = c.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "WAL unavailable: {mode}");
    c.pragma_update(None, "synchronous", "FULL")?;
    c.execute_batch(
        "CREATE TABLE t (hash BLOB PRIMARY KEY, tenant_id TEXT NOT NULL, \
         session_id TEXT NOT NULL, expires_at INTEGER NOT NULL) STRICT",
    )?;
    let (tx, rx) = mpsc::channel::<Job>();
    let writer = std::thread::spawn(move || -> Result<()> {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < 1024 {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let t = c.transaction()?;
            {
                let mut stmt = t.prepare_cached(
                    "INSERT INTO t (hash, tenant_id, session_id, expires_at) \
                     VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (n, _) in &batch {
                    let mut hash = [0u8; 32];
                    hash[..8].copy_from_slice(&n.to_le_bytes());
                    stmt.execute(rusqlite::params![
                        &hash[..],
                        "bench",
                        "AAAAAAAAAAAAAAAAAAAAAA",
                        1_800_000_000i64
                    ])?;
                }
            }
            t.commit()?;
            for (_, done) in batch {
                let _ = done.send(());
            }
        }
        Ok(())
    });
    let start = Instant::now();
    let next = std::sync::atomic::AtomicU64::new(0);
    let results: Vec<Result<(u64, Histogram<u64>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                let tx = tx.clone();
                let next = &next;
                s.spawn(move || {
                    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
                    let mut n = 0;
                    while start.elapsed() < duration {
                        let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if id >= max_ops {
                            break;
                        }
                        let (done_tx, done_rx) = mpsc::sync_channel(1);
                        let t0 = Instant::now();
                        tx.send((id, done_tx))
                            .map_err(|_| anyhow::anyhow!("the writer stopped"))?;
                        done_rx.recv()?;
                        hist.saturating_record(
                            u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX),
                        );
                        n += 1;
                    }
                    anyhow::Ok((n, hist))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("client thread panicked")))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    drop(tx);
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut ops = 0;
    for r in results {
        let (n, h) = r?;
        ops += n;
        hist.add(&h)?;
    }
    Ok(Rate { ops, elapsed, hist })
}

/// xorshift64*, for picking rows.
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: usize) -> Self {
        Self(0x9e37_79b9_7f4a_7c15 ^ ((seed as u64 + 1) << 17))
    }
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `tasks` tokio tasks, each running `op(task, n)` (n: the task's operation count) back to
/// back until `duration` has passed or `max_ops` operations are done; every operation's
/// latency goes into one histogram. The raw-store baselines' load generator: closed loop, the
/// same shape as the HTTP load generator's virtual users.
pub async fn closed_loop<F, Fut>(
    tasks: usize,
    duration: Duration,
    max_ops: u64,
    op: F,
) -> Result<Rate>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let budget = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(max_ops));
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks.max(1) {
        let op = op.clone();
        let budget = budget.clone();
        set.spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut n = 0u64;
            while Instant::now() < deadline
                && budget
                    .fetch_update(
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                        |b| b.checked_sub(1),
                    )
                    .is_ok()
            {
                let t0 = Instant::now();
                op(t, n).await?;
                hist.saturating_record(
                    u64::try_from(t0.elapsed().as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1),
                );
                n += 1;
            }
            anyhow::Ok((n, hist, Instant::now()))
        });
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut ops = 0;
    let mut end = start;
    while let Some(r) = set.join_next().await {
        let (n, h, finished) = r??;
        ops += n;
        hist.add(&h)?;
        end = end.max(finished);
    }
    Ok(Rate {
        ops,
        elapsed: end - start,
        hist,
    })
}

/// The raw PostgreSQL operations, through a plain `sqlx` pool of `pool` connections (the size
/// of the store's pool) on `table` (`bench_raw` in the run's schema).
pub mod postgres_raw {
    use super::{Rate, Xorshift, closed_loop};
    use anyhow::Result;
    use sqlx::PgPool;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// A row of about a refresh token's size.
    const VALUE: [u8; 96] = [0x5a; 96];

    pub async fn create_table(pool: &PgPool, table: &str) -> Result<()> {
        sqlx::raw_sql(&format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, v BYTEA NOT NULL)"
        ))
        .execute(pool)
        .await?;
        Ok(())
    }

    /// `BEGIN; INSERT INTO bench_raw (id, v) VALUES ($1, $2); COMMIT` on `tasks` tasks; ids
    /// count up from 1. Returns the rate and how many rows the table holds.
    pub async fn write(
        pool: PgPool,
        table: &str,
        tasks: usize,
        duration: Duration,
        max_ops: u64,
    ) -> Result<(Rate, u64)> {
        let next = Arc::new(AtomicU64::new(1));
        let sql: Arc<str> = format!("INSERT INTO {table} (id, v) VALUES ($1, $2)").into();
        let n = next.clone();
        let rate = closed_loop(tasks, duration, max_ops, move |_, _| {
            let (pool, sql, next) = (pool.clone(), sql.clone(), n.clone());
            async move {
                let id = next.fetch_add(1, Ordering::Relaxed);
                let mut tx = pool.begin().await?;
                sqlx::query(&sql)
                    .bind(i64::try_from(id)?)
                    .bind(&VALUE[..])
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                anyhow::Ok(())
            }
        })
        .await?;
        Ok((rate, next.load(Ordering::Relaxed) - 1))
    }

    /// `SELECT v FROM bench_raw WHERE id = $1` on `tasks` tasks, over rows `1..=rows`.
    pub async fn read(
        pool: PgPool,
        table: &str,
        rows: u64,
        tasks: usize,
        duration: Duration,
        max_ops: u64,
    ) -> Result<Rate> {
        anyhow::ensure!(rows > 0, "nothing to read: the write baseline wrote no row");
        let sql: Arc<str> = format!("SELECT v FROM {table} WHERE id = $1").into();
        closed_loop(tasks, duration, max_ops, move |t, n| {
            let (pool, sql) = (pool.clone(), sql.clone());
            async move {
                let mut rng = Xorshift::new(t.wrapping_mul(1_000_003).wrapping_add(n as usize));
                let id = rng.next() % rows + 1;
                let v: Vec<u8> = sqlx::query_scalar(&sql)
                    .bind(i64::try_from(id)?)
                    .fetch_one(&pool)
                    .await?;
                anyhow::ensure!(v.len() == VALUE.len(), "short row");
                anyhow::Ok(())
            }
        })
        .await
    }
}

/// The raw Redis operations, on one shared multiplexed connection of the store's kind
/// (`ConnectionManager` standalone, the Cluster async connection on a Cluster), keys under
/// the run's prefix.
pub mod redis_raw {
    use super::{Rate, Xorshift, closed_loop};
    use anyhow::Result;
    use redis::aio::ConnectionLike;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// A value of about a refresh token record's size.
    const VALUE: [u8; 96] = [0x5a; 96];

    fn key(prefix: &str, id: u64) -> String {
        format!("{prefix}raw:{id}")
    }

    /// A bare `SET k v` on `tasks` tasks, keys numbered from 0; returns the rate and how many
    /// keys were written.
    pub async fn set<C>(
        conn: C,
        prefix: &str,
        tasks: usize,
        duration: Duration,
        max_ops: u64,
    ) -> Result<(Rate, u64)>
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        let prefix: Arc<str> = prefix.into();
        let next = Arc::new(AtomicU64::new(0));
        let n = next.clone();
        let rate = closed_loop(tasks, duration, max_ops, move |_, _| {
            let (mut conn, prefix, next) = (conn.clone(), prefix.clone(), n.clone());
            async move {
                let id = next.fetch_add(1, Ordering::Relaxed);
                redis::cmd("SET")
                    .arg(key(&prefix, id))
                    .arg(&VALUE[..])
                    .query_async::<()>(&mut conn)
                    .await?;
                anyhow::Ok(())
            }
        })
        .await?;
        Ok((rate, next.load(Ordering::Relaxed)))
    }

    /// What a refresh's script does to its keys, bare: read the presented token, write the
    /// successor (with its expiry), mark the presented one rotated, touch the session and
    /// re-score it in the timeouts index — 4 keys on one slot (a hash tag), 6 commands.
    const ROTATE: &str = r"
redis.call('HMGET', KEYS[1], 't', 's', 'x', 'ra')
redis.call('HSET', KEYS[2], 't', 'bench', 's', ARGV[1], 'x', ARGV[2])
redis.call('EXPIRE', KEYS[2], 86400)
redis.call('HSET', KEYS[1], 'ra', ARGV[2], 'rs', ARGV[1])
redis.call('HSET', KEYS[3], 'ls', ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
return 1
";

    /// A bare `EVALSHA` of [`ROTATE`] on `tasks` tasks, each call on fresh keys of one of 256
    /// slots (hash tags as the store's routes).
    pub async fn rotate<C>(
        conn: C,
        prefix: &str,
        tasks: usize,
        duration: Duration,
        max_ops: u64,
    ) -> Result<Rate>
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        let prefix: Arc<str> = prefix.into();
        let script = Arc::new(redis::Script::new(ROTATE));
        let next = Arc::new(AtomicU64::new(0));
        closed_loop(tasks, duration, max_ops, move |_, _| {
            let (mut conn, prefix, next, script) =
                (conn.clone(), prefix.clone(), next.clone(), script.clone());
            async move {
                let id = next.fetch_add(1, Ordering::Relaxed);
                let tag = format!("{prefix}{{r{}}}", id % 256);
                script
                    .key(format!("{tag}:rt:{id}"))
                    .key(format!("{tag}:rt:{id}n"))
                    .key(format!("{tag}:s:{}", id % 4096))
                    .key(format!("{tag}:timeouts"))
                    .arg(id)
                    .arg(1_800_000_000u64 + id)
                    .invoke_async::<i64>(&mut conn)
                    .await?;
                anyhow::Ok(())
            }
        })
        .await
    }

    /// A bare `GET k` on `tasks` tasks over the `written` keys [`set`] wrote.
    pub async fn get<C>(
        conn: C,
        prefix: &str,
        written: u64,
        tasks: usize,
        duration: Duration,
        max_ops: u64,
    ) -> Result<Rate>
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        anyhow::ensure!(written > 0, "nothing to read: SET wrote no key");
        let prefix: Arc<str> = prefix.into();
        closed_loop(tasks, duration, max_ops, move |t, n| {
            let (mut conn, prefix) = (conn.clone(), prefix.clone());
            async move {
                let mut rng = Xorshift::new(t.wrapping_mul(1_000_003).wrapping_add(n as usize));
                let id = rng.next() % written;
                let v: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(key(&prefix, id))
                    .query_async(&mut conn)
                    .await?;
                anyhow::ensure!(v.is_some_and(|v| v.len() == VALUE.len()), "missing key");
                anyhow::Ok(())
            }
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn hist(v: u64) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        h.record(v).unwrap();
        h
    }

    /// The turns alternate (raw, run, run, raw, raw, run) and the slices add up.
    #[test]
    fn slices_alternate_and_add_up() {
        let order = RefCell::new(String::new());
        let (raw, run) = interleaved(
            3,
            || {
                order.borrow_mut().push('r');
                Ok(Rate {
                    ops: 2,
                    elapsed: Duration::from_millis(10),
                    hist: hist(5),
                })
            },
            || {
                order.borrow_mut().push('R');
                Ok(RunResult {
                    ok: 3,
                    errors: 1,
                    elapsed: Duration::from_millis(20),
                    hist: hist(7),
                    first_error: None,
                })
            },
        )
        .unwrap();
        assert_eq!(order.into_inner(), "rRRrrR");
        assert_eq!(
            (raw.ops, raw.elapsed, raw.hist.len()),
            (6, Duration::from_millis(30), 3)
        );
        assert_eq!((run.ok, run.errors, run.hist.len()), (9, 3, 3));
        assert_eq!(run.elapsed, Duration::from_millis(60));
    }
}
