//! sessiond's Redis / Valkey session store: [`SessionStore`](sessiond_store::SessionStore) and
//! [`ChangeLog`](sessiond_store::ChangeLog) on standalone Redis or Redis Cluster (identity
//! stays on PostgreSQL / SQLite).
//!
//! # Layout and atomicity
//! A user's sessions, their index, their refresh tokens and one partition of the change log
//! share one [`Route`](sessiond_store::Route) and so one hash tag (see `keys.rs`): every
//! read-modify-write of a user (create under a limit, rotation, revocations, touch,
//! re-authentication, `mark_expired`) is one Lua script on one slot, and a script that ends sessions appends to
//! the change log and publishes a hint in the same script. Tenant-wide listing reads a
//! per-tenant index written before the create script and pruned lazily.
//!
//! # Expiry
//! Keys expire by themselves (`EXPIRE`), never through keyspace notifications:
//! a session and its refresh tokens `absolute expiry + 1 day` after the caller's `now`
//! (so ended sessions can still be listed for a day), a nonce at its expiry. Expiry times are
//! converted to durations from the `now` the caller passed, rather than given as absolute
//! `EXPIREAT` instants, so that a caller whose clock differs from the server's (or a test with
//! a fixed `now`) sees the same lifetimes. Recording timeouts is another matter: each route
//! keeps its active sessions in a zset scored by their timeout (see `keys.rs`), which
//! `expire_sessions` sweeps one script per route (lua/expire.lua), so that abandoned
//! sessions are recorded as expired and logged without a scan of the keyspace.
//!
//! # Durability
//! Writes are exactly as durable as the server's persistence configuration: with the default
//! RDB snapshots a crash loses the writes since the last snapshot, which may resurrect revoked
//! sessions or forget rotations. For the strict guarantee run Redis with `appendonly yes` and
//! `appendfsync always` (or `everysec` to lose at most about a second), and replicas for
//! availability (a failover can still lose the writes not yet replicated). This store does not
//! issue `WAITAOF` / `WAIT` itself.

mod changes;
mod counters;
mod keys;
mod record;
mod scripts;
mod sessions;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use keys::Keys;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, RedisFuture, Value};
use sessiond_store::{StoreError, StoreResult};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How to talk to Redis.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Put in front of every key and of the hint channel; several deployments (or tests) may
    /// share one Redis with different prefixes. Must not contain `{` or `}`.
    pub prefix: String,
    /// How long a command may take before the store reports
    /// [`StoreError::Unavailable`].
    pub response_timeout: Duration,
    /// How long connecting (or reconnecting) may take.
    pub connect_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "sessiond:".into(),
            response_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// The Redis store; cheap to clone (clones share the connections).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    keys: Keys,
    /// The longest any one operation may take, reconnecting included.
    deadline: Duration,
    hints: changes::Hints,
}

/// A standalone connection (reconnecting by itself) or a Cluster one.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Maps a client error: unreachable, timed out or a cluster in transition is
/// [`StoreError::Unavailable`] (worth a retry); the rest is [`StoreError::Backend`].
pub(crate) fn map_err(e: RedisError) -> StoreError {
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || matches!(
            e.kind(),
            ErrorKind::TryAgain
                | ErrorKind::ClusterDown
                | ErrorKind::MasterDown
                | ErrorKind::BusyLoadingError
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::ReadOnly
                | ErrorKind::Moved
                | ErrorKind::Ask
        )
        || matches!(e.code(), Some("BUSY" | "NOREPLICAS" | "LOADING"));
    if transient {
        StoreError::Unavailable(format!("redis: {e}"))
    } else {
        StoreError::Backend(format!("redis: {e}"))
    }
}

fn config_error(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("redis configuration: {what}"))
}

/// The node URLs of a `redis-cluster://` / `rediss-cluster://` URL, as `redis://` /
/// `rediss://` URLs; `None` for a standalone URL.
fn cluster_nodes(url: &str) -> StoreResult<Option<Vec<String>>> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("redis-cluster://") {
        ("redis", rest)
    } else if let Some(rest) = url.strip_prefix("rediss-cluster://") {
        ("rediss", rest)
    } else {
        return Ok(None);
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("{scheme}://{userinfo}{h}"))
        .collect();
    if nodes.is_empty() {
        return Err(config_error("a cluster URL names no node"));
    }
    Ok(Some(nodes))
}

impl RedisStore {
    /// Connects to `redis://host:port[/db]`, `rediss://…` (TLS), or a Cluster:
    /// `redis-cluster://host:port,host:port,…` (`rediss-cluster://` for TLS; user and
    /// password as in `redis-cluster://user:password@host:port,…`). Fails with
    /// [`StoreError::Unavailable`] if nothing answers.
    pub async fn connect(url: &str, opts: RedisOptions) -> StoreResult<RedisStore> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if opts.prefix.contains(['{', '}']) {
            return Err(config_error("the key prefix must not contain '{' or '}'"));
        }
        let deadline = opts.connect_timeout + opts.response_timeout;
        let (conn, node_urls) = match cluster_nodes(url)? {
            Some(nodes) => {
                let client = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(opts.connect_timeout)
                    .response_timeout(opts.response_timeout)
                    .retries(3)
                    .min_retry_wait(50)
                    .max_retry_wait(500)
                    .build()
                    .map_err(config_error)?;
                let conn = within(deadline, client.get_async_connection()).await?;
                (Conn::Cluster(conn), nodes)
            }
            None => {
                let client = redis::Client::open(url).map_err(config_error)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(opts.connect_timeout)
                    .set_response_timeout(opts.response_timeout)
                    .set_number_of_retries(1)
                    .set_factor(100)
                    .set_max_delay(500);
                let conn =
                    within(deadline, ConnectionManager::new_with_config(client, config)).await?;
                (Conn::Single(conn), vec![url.to_owned()])
            }
        };
        let keys = Keys::new(opts.prefix.clone());
        let store = RedisStore {
            inner: Arc::new(Inner {
                conn,
                hints: changes::Hints::new(node_urls, keys.channel(), deadline),
                keys,
                deadline,
            }),
        };
        store.ping_server().await?;
        store.warn_unless_durable().await;
        Ok(store)
    }

    /// Logs a warning when the server's persistence or eviction settings break sessiond's
    /// guarantees: an acknowledged write must survive a restart (`appendonly yes`,
    /// `appendfsync always`) and nothing may be evicted (`maxmemory-policy noeviction`).
    /// Managed services may refuse `CONFIG`; then nothing is said.
    async fn warn_unless_durable(&self) {
        for (name, wanted) in [
            ("appendonly", "yes"),
            ("appendfsync", "always"),
            ("maxmemory-policy", "noeviction"),
        ] {
            let got: StoreResult<Vec<String>> =
                self.query(redis::cmd("CONFIG").arg("GET").arg(name)).await;
            if let Ok(pair) = got
                && let Some(value) = pair.get(1)
                && value != wanted
            {
                tracing::warn!(
                    setting = name,
                    value = %value,
                    wanted,
                    "Redis is not configured for sessiond's durability guarantees (see DEPLOYMENT.md)"
                );
            }
        }
    }

    fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    fn is_cluster(&self) -> bool {
        matches!(self.inner.conn, Conn::Cluster(_))
    }

    /// Runs a request under the store's deadline.
    async fn run<T>(&self, f: impl Future<Output = redis::RedisResult<T>>) -> StoreResult<T> {
        within(self.inner.deadline, f).await
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> StoreResult<T> {
        let mut conn = self.conn();
        self.run(cmd.query_async(&mut conn)).await
    }

    async fn invoke(&self, inv: &redis::ScriptInvocation<'_>) -> StoreResult<Value> {
        let mut conn = self.conn();
        self.run(inv.invoke_async(&mut conn)).await
    }

    async fn ping_server(&self) -> StoreResult<()> {
        self.query::<Value>(&redis::cmd("PING")).await.map(|_| ())
    }

    /// Runs pipelines, each on one slot, and gives each its replies. Standalone they go as
    /// one pipeline; on a Cluster each is sent on its own (concurrently), since a Cluster
    /// pipeline must stay on one slot.
    async fn pipelines(&self, groups: Vec<Pipeline>) -> StoreResult<Vec<Vec<Value>>> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        if !self.is_cluster() {
            let mut all = redis::pipe();
            let sizes: Vec<usize> = groups.iter().map(Pipeline::len).collect();
            for g in &groups {
                for c in g.cmd_iter() {
                    all.add_command(c.clone());
                }
            }
            let mut conn = self.conn();
            let replies: Vec<Value> = self.run(all.query_async(&mut conn)).await?;
            let mut replies = replies.into_iter();
            return Ok(sizes
                .into_iter()
                .map(|n| replies.by_ref().take(n).collect())
                .collect());
        }
        let conn = self.conn();
        let runs = groups.into_iter().map(|g| {
            let mut conn = conn.clone();
            async move { g.query_async::<Vec<Value>>(&mut conn).await }
        });
        self.run(futures_util::future::try_join_all(runs)).await
    }
}

async fn within<T>(
    deadline: Duration,
    f: impl Future<Output = redis::RedisResult<T>>,
) -> StoreResult<T> {
    match tokio::time::timeout(deadline, f).await {
        Ok(r) => r.map_err(map_err),
        Err(_) => Err(StoreError::Unavailable(format!(
            "redis did not answer within {deadline:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cluster_urls_name_their_nodes() {
        assert_eq!(cluster_nodes("redis://h:1/0").unwrap(), None);
        assert_eq!(
            cluster_nodes("redis-cluster://127.0.0.1:7000,127.0.0.1:7001").unwrap(),
            Some(vec![
                "redis://127.0.0.1:7000".to_owned(),
                "redis://127.0.0.1:7001".to_owned()
            ])
        );
        assert_eq!(
            cluster_nodes("rediss-cluster://u:p@a:1,b:2/").unwrap(),
            Some(vec![
                "rediss://u:p@a:1".to_owned(),
                "rediss://u:p@b:2".to_owned()
            ])
        );
        assert!(cluster_nodes("redis-cluster://").is_err());
    }
}
