//! `sessiond-bench`: see BENCHMARKS.md at the repository's root.

use anyhow::Result;
use clap::Parser;
use sessiond_bench::{Backend, Options, plot, run};
use std::path::PathBuf;
use std::time::Duration;

/// Load-tests sessiond in-process beside a bare axum ceiling and the raw baselines, and
/// prints a Markdown report.
#[derive(Parser)]
#[command(name = "sessiond-bench", version)]
struct Args {
    /// A ~30-second smoke run (short runs, 20k sessions for the scale check).
    #[arg(long)]
    quick: bool,
    /// Seconds per scenario and concurrency (default 5, or 0.7 with --quick).
    #[arg(long)]
    duration: Option<f64>,
    /// Concurrencies, comma-separated (default 1,16,64).
    #[arg(long, value_delimiter = ',')]
    concurrency: Option<Vec<usize>>,
    /// Sessions for the large scale measurement (default 1000000, or 20000 with --quick).
    #[arg(long)]
    scale_sessions: Option<usize>,
    /// Seconds seeding the large set may take before it stops (default 300).
    #[arg(long)]
    seed_budget: Option<u64>,
    /// Skip the scale check.
    #[arg(long)]
    no_scale: bool,
    /// Worker threads of each server's runtime (default: the number of cores).
    #[arg(long)]
    server_threads: Option<usize>,
    /// Worker threads of the load generator's runtime (default: the number of cores).
    #[arg(long)]
    client_threads: Option<usize>,
    /// Where to put the temporary data dirs (default: the system temp dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Run only these scenarios, comma-separated (whoami, introspect, login, refresh, logout,
    /// mix, starvation, scale, login-memory).
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Store backends, comma-separated: sqlite, postgres, redis, redis-cluster (default:
    /// sqlite). sqlite runs the suite above; any other adds the "Backends" comparison of every
    /// listed backend: whoami, refresh and login beside the store's raw write and read and
    /// Argon2id, bytes per session, and store round trips per request.
    #[arg(long, value_delimiter = ',')]
    backends: Option<Vec<String>>,
    /// Concurrency of the backend comparison (default 16).
    #[arg(long)]
    backend_concurrency: Option<usize>,
    /// Sessions seeded to measure bytes per session (default 10000).
    #[arg(long)]
    bytes_sessions: Option<usize>,
    /// Requests per scenario in the round-trip counting pass; 0 skips it (default 200).
    #[arg(long)]
    trip_requests: Option<usize>,
    /// PostgreSQL for the postgres and redis backends (a schema of the run's own is created
    /// and dropped).
    #[arg(
        long,
        env = "SESSIOND_TEST_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres_url: String,
    /// Standalone Redis for the redis backend (keys under a prefix of the run's own, deleted at
    /// the end). redis-cluster starts a throwaway loopback Cluster (redis-server on the PATH).
    #[arg(
        long,
        env = "SESSIOND_TEST_REDIS",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Concurrent failed logins of the login-memory measurement: RSS before, after the burst
    /// and after the Argon2 pool's idle release (default 120, or 0 with --quick; 0 skips it).
    #[arg(long)]
    login_memory_burst: Option<usize>,
    /// Fresh sessions for each cold whoami / introspection run (default 20000, 2000 with
    /// --quick); a cold run ends early when they are gone.
    #[arg(long)]
    cold_pool: Option<usize>,
    /// Skip the leak check (two more identical mix runs).
    #[arg(long)]
    no_leak_check: bool,
    /// Skip the optional peers: node-oidc-provider's introspection, otherwise run right after
    /// sessiond's at each concurrency where `node` is on the PATH (its packages are installed
    /// with `npm ci` in peers/oidc-provider when missing; without them the report says why it
    /// was not measured).
    #[arg(long)]
    no_peers: bool,
    /// The scale check's session and verified-token cache capacity (default: 2.5× the spread
    /// tokens, at least 100000 — sessiond's own default — each).
    #[arg(long)]
    cache_size: Option<usize>,
    /// Also write the Markdown report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw throughput vs concurrency here (PNG).
    #[arg(long)]
    plot: Option<PathBuf>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let mut o = if a.quick {
        Options::quick()
    } else {
        Options::full()
    };
    if let Some(d) = a.duration {
        o.duration = Duration::from_secs_f64(d);
    }
    if let Some(c) = a.concurrency {
        o.concurrencies = c;
    }
    if let Some(n) = a.scale_sessions {
        o.scale_large = n;
    }
    if let Some(s) = a.seed_budget {
        o.seed_budget = Duration::from_secs(s);
    }
    if let Some(t) = a.server_threads {
        o.server_threads = t;
    }
    if let Some(t) = a.client_threads {
        o.client_threads = t;
    }
    if let Some(d) = a.data_dir {
        o.data_dir = d;
    }
    o.skip_scale = a.no_scale;
    if let Some(n) = a.cold_pool {
        o.cold_pool = n;
    }
    o.leak_check = !a.no_leak_check;
    o.peers = o.peers && !a.no_peers;
    o.cache_size = a.cache_size.or(o.cache_size);
    o.only = a.only;
    if let Some(b) = a.backends {
        o.backends = b
            .iter()
            .map(|s| Backend::parse(s.trim()))
            .collect::<Result<_>>()?;
    }
    if let Some(c) = a.backend_concurrency {
        o.backend_concurrency = c;
    }
    if let Some(n) = a.bytes_sessions {
        o.bytes_sessions = n;
    }
    if let Some(n) = a.trip_requests {
        o.trip_requests = n;
    }
    if let Some(n) = a.login_memory_burst {
        o.login_memory_burst = n;
    }
    o.postgres_url = a.postgres_url;
    o.redis_url = a.redis_url;
    let report = run(&o)?;
    let md = report.markdown();
    println!("{md}");
    if let Some(p) = a.out {
        std::fs::write(&p, &md)?;
    }
    if let Some(p) = a.plot {
        plot::draw(&report, &p)?;
        eprintln!("plot written to {}", p.display());
    }
    Ok(())
}
