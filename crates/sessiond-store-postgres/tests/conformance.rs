//! The PostgreSQL store against the conformance suite, plus what only a shared server can
//! show: several nodes on one schema, NOTIFY hints, migrations racing, a server going away.
//!
//! Needs a PostgreSQL server: `SESSIOND_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`). The tests fail if it cannot be reached.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sessiond_store::{
    AuthMethod, Change, ChangeLog, DeviceInfo, IdentityStore, LogRead, NewRefreshToken, NewSession,
    PolicyOverrides, Profile, RevokeReason, Session, SessionId, SessionLimit, SessionState,
    SessionStore, SsoSettings, StoreError, Tenant, TenantId, TokenHash,
};
use sessiond_store_postgres::{PgOptions, PgStore};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NOW: i64 = 1_700_000_000;
const DAY: i64 = 86_400;

fn url() -> String {
    std::env::var("SESSIOND_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A schema name no other store uses: `sessiond_t_<unix secs>_<pid>_<counter>`.
fn unique_schema() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "sessiond_t_{}_{}_{}",
        unix_now(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn admin() -> PgConnection {
    PgConnection::connect(&url()).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL must be reachable at {} (SESSIOND_TEST_POSTGRES): {e}",
            url()
        )
    })
}

/// Once per process: drops the test schemas of runs older than an hour.
async fn drop_stale_schemas() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    let mut conn = admin().await;
    let names: Vec<String> = sqlx::query_scalar(
        r"SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'sessiond\_t\_%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let cutoff = unix_now().saturating_sub(3600);
    for name in names {
        let stamp = name
            .strip_prefix("sessiond_t_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|s| s.parse::<u64>().ok());
        if stamp.is_some_and(|t| t < cutoff) {
            // Another test process may be dropping it too: not an error.
            let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(&mut conn)
                .await;
        }
    }
}

fn options(schema: &str) -> PgOptions {
    PgOptions {
        schema: Some(schema.to_owned()),
        max_connections: 4,
        ..PgOptions::default()
    }
}

async fn store_in(schema: &str) -> PgStore {
    drop_stale_schemas().await;
    PgStore::connect(&url(), options(schema))
        .await
        .unwrap_or_else(|e| panic!("connect to {} (SESSIOND_TEST_POSTGRES): {e}", url()))
}

/// A new store in a new schema.
async fn fresh() -> PgStore {
    store_in(&unique_schema()).await
}

mod conformance {
    use super::fresh;
    sessiond_store::identity_store_conformance!(fresh());
    sessiond_store::session_store_conformance!(fresh());
    sessiond_store::audited_session_writes_conformance!(fresh());
    sessiond_store::session_change_log_conformance!(fresh());
    sessiond_store::identity_change_log_conformance!(fresh());
    sessiond_store::counters_conformance!(fresh());
}

// ---------------------------------------------------------------------------------------
// Helpers

fn tenant_a() -> TenantId {
    TenantId::parse("tenant-a").unwrap()
}

fn session(created_at: i64, absolute_expires_at: i64) -> Session {
    let mut random = [0u8; 15];
    random.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..15]);
    Session {
        id: SessionId::generate(sessiond_store::Route(0), random),
        tenant_id: tenant_a(),
        user_id: uuid::Uuid::new_v4(),
        customer_id: uuid::Uuid::new_v4(),
        auth_method: AuthMethod::Password,
        created_at,
        auth_time: created_at,
        last_seen_at: created_at,
        absolute_expires_at,
        idle_ttl: None,
        device: DeviceInfo::default(),
        state: SessionState::Active,
    }
}

fn token() -> TokenHash {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    b[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    TokenHash(b)
}

async fn create(store: &PgStore, s: &Session, refresh: Option<TokenHash>) {
    let new = NewSession {
        session: s.clone(),
        refresh: refresh.map(|hash| NewRefreshToken {
            hash,
            expires_at: s.absolute_expires_at,
        }),
    };
    store
        .create_session(new, SessionLimit::Unlimited, s.created_at, None)
        .await
        .expect("create_session");
}

fn sso(audience: &str) -> SsoSettings {
    SsoSettings {
        issuer: None,
        audience: audience.to_owned(),
        sealed_hs256_secret: Some(vec![1, 2, 3]),
        public_key_pem: None,
        jwks_url: None,
        verify_url: None,
        sealed_verify_secret: None,
        updated_at: NOW,
    }
}

/// Everything in the log after `after`, checking that it is numbered consecutively.
async fn read_all(store: &PgStore, mut after: u64) -> Vec<Change> {
    let mut changes = Vec::new();
    loop {
        let read = store.read_log(&[(0, after)], 7).await.expect("read_log");
        let [LogRead::Entries(entries)] = read.as_slice() else {
            panic!("cannot resume after {after}: {read:?}");
        };
        if entries.is_empty() {
            return changes;
        }
        for e in entries {
            assert_eq!(e.seq, after + 1, "consecutive");
            after = e.seq;
            changes.push(e.change.clone());
        }
    }
}

/// `url` with its host and port replaced.
fn with_host(url: &str, host_port: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let userinfo = authority
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    format!("{scheme}://{userinfo}{host_port}{path}")
}

/// A TCP proxy to the test server that can be cut, as a crashed server or a lost network
/// would cut it.
struct Proxy {
    port: u16,
    accept: tokio::task::JoinHandle<()>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start() -> Self {
        let target = PgConnectOptions::from_str(&url()).unwrap();
        let upstream = format!("{}:{}", target.get_host(), target.get_port());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tracked = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                tracked.lock().unwrap().push(task.abort_handle());
            }
        });
        Self {
            port,
            accept,
            conns,
        }
    }

    /// Closes every connection and stops listening.
    fn cut(&self) {
        self.accept.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------
// A server that is down or goes away

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_down_server_is_unavailable_within_seconds() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = with_host(&url(), &format!("127.0.0.1:{port}"));
    let opts = PgOptions {
        acquire_timeout: Duration::from_secs(1),
        ..options(&unique_schema())
    };
    let result = tokio::time::timeout(Duration::from_secs(10), PgStore::connect(&down, opts))
        .await
        .expect("connect must give up, not hang");
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_is_unavailable_within_seconds() {
    drop_stale_schemas().await;
    let proxy = Proxy::start().await;
    let opts = PgOptions {
        acquire_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(2),
        ..options(&unique_schema())
    };
    let via_proxy = with_host(&url(), &format!("127.0.0.1:{}", proxy.port));
    let store = PgStore::connect(&via_proxy, opts).await.expect("connect");
    let s = session(NOW, NOW + DAY);
    create(&store, &s, Some(token())).await;
    store.ping().await.expect("ping");
    assert!(store.wait_hint(Duration::from_millis(50)).await.is_empty());

    proxy.cut();
    let bounded = Duration::from_secs(10);
    let started = Instant::now();
    for _ in 0..3 {
        let r = tokio::time::timeout(bounded, store.get_session(&s.tenant_id, &s.id))
            .await
            .expect("an operation must give up, not hang");
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    }
    let r = tokio::time::timeout(
        bounded,
        store.revoke_session(&s.tenant_id, &s.id, RevokeReason::Admin, NOW + 1, None),
    )
    .await
    .expect("a write must give up, not hang");
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    let r = tokio::time::timeout(bounded, store.ping())
        .await
        .expect("ping must give up");
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    let waited = Instant::now();
    let hint = tokio::time::timeout(bounded, store.wait_hint(Duration::from_millis(300)))
        .await
        .expect("wait_hint must return by its deadline");
    assert!(hint.is_empty());
    assert!(waited.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------
// Several nodes on one schema

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_another_node_wakes_the_waiter() {
    let schema = unique_schema();
    let (a, b) = (store_in(&schema).await, store_in(&schema).await);
    let s = session(NOW, NOW + DAY);
    create(&b, &s, None).await;

    // The listener is opened on first use; once A hears a change of its own, its LISTEN is
    // in place and nothing else is pending. (A hint sent before the LISTEN is lost: retry.)
    let _ = a.wait_hint(Duration::from_millis(200)).await;
    let mut primed = false;
    for i in 0..10 {
        a.set_sso(&tenant_a(), sso(&format!("prime{i}")))
            .await
            .expect("set_sso");
        if a.wait_hint(Duration::from_secs(5)).await == vec![0] {
            primed = true;
            break;
        }
    }
    assert!(primed, "a node hears its own changes");

    let waiter = {
        let a = a.clone();
        tokio::spawn(async move { a.wait_hint(Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.revoke_session(&s.tenant_id, &s.id, RevokeReason::Admin, NOW + 1, None)
        .await
        .expect("revoke")
        .expect("revoked");
    assert_eq!(waiter.await.unwrap(), vec![0], "the waiter was woken");
    let changes = read_all(&a, 0).await;
    assert_eq!(
        changes.last(),
        Some(&Change::SessionEnded {
            tenant: s.tenant_id.clone(),
            session: s.id.clone(),
            user: s.user_id,
            reason: RevokeReason::Admin,
            auth_time: Some(s.auth_time),
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_one_gapless_log() {
    let schema = unique_schema();
    let (a, b) = (store_in(&schema).await, store_in(&schema).await);
    let t = Tenant {
        id: tenant_a(),
        name: None,
        profile: Profile::Production,
        overrides: PolicyOverrides::default(),
        created_at: NOW,
    };
    a.create_tenant(t.clone()).await.expect("tenant");
    let s = session(NOW, NOW + DAY);
    create(&a, &s, None).await;
    a.revoke_session(&s.tenant_id, &s.id, RevokeReason::Logout, NOW + 1, None)
        .await
        .expect("revoke");
    b.set_tenant_policy(&t.id, PolicyOverrides::default())
        .await
        .expect("policy");
    let expected = vec![
        Change::SessionEnded {
            tenant: s.tenant_id.clone(),
            session: s.id.clone(),
            user: s.user_id,
            reason: RevokeReason::Logout,
            auth_time: Some(s.auth_time),
        },
        Change::TenantChanged {
            tenant: t.id.clone(),
        },
    ];
    assert_eq!(read_all(&a, 0).await, expected, "A sees B's entry");
    assert_eq!(read_all(&b, 0).await, expected, "B sees A's entry");

    // Many logging transactions from both nodes at once, while a reader follows: it never
    // finds a hole, so never skips a number that commits later.
    let writers: Vec<_> = (0..40)
        .map(|i| {
            let node = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let tenant = TenantId::parse(&format!("t{i}")).unwrap();
                node.set_sso(&tenant, sso(&format!("aud{i}"))).await
            })
        })
        .collect();
    let reader = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut after = 2;
            let mut seen = 0;
            while seen < 40 {
                let read = a.read_log(&[(0, after)], 5).await.expect("read_log");
                let [LogRead::Entries(entries)] = read.as_slice() else {
                    panic!("a hole after {after}: {read:?}");
                };
                for e in entries {
                    assert_eq!(e.seq, after + 1, "visible in sequence order");
                    after = e.seq;
                    seen += 1;
                }
            }
            after
        })
    };
    for w in writers {
        w.await.unwrap().expect("set_sso");
    }
    let head = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the reader sees every entry")
        .unwrap();
    assert_eq!(head, 42);
    let read = b.read_log(&[(0, head)], 10).await.expect("read_log");
    assert_eq!(read, vec![LogRead::Entries(vec![])]);
}

// ---------------------------------------------------------------------------------------
// Migrations, indexes, purges

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_run_twice_or_concurrently_are_harmless() {
    let store = fresh().await;
    let first = store.migrate().await.expect("migrate");
    assert!(first >= 1);
    assert_eq!(store.migrate().await.expect("migrate again"), first);

    // Four nodes starting together on a schema that does not exist yet.
    let schema = unique_schema();
    let mut nodes = Vec::new();
    for _ in 0..4 {
        let opts = PgOptions {
            migrate: false,
            ..options(&schema)
        };
        nodes.push(PgStore::connect(&url(), opts).await.expect("connect"));
    }
    let runs: Vec<_> = nodes
        .iter()
        .map(|n| {
            let n = n.clone();
            tokio::spawn(async move { n.migrate().await })
        })
        .collect();
    for run in runs {
        assert_eq!(run.await.unwrap().expect("concurrent migrate"), first);
    }
    let s = session(NOW, NOW + DAY);
    create(&nodes[0], &s, None).await;
    assert!(
        nodes[3]
            .get_session(&s.tenant_id, &s.id)
            .await
            .expect("get")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counting_active_sessions_visits_only_active_rows() {
    let schema = unique_schema();
    let store = store_in(&schema).await;
    for i in 0..10 {
        create(&store, &session(NOW + i, NOW + DAY), None).await;
    }
    let opts = PgConnectOptions::from_str(&url())
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let mut conn = PgConnection::connect_with(&opts).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO sessions (id, tenant_id, user_id, customer_id, auth_method, created_at,
                               last_seen_at, absolute_expires_at, state, revoke_reason,
                               state_at)
         SELECT 'old-' || i, 'tenant-a', gen_random_uuid(), gen_random_uuid(), 'password',
                1600000000, 1600000000, 1600086400, 'revoked', 'logout', 1600000001
         FROM generate_series(1, 20000) AS i;
         ANALYZE sessions;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(store.count_active_sessions(NOW + 1).await.unwrap(), 10);
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT count(*) FROM sessions WHERE (state = 'active' AND 1700000001 < \
         absolute_expires_at AND (idle_ttl IS NULL OR 1700000001 < last_seen_at + idle_ttl))",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(
        plan.iter().any(|line| line.contains("sessions_active")),
        "the count reads the partial index of active sessions: {plan:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_removes_long_ended_sessions_their_tokens_and_expired_nonces() {
    let schema = unique_schema();
    let store = store_in(&schema).await;
    let (old_token, recent_token) = (token(), token());
    let old = session(NOW - 3 * DAY, NOW - 2 * DAY);
    let recent = session(NOW - DAY, NOW - 3600);
    let active = session(NOW, NOW + DAY);
    create(&store, &old, Some(old_token)).await;
    create(&store, &recent, Some(recent_token)).await;
    create(&store, &active, None).await;
    let t = tenant_a();
    assert!(
        store
            .consume_nonce(&t, "gone", NOW - 10, NOW - 20)
            .await
            .unwrap()
    );
    assert!(
        store
            .consume_nonce(&t, "kept", NOW + 60, NOW - 20)
            .await
            .unwrap()
    );

    // Another node purging: this one does nothing.
    let mut other = admin().await;
    let lock = format!("sessiond:{schema}:purge");
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
        .bind(&lock)
        .execute(&mut other)
        .await
        .unwrap();
    assert_eq!(store.purge_expired(NOW, 100).await.unwrap(), 0);
    sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
        .bind(&lock)
        .execute(&mut other)
        .await
        .unwrap();

    assert_eq!(
        store.purge_expired(NOW, 100).await.unwrap(),
        3,
        "a session, its token and a nonce"
    );
    assert_eq!(store.get_session(&t, &old.id).await.unwrap(), None);
    assert_eq!(store.get_refresh(&old_token).await.unwrap(), None);
    assert!(store.get_session(&t, &recent.id).await.unwrap().is_some());
    assert!(store.get_refresh(&recent_token).await.unwrap().is_some());
    assert!(store.get_session(&t, &active.id).await.unwrap().is_some());
    assert!(
        !store
            .consume_nonce(&t, "kept", NOW + 60, NOW)
            .await
            .unwrap(),
        "an unexpired nonce stays used"
    );
    assert_eq!(store.purge_expired(NOW, 100).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_case_schema_is_quoted_and_isolated() {
    let schema = format!("{}_Mixed", unique_schema());
    let store = store_in(&schema).await;
    let s = session(NOW, NOW + DAY);
    create(&store, &s, None).await;
    assert!(
        store
            .get_session(&s.tenant_id, &s.id)
            .await
            .unwrap()
            .is_some()
    );
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = $1")
        .bind(&schema)
        .fetch_one(&mut admin().await)
        .await
        .unwrap();
    assert!(tables > 10, "the tables are in {schema:?}: {tables}");
    let bad = PgOptions {
        schema: Some("no-dashes; DROP".into()),
        ..options("x")
    };
    assert!(matches!(
        PgStore::connect(&url(), bad).await,
        Err(StoreError::Backend(_))
    ));
}

/// Evictions and user-wide revocations of one user, racing: no error, the limit holds and
/// every revocation is logged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evictions_and_user_revocations_race_without_deadlock() {
    let store = fresh().await;
    let user = uuid::Uuid::new_v4();
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                if i % 5 == 4 {
                    let revoked = store
                        .revoke_user_sessions(
                            &tenant_a(),
                            &user,
                            RevokeReason::Admin,
                            None,
                            NOW,
                            None,
                        )
                        .await?;
                    Ok::<usize, StoreError>(revoked.len())
                } else {
                    let s = Session {
                        user_id: user,
                        ..session(NOW, NOW + DAY)
                    };
                    let new = NewSession {
                        session: s,
                        refresh: None,
                    };
                    let evicted = store
                        .create_session(new, SessionLimit::EvictOldest(2), NOW, None)
                        .await?;
                    Ok(evicted.len())
                }
            })
        })
        .collect();
    let mut ended = 0;
    for t in tasks {
        ended += t.await.unwrap().expect("no deadlock, no error");
    }
    let active = store
        .find_sessions(
            &tenant_a(),
            &sessiond_store::SessionQuery {
                user_id: Some(user),
                state: Some(sessiond_store::StateFilter::Active),
                limit: 100,
                before: None,
            },
            NOW,
        )
        .await
        .unwrap();
    assert!(active.len() <= 2, "{}", active.len());
    let sessions_ended = read_all(&store, 0)
        .await
        .into_iter()
        .filter(|c| matches!(c, Change::SessionEnded { .. }))
        .count();
    assert_eq!(sessions_ended, ended, "one entry per ended session");
}

/// A schema at version 2 (before session events) migrates forward: its clients keep their
/// data and get no back-channel logout URI, and marks work.
#[tokio::test]
async fn a_version_2_schema_keeps_its_clients_without_a_logout_uri() {
    let schema = unique_schema();
    let store = store_in(&schema).await;
    let latest = store.migrate().await.expect("migrate");
    // Back to version 2: what V3 (and V4, V5, V6) added is gone.
    let mut conn = admin().await;
    sqlx::raw_sql(&format!(
        "SET search_path = \"{schema}\";
         ALTER TABLE users DROP COLUMN role;
         ALTER TABLE audit_events DROP COLUMN actor;
         DROP INDEX audit_by_tenant_time;
         DROP INDEX tenants_by_id_c;
         DROP INDEX partner_secrets_by_tenant;
         ALTER TABLE sso_settings DROP COLUMN verify_url;
         ALTER TABLE sso_settings DROP COLUMN sealed_verify_secret;
         ALTER TABLE sessions DROP COLUMN auth_time;
         DROP TABLE sessiond_log_marks;
         DROP INDEX service_clients_by_tenant;
         ALTER TABLE service_clients DROP COLUMN backchannel_logout_uri;
         UPDATE sessiond_schema_version SET version = 2;
         INSERT INTO service_clients (client_id, tenant_id, secret_hash, audience, created_at)
         VALUES ('old', 'tenant-a', decode(repeat('00', 32), 'hex'), 'aud', 1);"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(store.migrate().await.expect("migrate"), latest);
    let client = store
        .get_client("old")
        .await
        .unwrap()
        .expect("the client stays");
    assert_eq!(client.audience, "aud");
    assert_eq!(client.backchannel_logout_uri, None);
    assert_eq!(store.list_clients(&tenant_a()).await.unwrap(), vec![client]);
    assert_eq!(store.load_mark("events").await.unwrap(), None);
    assert_eq!(store.swap_mark("events", None, "b").await.unwrap(), Some(1));
}

/// A schema at version 3 (before re-authentication) migrates forward: its sessions have no
/// `auth_time` stored and read it as their `created_at` — in reads, when re-authenticated,
/// and in the change log when they end — and so do sessions a node of the previous release
/// inserts after the migration.
#[tokio::test]
async fn a_version_3_schema_reads_auth_time_as_created_at() {
    let schema = unique_schema();
    let store = store_in(&schema).await;
    let latest = store.migrate().await.expect("migrate");
    let (a, b, c) = (
        session(NOW, NOW + DAY),
        session(NOW + 1, NOW + DAY),
        session(NOW + 2, NOW + DAY),
    );
    // Back to version 3: what V4 (and V5, V6) added is gone; sessions as a V3 node wrote them.
    let insert = |s: &Session| {
        format!(
            "INSERT INTO sessions (id, tenant_id, user_id, customer_id, auth_method, created_at,
                                   last_seen_at, absolute_expires_at, state)
             VALUES ('{}', 'tenant-a', '{}', '{}', 'password', {}, {}, {}, 'active');",
            s.id.as_str(),
            s.user_id,
            s.customer_id,
            s.created_at,
            s.last_seen_at,
            s.absolute_expires_at
        )
    };
    let mut conn = admin().await;
    sqlx::raw_sql(&format!(
        "SET search_path = \"{schema}\";
         ALTER TABLE users DROP COLUMN role;
         ALTER TABLE audit_events DROP COLUMN actor;
         DROP INDEX audit_by_tenant_time;
         DROP INDEX tenants_by_id_c;
         DROP INDEX partner_secrets_by_tenant;
         ALTER TABLE sso_settings DROP COLUMN verify_url;
         ALTER TABLE sso_settings DROP COLUMN sealed_verify_secret;
         ALTER TABLE sessions DROP COLUMN auth_time;
         UPDATE sessiond_schema_version SET version = 3;
         {}{}",
        insert(&a),
        insert(&b)
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(store.migrate().await.expect("migrate"), latest);
    // A node of the previous release, still running, knows nothing of auth_time.
    sqlx::raw_sql(&format!("SET search_path = \"{schema}\"; {}", insert(&c)))
        .execute(&mut conn)
        .await
        .unwrap();

    let t = tenant_a();
    for s in [&a, &b, &c] {
        let got = store.get_session(&t, &s.id).await.unwrap();
        assert_eq!(got.as_ref(), Some(s), "auth_time is created_at");
    }
    let reauthed = store
        .reauthenticate(&t, &a.id, NOW + 50)
        .await
        .unwrap()
        .expect("active");
    assert_eq!(
        (reauthed.auth_time, reauthed.last_seen_at),
        (NOW + 50, NOW + 50)
    );
    assert_eq!(store.get_session(&t, &a.id).await.unwrap(), Some(reauthed));
    let head = read_all(&store, 0).await.len() as u64;
    for s in [&a, &b] {
        store
            .revoke_session(&t, &s.id, RevokeReason::Admin, NOW + 60, None)
            .await
            .unwrap()
            .expect("revoked");
    }
    let ended = |s: &Session, auth_time| Change::SessionEnded {
        tenant: t.clone(),
        session: s.id.clone(),
        user: s.user_id,
        reason: RevokeReason::Admin,
        auth_time: Some(auth_time),
    };
    assert_eq!(
        read_all(&store, head).await,
        vec![ended(&a, NOW + 50), ended(&b, b.created_at)]
    );
}

/// A schema at version 4 (before verification endpoints) migrates forward: its SSO settings
/// keep what they had and read no verification endpoint or secret, and so do settings a node
/// of the previous release inserts after the migration.
#[tokio::test]
async fn a_version_4_schema_reads_sso_settings_without_a_verify_url() {
    let schema = unique_schema();
    let store = store_in(&schema).await;
    let latest = store.migrate().await.expect("migrate");
    // Back to version 4: what V5 (and V6) added is gone; settings as a V4 node wrote them.
    let insert = |tenant: &str| {
        format!(
            "INSERT INTO sso_settings (tenant_id, issuer, audience, sealed_hs256_secret,
                                       public_key_pem, jwks_url, updated_at)
             VALUES ('{tenant}', 'https://{tenant}.example', 'aud', decode('00ff01', 'hex'),
                     NULL, NULL, {NOW});"
        )
    };
    let mut conn = admin().await;
    sqlx::raw_sql(&format!(
        "SET search_path = \"{schema}\";
         ALTER TABLE users DROP COLUMN role;
         ALTER TABLE audit_events DROP COLUMN actor;
         DROP INDEX audit_by_tenant_time;
         DROP INDEX tenants_by_id_c;
         DROP INDEX partner_secrets_by_tenant;
         ALTER TABLE sso_settings DROP COLUMN verify_url;
         ALTER TABLE sso_settings DROP COLUMN sealed_verify_secret;
         UPDATE sessiond_schema_version SET version = 4;
         {}",
        insert("tenant-a")
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(store.migrate().await.expect("migrate"), latest);
    // A node of the previous release, still running, knows nothing of the new columns.
    sqlx::raw_sql(&format!(
        "SET search_path = \"{schema}\"; {}",
        insert("tenant-b")
    ))
    .execute(&mut conn)
    .await
    .unwrap();

    for t in ["tenant-a", "tenant-b"] {
        let got = store
            .get_sso(&TenantId::parse(t).unwrap())
            .await
            .unwrap()
            .expect("the settings stay");
        let kept = SsoSettings {
            issuer: Some(format!("https://{t}.example")),
            audience: "aud".into(),
            sealed_hs256_secret: Some(vec![0x00, 0xff, 0x01]),
            ..sso("aud")
        };
        assert_eq!(got.sealed_hs256_secret, kept.sealed_hs256_secret);
        assert_eq!(got, kept);
    }
    let replaced = SsoSettings {
        verify_url: Some("https://tenant-a.example/verify".into()),
        sealed_verify_secret: Some(vec![0x00, 0xff]),
        ..sso("aud")
    };
    store.set_sso(&tenant_a(), replaced.clone()).await.unwrap();
    let got = store.get_sso(&tenant_a()).await.unwrap();
    assert_eq!(
        got.as_ref().and_then(|s| s.sealed_verify_secret.clone()),
        Some(vec![0x00, 0xff])
    );
    assert_eq!(got, Some(replaced));
}

/// A schema at version 5 (before operators) migrates forward: its users read no role and its
/// audit events no actor, and so do the users and events a node of the previous release
/// inserts after the migration; a role is then set and an unknown one refused.
#[tokio::test]
async fn a_version_5_schema_reads_users_without_a_role() {
    let schema = unique_schema();
    let store = store_in(&schema).await;
    let latest = store.migrate().await.expect("migrate");
    let (old, new) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    // Back to version 5: what V6 added is gone; users and events as a V5 node wrote them.
    let insert = |id: uuid::Uuid, name: &str| {
        format!(
            "INSERT INTO users (tenant_id, id, customer_id, username, status, created_at)
             VALUES ('tenant-a', '{id}', '{id}', '{name}', 'active', {NOW});
             INSERT INTO audit_events (tenant_id, kind, activity_id, at)
             VALUES ('tenant-a', 'login_succeeded', '{name}', {NOW});"
        )
    };
    let mut conn = admin().await;
    sqlx::raw_sql(&format!(
        "SET search_path = \"{schema}\";
         ALTER TABLE users DROP COLUMN role;
         ALTER TABLE audit_events DROP COLUMN actor;
         DROP INDEX audit_by_tenant_time;
         DROP INDEX tenants_by_id_c;
         DROP INDEX partner_secrets_by_tenant;
         UPDATE sessiond_schema_version SET version = 5;
         {}",
        insert(old, "old")
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(store.migrate().await.expect("migrate"), latest);
    // A node of the previous release, still running, knows nothing of roles and actors.
    sqlx::raw_sql(&format!(
        "SET search_path = \"{schema}\"; {}",
        insert(new, "new")
    ))
    .execute(&mut conn)
    .await
    .unwrap();

    let t = tenant_a();
    for id in [old, new] {
        let user = store.get_user(&t, &id).await.unwrap().expect("the user");
        assert_eq!(user.role, None);
    }
    let events = store
        .find_audit(
            &t,
            &sessiond_store::AuditQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.actor.is_none()));
    assert!(
        store
            .set_user_role(&t, &old, Some(sessiond_store::Role::Admin))
            .await
            .unwrap()
    );
    let user = store.get_user(&t, &old).await.unwrap().expect("the user");
    assert_eq!(user.role, Some(sessiond_store::Role::Admin));
    // A role this version does not know is an error, not a guess.
    sqlx::raw_sql(&format!(
        "SET search_path = \"{schema}\"; UPDATE users SET role = 'owner' WHERE id = '{old}';"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    assert!(matches!(
        store.get_user(&t, &old).await,
        Err(StoreError::Backend(_))
    ));
}

/// Without `migrate`, a schema that was never migrated is refused with what to do.
#[tokio::test]
async fn an_unmigrated_schema_is_refused_with_what_to_do() {
    drop_stale_schemas().await;
    let schema = unique_schema();
    let unmigrated = PgOptions {
        migrate: false,
        ..options(&schema)
    };
    let store = PgStore::connect(&url(), unmigrated.clone()).await.unwrap();
    let err = store
        .check_migrated()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("sessiond migrate"), "{err}");
    // Once migrated, it passes.
    store_in(&schema).await;
    store.check_migrated().await.unwrap();
}

/// An unreachable server is reported with its address and the cause.
#[tokio::test]
async fn an_unreachable_server_is_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = PgStore::connect(
        &format!("postgres://postgres@127.0.0.1:{port}/test"),
        options("sessiond_t_unreachable"),
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("unavailable"), "{err}");
}

/// Audit appends that arrive together commit together (group commit): 64 concurrent appends
/// of two events each are all stored, each append's events next to each other and in their
/// order, in far fewer transactions than appends (rows written by one transaction share its
/// `xmin`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_audit_appends_commit_in_batches() {
    let schema = unique_schema();
    let store = store_in(&schema).await;
    let event = |n: usize, second: bool| sessiond_store::AuditEvent {
        id: 0,
        kind: sessiond_store::AuditKind::LoginFailed,
        tenant_id: tenant_a(),
        user_id: None,
        session_id: None,
        activity_id: format!("append-{n}"),
        correlation_id: None,
        ip: None,
        user_agent: None,
        reason: Some(if second { "second" } else { "first" }.into()),
        at: NOW,
        actor: None,
    };
    let appends: Vec<_> = (0..64)
        .map(|n| {
            let store = store.clone();
            let events = vec![event(n, false), event(n, true)];
            tokio::spawn(async move { store.append_audit(events).await })
        })
        .collect();
    for a in appends {
        a.await.unwrap().expect("append");
    }
    let mut conn = admin().await;
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(&format!(
        "SELECT id, activity_id, reason, xmin::text FROM \"{schema}\".audit_events ORDER BY id"
    ))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 128, "every event is stored");
    for pair in rows.chunks(2) {
        assert_eq!(pair[0].1, pair[1].1, "one append's events are adjacent");
        assert_eq!(
            (pair[0].2.as_str(), pair[1].2.as_str()),
            ("first", "second")
        );
    }
    let transactions: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.3.as_str()).collect();
    assert!(
        transactions.len() <= 32,
        "64 concurrent appends took {} transactions",
        transactions.len()
    );
}
