//! The PostgreSQL backend of sessiond's stores, shared by any number of nodes: sessions,
//! identity data and the change log the nodes follow to invalidate their caches.
//!
//! Every trait method is one transaction (or one statement) with the locks it needs:
//! creations under a session limit take a per-user advisory lock, rotations lock the refresh
//! token row, and every change other nodes may have cached is appended to the change log in
//! the same transaction (see `changes.rs`).

mod changes;
mod codec;
mod counters;
mod error;
mod identity;
mod schema;
mod sessions;

use error::DbResult;
use sessiond_store::{StoreError, StoreResult};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A pooled connection idle for longer than this is pinged before use (the pool also tests
/// every connection when it is released).
const IDLE_PING: Duration = Duration::from_secs(30);

/// Settings of [`PgStore::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// The schema holding sessiond's tables, created if missing and set as every
    /// connection's `search_path`; `None`: the connection's default (normally `public`).
    /// 1-63 characters of `[A-Za-z0-9_]`, not starting with a digit.
    pub schema: Option<String>,
    /// Connections in the pool (one more is opened for change-log hints).
    pub max_connections: u32,
    /// How long an operation waits for a connection, connecting included.
    pub acquire_timeout: Duration,
    /// The server-side `statement_timeout` of every statement (zero: none).
    pub statement_timeout: Duration,
    /// Apply pending migrations on connect.
    pub migrate: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            schema: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            migrate: true,
        }
    }
}

/// Sessions, identity data and the change log in PostgreSQL. Cheap to clone: clones share
/// one pool, one hint sender and one hint listener.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// What the hint listener connects with.
    connect: PgConnectOptions,
    acquire_timeout: Duration,
    /// The schema's name (`public` when none was given): in lock keys and the channel name.
    schema: String,
    /// Whether [`PgStore::migrate`] creates the schema.
    create_schema: bool,
    /// The NOTIFY channel of this schema's change log.
    channel: String,
    /// No operation takes longer, whatever the network does.
    deadline: Duration,
    /// The newest sequence number committed through this store, for the hint sender task.
    hints: tokio::sync::watch::Sender<u64>,
    listener: tokio::sync::Mutex<Option<PgListener>>,
    /// Audit appends waiting for their batch (see `PgStore::append_audit`).
    audit: identity::AuditQueue,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.schema)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects a pool to `url` (a `postgres://` URL), checks that the server answers and,
    /// if `opts.migrate`, brings the schema up to date. Fails with
    /// [`StoreError::Unavailable`] within about `acquire_timeout` if the server cannot be
    /// reached. Must be called inside a Tokio runtime (it starts the hint sender task).
    pub async fn connect(url: &str, opts: PgOptions) -> StoreResult<PgStore> {
        let schema = opts.schema.as_deref().map(schema::validate).transpose()?;
        let mut connect: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
        let mut startup = vec![(
            "statement_timeout",
            opts.statement_timeout.as_millis().to_string(),
        )];
        if let Some(s) = &schema {
            startup.push(("search_path", schema::quote(s)));
        }
        connect = connect.options(startup);
        if connect.get_application_name().is_none() {
            connect = connect.application_name("sessiond");
        }
        // One connection first, outside the pool: its error names the cause (refused, bad
        // password, unknown database) where the pool would only say it timed out.
        {
            use sqlx::Connection as _;
            let first = tokio::time::timeout(
                opts.acquire_timeout,
                sqlx::PgConnection::connect_with(&connect),
            )
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "PostgreSQL at {}:{} did not answer within {:?}",
                    connect.get_host(),
                    connect.get_port(),
                    opts.acquire_timeout
                ))
            })?
            .map_err(|e| match error::store_error(e) {
                StoreError::Unavailable(why) => StoreError::Unavailable(format!(
                    "PostgreSQL at {}:{}: {why}",
                    connect.get_host(),
                    connect.get_port()
                )),
                other => other,
            })?;
            let _ = first.close().await;
        }
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(opts.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_PING {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(connect.clone())
            .await
            .map_err(error::store_error)?;
        let schema_name = schema.clone().unwrap_or_else(|| "public".to_owned());
        let channel = changes::channel_name(&schema_name);
        let hints = changes::spawn_hint_sender(pool.clone(), channel.clone());
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                connect,
                acquire_timeout: opts.acquire_timeout,
                create_schema: schema.is_some(),
                schema: schema_name,
                channel,
                deadline: opts.acquire_timeout
                    + opts.statement_timeout * 2
                    + Duration::from_secs(1),
                hints,
                listener: tokio::sync::Mutex::new(None),
                audit: identity::AuditQueue::default(),
            }),
        };
        if opts.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Applies the pending migrations (creating the schema first if one was given) and
    /// returns the schema version. Safe to run from several nodes at once: they take turns
    /// under an advisory lock, and all but the first find nothing to do.
    pub async fn migrate(&self) -> StoreResult<u32> {
        let inner = &self.inner;
        schema::migrate(&inner.pool, &inner.schema, inner.create_schema)
            .await
            .map_err(StoreError::from)
    }

    /// Refuses a schema that is not at this build's version, saying what to do (for a node
    /// that starts without migrating).
    pub async fn check_migrated(&self) -> StoreResult<()> {
        let version: Option<i32> =
            sqlx::query_scalar("SELECT version FROM sessiond_schema_version")
                .fetch_optional(self.pool())
                .await
                .ok()
                .flatten();
        let latest = schema::MIGRATIONS.len();
        match version.and_then(|v| usize::try_from(v).ok()) {
            Some(v) if v == latest => Ok(()),
            Some(v) if v > latest => Err(StoreError::Backend(format!(
                "the PostgreSQL schema {} is at version {v}, newer than this sessiond's {latest}",
                self.inner.schema
            ))),
            _ => Err(StoreError::Backend(format!(
                "the PostgreSQL schema {} is not migrated to this version: run `sessiond migrate` first (or set store.migrate_on_start = true)",
                self.inner.schema
            ))),
        }
    }

    /// Runs one store operation, mapping its errors, and gives up with
    /// [`StoreError::Unavailable`] once the deadline has passed (a server that stopped
    /// answering mid-query must not hang the caller).
    async fn run<T>(&self, op: impl Future<Output = DbResult<T>>) -> StoreResult<T> {
        match tokio::time::timeout(self.inner.deadline, op).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer from PostgreSQL within {:?}",
                self.inner.deadline
            ))),
        }
    }

    fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The key of a transaction-scoped advisory lock named `what` in this schema.
    fn lock_name(&self, what: &str) -> String {
        format!("sessiond:{}:{what}", self.inner.schema)
    }
}
