//! The raw operations each scenario cannot avoid, measured in the same run.

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
