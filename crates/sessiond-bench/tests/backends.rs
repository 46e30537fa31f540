//! `--backends` end to end with tiny counts, against the PostgreSQL and Redis of the test
//! environment (`SESSIOND_TEST_POSTGRES`, default postgres://postgres@127.0.0.1:5432/test;
//! `SESSIOND_TEST_REDIS`, default redis://127.0.0.1:6379) and a throwaway 3-master loopback
//! Redis Cluster: every scenario answers on every backend, every raw baseline runs, bytes per
//! session and the round-trip counts come out, and the report renders. Without PostgreSQL or
//! Redis this fails; it never skips. No timing is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sessiond_bench::{Backend, Options, run};

#[test]
fn every_backend_runs_beside_its_raw_baselines() {
    let o = Options {
        backends: vec![Backend::Postgres, Backend::Redis, Backend::RedisCluster],
        max_requests: 200,
        ..Options::tiny()
    };
    let report = run(&o).unwrap();
    assert!(report.rows.is_empty(), "the SQLite suite was not asked for");
    assert_eq!(report.backends.len(), 3);
    for b in &report.backends {
        let name = b.backend.name();
        for scenario in ["whoami", "refresh", "login"] {
            let r = b
                .row(scenario)
                .unwrap_or_else(|| panic!("{name}: no {scenario}"));
            assert!(r.ok > 0 && r.rps > 0.0, "{name} {scenario}: {r:?}");
            assert_eq!(r.errors, 0, "{name} {scenario}: {:?}", r.first_error);
            assert!(r.ratio().is_some_and(|x| x > 0.0), "{name} {scenario}");
        }
        for base in ["raw write", "raw read", "Argon2id"] {
            assert!(b.baseline(base).is_some(), "{name}: no {base} baseline");
        }
        if b.backend != Backend::Postgres {
            assert!(b.baseline("identity raw write").is_some(), "{name}");
        }
        assert!(
            b.baselines.iter().all(|x| x.ops > 0 && x.per_sec > 0.0),
            "{name}: {:?}",
            b.baselines
        );
        assert_eq!(b.bytes.sessions, o.bytes_sessions, "{name}");
        assert!(b.bytes.per_session > 0.0, "{name}: {:?}", b.bytes);
        assert_eq!(b.trips.len(), 3, "{name}");
        // A login writes a session and an audit event: PostgreSQL is on every backend's path.
        let login = b.trips.iter().find(|t| t.scenario == "login").unwrap();
        assert!(login.pg.is_some_and(|x| x > 0.0), "{name}: {login:?}");
        if b.backend == Backend::Redis {
            assert!(login.redis.is_some_and(|x| x > 0.0), "{name}: {login:?}");
        }
        assert!(b.idle_pg_per_sec.is_some(), "{name}");
        if b.backend.is_redis() {
            assert!(b.idle_redis_per_sec.is_some_and(|x| x > 0.0), "{name}");
        }
    }
    let md = report.markdown();
    // Every row of every table has as many cells as its header.
    let mut cells = None;
    for line in md.lines() {
        if line.starts_with('|') {
            let n = line.matches('|').count();
            assert_eq!(*cells.get_or_insert(n), n, "ragged table row: {line}\n{md}");
        } else {
            cells = None;
        }
    }
    for needle in [
        "### Backends",
        "| postgres | 4 |",
        "| redis | 4 |",
        "| redis-cluster | 4 |",
        "refresh ÷ raw write",
        "bytes per session",
        "store traffic per request",
        "| postgres | login | 4 |",
        "evalsha",
    ] {
        assert!(md.contains(needle), "{needle} missing from\n{md}");
    }
}
