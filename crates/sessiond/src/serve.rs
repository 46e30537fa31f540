//! `sessiond serve`: open the stores, the keyring and the API, and run until stopped.

use crate::cli::print;
use crate::config::{Config, StoreUrl};
use anyhow::{Context, Result};
use sessiond_core::{Engine, EngineConfig, SystemClock, secret};
use sessiond_server::AppState;
use sessiond_server::ratelimit::{Limiters, RateLimits};
use sessiond_store::memory::MemoryStore;
use sessiond_store::{ChangeLog, Counters, IdentityStore, SessionStore};
use sessiond_store_postgres::{PgOptions, PgStore};
use sessiond_store_redis::{RedisOptions, RedisStore};
use sessiond_store_sqlite::SqliteStore;
use std::path::Path;
use std::sync::Arc;

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cfg.log.format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Writes a file readable by its owner only, atomically: a crash leaves no half-written
/// secret behind (temp file, fsync, rename, fsync of the directory).
fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    // A leftover temp file keeps its old mode through `open`.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot create {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A secret from the configuration, or else from `file` in the data dir, generated there on
/// first start. Returns the secret and whether it was generated now.
fn secret_in_data_dir(
    configured: Option<&str>,
    file: &Path,
    generate: impl Fn() -> Result<String>,
) -> Result<(String, bool)> {
    if let Some(s) = configured {
        return Ok((s.to_owned(), false));
    }
    if file.exists() {
        make_private(file)?;
        let s = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        return Ok((s.trim().to_owned(), false));
    }
    let s = generate()?;
    write_private(file, &s)?;
    Ok((s, true))
}

/// Makes a file sessiond keeps (database, lock, secrets) readable and writable by its owner
/// only: it may have been created under a wide umask, or by an older version. A missing file
/// is left missing.
fn make_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = match std::fs::metadata(path) {
            Ok(m) => m.permissions().mode(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if mode & 0o7077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
                .with_context(|| format!("cannot make {} private", path.display()))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// A warning through the log, or on stderr before logging is set up (`sessiond migrate`).
fn warn(message: &str) {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!("{message}");
    } else {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "warning: {message}");
    }
}

/// Creates the data dir owner-only; an existing directory is left as the operator made it
/// (the files sessiond keeps in it are owner-only either way), with a warning if others may
/// enter it.
fn ensure_data_dir(cfg: &Config) -> Result<()> {
    if cfg.data_dir.exists() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&cfg.data_dir)
                .with_context(|| format!("cannot read data dir {}", cfg.data_dir.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                warn(&format!(
                    "data dir {} is accessible to group or others (mode {:o}); sessiond keeps its own files in it owner-only, but consider chmod 700",
                    cfg.data_dir.display(),
                    mode & 0o7777
                ));
            }
        }
        return Ok(());
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The stores a node works with, and the change logs it follows (shared stores only).
pub struct Stores {
    pub sessions: Arc<dyn SessionStore>,
    pub identity: Arc<dyn IdentityStore>,
    pub logs: Vec<Arc<dyn ChangeLog>>,
    /// The logs the revocation feed reads: the shared ones, and an embedded store's own.
    pub feed_logs: Vec<Arc<dyn ChangeLog>>,
    /// Rate-limit and backoff counters every node shares (none on one node).
    pub counters: Option<Arc<dyn Counters>>,
    /// Held while the node runs: one process per SQLite file.
    _locks: Vec<std::fs::File>,
}

#[derive(Clone)]
enum Opened {
    Memory(Arc<MemoryStore>),
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
    Redis(Arc<RedisStore>),
}

/// Takes `<db>.lock` for this process: a second process on the same SQLite file would not see
/// this one's cached state, so it is refused.
fn lock_sqlite(db: &Path) -> Result<std::fs::File> {
    let path = db.with_extension("lock");
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let f = opts
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    make_private(&path)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "{} is in use by another sessiond process: a SQLite store belongs to one node (use PostgreSQL or Redis for several)",
            db.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Creates `path` empty and owner-only if it does not exist (an empty file is an empty SQLite
/// database), or makes it owner-only if it does.
fn create_private(path: &Path) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    make_private(path)
}

async fn open_one(
    cfg: &Config,
    url: &StoreUrl,
    migrate: bool,
    locks: &mut Vec<std::fs::File>,
) -> Result<Opened> {
    Ok(match url {
        StoreUrl::Memory => Opened::Memory(Arc::new(MemoryStore::new())),
        StoreUrl::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            locks.push(lock_sqlite(path)?);
            create_private(path)?;
            let store = SqliteStore::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            // SQLite gives the -wal and -shm files it creates the database file's mode;
            // ones left by an older version may be wider.
            for suffix in ["-wal", "-shm"] {
                let mut side = path.as_os_str().to_owned();
                side.push(suffix);
                make_private(Path::new(&side))?;
            }
            Opened::Sqlite(Arc::new(store))
        }
        StoreUrl::Postgres(u) => {
            let opts = PgOptions {
                schema: cfg.store.postgres_schema.clone(),
                max_connections: cfg.store.postgres_pool,
                migrate,
                ..PgOptions::default()
            };
            let store = PgStore::connect(u, opts)
                .await
                .context("cannot open the PostgreSQL store")?;
            if !migrate {
                store.check_migrated().await?;
            }
            Opened::Postgres(Arc::new(store))
        }
        StoreUrl::Redis(u) => {
            let opts = RedisOptions {
                prefix: cfg.store.redis_prefix.clone(),
                ..RedisOptions::default()
            };
            Opened::Redis(Arc::new(
                RedisStore::connect(u, opts)
                    .await
                    .context("cannot open the Redis store")?,
            ))
        }
    })
}

/// Opens the configured stores; a store backing both sessions and identity is opened once.
pub async fn open_stores(cfg: &Config, migrate: bool) -> Result<Stores> {
    let mut locks = Vec::new();
    let (s_url, i_url) = (
        cfg.store_url(&cfg.store.sessions)?,
        cfg.store_url(&cfg.store.identity)?,
    );
    let s = open_one(cfg, &s_url, migrate, &mut locks).await?;
    let shared = s_url == i_url;
    let i = if shared {
        s.clone()
    } else {
        open_one(cfg, &i_url, migrate, &mut locks).await?
    };
    let mut logs: Vec<Arc<dyn ChangeLog>> = Vec::new();
    let mut counters: Option<Arc<dyn Counters>> = None;
    let sessions: Arc<dyn SessionStore> = match &s {
        Opened::Memory(m) => m.clone(),
        Opened::Sqlite(x) => x.clone(),
        Opened::Postgres(p) => {
            logs.push(p.clone());
            counters = Some(p.clone());
            p.clone()
        }
        Opened::Redis(r) => {
            logs.push(r.clone());
            counters = Some(r.clone());
            r.clone()
        }
    };
    let identity: Arc<dyn IdentityStore> = match &i {
        Opened::Memory(m) => m.clone(),
        Opened::Sqlite(x) => x.clone(),
        Opened::Postgres(p) => {
            // The same database as the sessions: one log for both.
            if !shared {
                logs.push(p.clone());
            }
            p.clone()
        }
        Opened::Redis(_) => anyhow::bail!("store.identity cannot be Redis"),
    };
    // An embedded store logs its changes too (nobody else reads it): the feed follows it.
    let mut feed_logs = logs.clone();
    for (o, skip) in [(&s, false), (&i, shared)] {
        match o {
            Opened::Memory(m) if !skip => feed_logs.push(m.clone()),
            Opened::Sqlite(x) if !skip => feed_logs.push(x.clone()),
            _ => {}
        }
    }
    Ok(Stores {
        sessions,
        identity,
        logs,
        feed_logs,
        counters,
        _locks: locks,
    })
}

/// `sessiond backup FILE`: a consistent copy of the SQLite database, taken while the server
/// runs on it.
pub fn backup(cfg: &Config, to: &Path) -> Result<()> {
    let (sessions, identity) = (
        cfg.store_url(&cfg.store.sessions)?,
        cfg.store_url(&cfg.store.identity)?,
    );
    let db = match (&sessions, &identity) {
        (StoreUrl::Sqlite(s), StoreUrl::Sqlite(i)) if s == i => i.clone(),
        (StoreUrl::Sqlite(_), StoreUrl::Sqlite(_)) => anyhow::bail!(
            "the sessions and identity stores are two SQLite files: back up each with `sqlite3 FILE \".backup COPY\"`"
        ),
        _ => anyhow::bail!(
            "`sessiond backup` copies the SQLite database; with PostgreSQL use pg_dump, with Redis its RDB/AOF files (DEPLOYMENT.md)"
        ),
    };
    sessiond_store_sqlite::backup(&db, to)
        .with_context(|| format!("cannot back up {}", db.display()))?;
    print(&format!(
        "backup of {} written to {}",
        db.display(),
        to.display()
    ));
    Ok(())
}

pub async fn migrate(cfg: &Config) -> Result<()> {
    ensure_data_dir(cfg)?;
    open_stores(cfg, true).await?;
    print("stores are at the current schema");
    Ok(())
}

/// Runs `batch` (one janitor step of at most `JANITOR_BATCH` records) until a batch comes
/// back short or fails; returns how many records it handled.
async fn in_batches<F, Fut, E>(what: &str, mut batch: F) -> u64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, E>>,
    E: std::fmt::Display,
{
    let mut done = 0;
    loop {
        match batch().await {
            Ok(n) => {
                done += n;
                if n < JANITOR_BATCH as u64 {
                    return done;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "janitor: {what} failed");
                return done;
            }
        }
        tokio::task::yield_now().await;
    }
}

const JANITOR_BATCH: usize = 500;

/// Any node may run the janitor; the stores make sure one at a time does the work. Every
/// minute it records the timeouts of sessions nobody presented since (so they are announced),
/// then purges expired sessions and old change-log entries, in small batches.
fn spawn_janitor(engine: Arc<Engine>, stores: &Stores, retention: i64) {
    let sessions = Arc::clone(&stores.sessions);
    let logs = stores.feed_logs.clone();
    // The revocation feed needs every entry younger than the longest token lifetime.
    let retention = retention.max(sessiond_core::feed::HORIZON);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            // Timeouts first (announced to relying parties), then what can go.
            let expired = in_batches("recording timeouts", || async {
                let n = engine.expire_timed_out(JANITOR_BATCH).await?;
                Ok::<u64, sessiond_core::CoreError>(n as u64)
            })
            .await;
            if expired > 0 {
                tracing::info!(expired, "janitor: timeouts recorded");
            }
            let now = engine.now();
            let mut purged = in_batches("purging sessions", || {
                sessions.purge_expired(now, JANITOR_BATCH)
            })
            .await;
            for log in &logs {
                purged += in_batches("purging the change log", || {
                    log.purge_log(now - retention, JANITOR_BATCH)
                })
                .await;
            }
            if purged > 0 {
                tracing::info!(purged, "janitor");
            }
        }
    });
}

pub async fn run(cfg: Config) -> Result<()> {
    init_logging(&cfg);
    if cfg.shared_stores() == Some(true) {
        let missing: Vec<&str> = [
            ("issuer (SESSIOND_ISSUER)", cfg.issuer.is_none()),
            ("master_key (SESSIOND_MASTER_KEY)", cfg.master_key.is_none()),
            (
                "admin_token (SESSIOND_ADMIN_TOKEN)",
                cfg.admin_token.is_none(),
            ),
        ]
        .into_iter()
        .filter_map(|(what, absent)| absent.then_some(what))
        .collect();
        if !missing.is_empty() {
            anyhow::bail!(
                "with shared stores every node must be given the same {}: a node that generated its own would refuse the others' tokens",
                missing.join(", ")
            );
        }
    }
    // A bad certificate or key stops the start here, naming the file.
    let tls = match (&cfg.tls.cert, &cfg.tls.key) {
        (Some(cert), Some(key)) => Some(
            sessiond_server::listen::TlsFiles::load(cert, key)
                .context("cannot load the TLS certificate and key")?,
        ),
        _ => None,
    };
    raise_open_files_limit(&cfg);
    // Bind first: a taken address must not leave a generated master key and admin token
    // behind (that would never be printed).
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    ensure_data_dir(&cfg)?;
    let (master, _) = secret_in_data_dir(
        cfg.master_key.as_ref().map(|s| s.0.as_str()),
        &cfg.data_dir.join("master.key"),
        || Ok(secret::MasterKey::generate()?.to_hex()),
    )?;
    let master = secret::MasterKey::parse(&master)
        .context("the master key must be 32 bytes as 64 hex digits or base64")?;
    let token_file = cfg.admin_token_file();
    let (admin_token, generated) = secret_in_data_dir(
        cfg.admin_token.as_ref().map(|s| s.0.as_str()),
        &token_file,
        || Ok(secret::new_secret()?),
    )?;
    if admin_token.len() < 16 {
        anyhow::bail!("the admin token must be at least 16 characters");
    }
    let stores = open_stores(&cfg, cfg.store.migrate_on_start).await?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let engine = Engine::start(
        Arc::clone(&stores.sessions),
        Arc::clone(&stores.identity),
        Arc::new(SystemClock),
        master,
        EngineConfig {
            // With `listen = "…:0"` the default issuer names the port actually bound.
            issuer: cfg
                .issuer
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{addr}")),
            token_cache_size: cfg.cache.tokens,
            session_cache_size: cfg.cache.sessions,
            audience: cfg.audience.clone(),
            signing_alg: sessiond_core::token::Alg::parse(&cfg.signing_algorithm)
                .unwrap_or_default(),
            ..EngineConfig::default()
        },
    )
    .await?
    .with_change_logs(
        stores.logs.len(),
        std::time::Duration::from_millis(cfg.store.staleness_bound_ms),
    );
    let engine = match &stores.counters {
        Some(c) => engine.with_counters(Arc::clone(c)),
        None => engine,
    }
    .with_ipv6_prefix(cfg.limits.ipv6_prefix);
    // SIGHUP is handled from before "listening" is printed: it reloads the certificate, or
    // (without TLS) is logged and ignored, never ending the process.
    match &tls {
        Some(files) => {
            tracing::info!(cert = ?cfg.tls.cert, key = ?cfg.tls.key, "serving HTTPS");
            let every = cfg.tls.reload_check_secs;
            files.spawn_reloader((every > 0).then(|| std::time::Duration::from_secs(every)));
        }
        None => ignore_sighup(),
    }
    // A closed stdout (the launcher went away) must not stop the server: no println!.
    print(&format!("sessiond listening on {scheme}://{addr}"));
    if generated {
        print(&format!(
            "admin token (generated, stored in {}): {admin_token}",
            token_file.display()
        ));
    } else if cfg.admin_token.is_none() {
        print(&format!("admin token: in {}", token_file.display()));
    }
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "sessiond started");
    let limits = RateLimits {
        auth_per_minute: cfg.limits.auth_per_minute,
        auth_failures_per_minute: cfg.limits.auth_failures_per_minute,
        partner_per_minute: cfg.limits.partner_per_minute,
        partner_failures_per_minute: cfg.limits.partner_failures_per_minute,
    };
    // The console's operators sign in on a tenant of their own.
    engine
        .ensure_operators_tenant()
        .await
        .context("creating the operators' tenant")?;
    let mut state = AppState::new(engine, &admin_token, cfg.trusted_proxies.clone(), limits);
    state.allowed_origins = cfg.allowed_origins.clone().into();
    state.metrics_token = cfg.metrics_token.as_ref().map(|t| t.0.as_str().into());
    let limiters = match &stores.counters {
        Some(c) => Limiters::shared(limits, Arc::clone(c)),
        None => Limiters::new(limits),
    };
    state.limiters = Arc::new(limiters.with_ipv6_prefix(cfg.limits.ipv6_prefix));
    for (i, log) in stores.logs.iter().enumerate() {
        state.engine.spawn_follower(i, Arc::clone(log));
    }
    state.engine.start_feed(
        stores.feed_logs.clone(),
        stores.feed_logs.len() == stores.logs.len(),
    );
    // Session events: a shared log's dispatcher holds a lease among the nodes; an embedded
    // store's log is this process's alone.
    let (shared, embedded) = stores.feed_logs.split_at(stores.logs.len());
    state.start_session_events(shared, sessiond_core::dispatch::Options::default());
    state.start_session_events(
        embedded,
        sessiond_core::dispatch::Options {
            exclusive: true,
            ..Default::default()
        },
    );
    spawn_janitor(
        Arc::clone(&state.engine),
        &stores,
        cfg.store.change_log_retention_secs as i64,
    );
    if cfg.audit_retention_days > 0 {
        let engine = Arc::clone(&state.engine);
        let keep = i64::from(cfg.audit_retention_days) * 86_400;
        tokio::spawn(async move {
            let mut every_hour = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                every_hour.tick().await;
                match engine.purge_audit(keep).await {
                    Ok(n) if n > 0 => tracing::info!(purged = n, "audit retention"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "audit retention failed"),
                }
            }
        });
    }
    let opts = sessiond_server::listen::ServeOptions {
        header_read_timeout: std::time::Duration::from_secs(cfg.server.header_read_timeout_secs),
        idle_timeout: std::time::Duration::from_secs(cfg.server.idle_timeout_secs),
        response_timeout: std::time::Duration::from_secs(cfg.server.response_timeout_secs),
        max_connections: cfg.server.max_connections,
        max_connections_per_client: cfg.server.max_connections_per_client,
        tls,
        ..Default::default()
    };
    let engine = Arc::clone(&state.engine);
    let shutdown = async move {
        shutdown_signal().await;
        // Feed streams would otherwise hold the drain until they end by themselves.
        if let Some(feed) = engine.feed() {
            feed.close();
        }
    };
    sessiond_server::serve(listener, state, opts, shutdown).await?;
    tracing::info!("sessiond stopped");
    Ok(())
}

/// Descriptors kept free for everything but client connections: stores, logs, files.
const OPEN_FILES_MARGIN: u64 = 256;

/// Raises the soft open-files limit to `server.max_open_files` (default: the hard limit),
/// and warns when `server.max_connections` does not fit under it.
fn raise_open_files_limit(cfg: &Config) {
    let wanted = cfg.server.max_open_files.unwrap_or(u64::MAX);
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) => {
            tracing::info!(
                open_files_limit = limit,
                "open-files limit (soft RLIMIT_NOFILE) set"
            );
            let needed = (cfg.server.max_connections as u64).saturating_add(OPEN_FILES_MARGIN);
            if needed > limit {
                tracing::warn!(
                    open_files_limit = limit,
                    max_connections = cfg.server.max_connections,
                    "server.max_connections plus {OPEN_FILES_MARGIN} exceeds the open-files limit: \
                     lower it or raise the limit (server.max_open_files, ulimit -n, LimitNOFILE)"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
}

/// Without TLS there is nothing to reload: SIGHUP is logged, and does not end the process.
fn ignore_sighup() {
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP received: no TLS configured, nothing to reload");
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
