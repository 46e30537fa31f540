//! `sessiond serve`: open the stores, the keyring and the API, and run until stopped.

use crate::cli::print;
use crate::config::{Config, StoreUrl};
use anyhow::{Context, Result};
use sessiond_core::{Engine, EngineConfig, SystemClock, secret};
use sessiond_server::AppState;
use sessiond_server::ratelimit::RateLimits;
use sessiond_store::memory::MemoryStore;
use sessiond_store::{IdentityStore, SessionStore};
use sessiond_store_sqlite::SqliteStore;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
        let s = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        return Ok((s.trim().to_owned(), false));
    }
    let s = generate()?;
    write_private(file, &s)?;
    Ok((s, true))
}

pub fn admin_token_file(cfg: &Config) -> PathBuf {
    cfg.data_dir.join("admin.token")
}

/// Creates the data dir owner-only; an existing directory is left as the operator made it.
fn ensure_data_dir(cfg: &Config) -> Result<()> {
    if cfg.data_dir.exists() {
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

/// Opens the configured stores; one SQLite file backing both is opened once.
async fn open_stores(cfg: &Config) -> Result<(Arc<dyn SessionStore>, Arc<dyn IdentityStore>)> {
    let mut sqlite: HashMap<PathBuf, Arc<SqliteStore>> = HashMap::new();
    let mut memory: Option<Arc<MemoryStore>> = None;
    let mut open = |url: StoreUrl| -> Result<Either> {
        Ok(match url {
            StoreUrl::Memory => Either::Memory(Arc::clone(
                memory.get_or_insert_with(|| Arc::new(MemoryStore::new())),
            )),
            StoreUrl::Sqlite(path) => {
                if let Some(s) = sqlite.get(&path) {
                    Either::Sqlite(Arc::clone(s))
                } else {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir)?;
                    }
                    let s = Arc::new(
                        SqliteStore::open(&path)
                            .with_context(|| format!("cannot open {}", path.display()))?,
                    );
                    sqlite.insert(path, Arc::clone(&s));
                    Either::Sqlite(s)
                }
            }
        })
    };
    let sessions: Arc<dyn SessionStore> = match open(cfg.store_url(&cfg.store.sessions)?)? {
        Either::Memory(m) => m,
        Either::Sqlite(s) => s,
    };
    let identity: Arc<dyn IdentityStore> = match open(cfg.store_url(&cfg.store.identity)?)? {
        Either::Memory(m) => m,
        Either::Sqlite(s) => s,
    };
    Ok((sessions, identity))
}

enum Either {
    Memory(Arc<MemoryStore>),
    Sqlite(Arc<SqliteStore>),
}

pub async fn migrate(cfg: &Config) -> Result<()> {
    ensure_data_dir(cfg)?;
    open_stores(cfg).await?;
    print("stores are at the current schema");
    Ok(())
}

pub async fn run(cfg: Config) -> Result<()> {
    init_logging(&cfg);
    ensure_data_dir(&cfg)?;
    let (master, _) = secret_in_data_dir(
        cfg.master_key.as_ref().map(|s| s.0.as_str()),
        &cfg.data_dir.join("master.key"),
        || Ok(secret::MasterKey::generate()?.to_hex()),
    )?;
    let master = secret::MasterKey::parse(&master)
        .context("the master key must be 32 bytes as 64 hex digits or base64")?;
    let token_file = admin_token_file(&cfg);
    let (admin_token, generated) = secret_in_data_dir(
        cfg.admin_token.as_ref().map(|s| s.0.as_str()),
        &token_file,
        || Ok(secret::new_secret()?),
    )?;
    if admin_token.len() < 16 {
        anyhow::bail!("the admin token must be at least 16 characters");
    }
    let (sessions, identity) = open_stores(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let engine = Engine::start(
        sessions,
        identity,
        Arc::new(SystemClock),
        master,
        EngineConfig {
            // With `listen = "…:0"` the default issuer names the port actually bound.
            issuer: cfg
                .issuer
                .clone()
                .unwrap_or_else(|| format!("http://{addr}")),
            token_cache_size: cfg.cache.tokens,
            session_cache_size: cfg.cache.sessions,
            audience: cfg.audience.clone(),
            signing_alg: sessiond_core::token::Alg::parse(&cfg.signing_algorithm)
                .unwrap_or_default(),
            ..EngineConfig::default()
        },
    )
    .await?;
    // A closed stdout (the launcher went away) must not stop the server: no println!.
    print(&format!("sessiond listening on http://{addr}"));
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
        partner_per_minute: cfg.limits.partner_per_minute,
    };
    let mut state = AppState::new(engine, &admin_token, cfg.trusted_proxies.clone(), limits);
    state.allowed_origins = cfg.allowed_origins.clone().into();
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
    sessiond_server::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("sessiond stopped");
    Ok(())
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
