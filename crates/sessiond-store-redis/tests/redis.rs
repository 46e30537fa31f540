//! What only Redis shows: outages and recovery, pub/sub hints (also across Cluster nodes),
//! tenant listings spread over many slots, and the memory a session takes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sessiond_store::{
    AuthMethod, ChangeLog, DeviceInfo, LogRead, NewRefreshToken, NewSession, RevokeReason,
    RotateOutcome, Rotation, Route, Session, SessionCursor, SessionId, SessionLimit, SessionQuery,
    SessionState, SessionStore, StateFilter, StoreError, TenantId, TokenHash,
};
use sessiond_store_redis::testing::{RedisCluster, RedisServer};
use sessiond_store_redis::{RedisOptions, RedisStore};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const NOW: i64 = 1_700_000_000;
const DAY: i64 = 86_400;

fn prefix() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "sdx:{}:{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn standalone_url() -> String {
    let url = std::env::var("SESSIOND_TEST_REDIS")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| sessiond_store_redis::testing::remove_keys_of_dead_processes(&url, "sdx"));
    url
}

async fn cluster_url() -> String {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    tokio::task::spawn_blocking(|| CLUSTER.get_or_init(|| RedisCluster::start(3)).url())
        .await
        .unwrap()
}

async fn open(url: &str, prefix: &str) -> RedisStore {
    let opts = RedisOptions {
        prefix: prefix.to_owned(),
        ..RedisOptions::default()
    };
    RedisStore::connect(url, opts).await.unwrap()
}

fn tenant() -> TenantId {
    TenantId::parse("tenant-x").unwrap()
}

fn session(user: uuid::Uuid, created_at: i64) -> Session {
    let mut random = [0u8; 15];
    random.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..15]);
    Session {
        id: SessionId::generate(Route::of_user(&user), random),
        tenant_id: tenant(),
        user_id: user,
        customer_id: uuid::Uuid::new_v4(),
        auth_method: AuthMethod::Password,
        created_at,
        auth_time: created_at,
        last_seen_at: created_at,
        absolute_expires_at: created_at + DAY,
        idle_ttl: Some(1800),
        device: DeviceInfo {
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0".into()),
            ip: Some("203.0.113.9".into()),
            label: None,
        },
        state: SessionState::Active,
    }
}

fn token(route: Route) -> TokenHash {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    b[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    TokenHash::routed(b, route)
}

async fn create(store: &RedisStore, s: &Session) {
    let new = NewSession {
        session: s.clone(),
        refresh: Some(NewRefreshToken {
            hash: token(s.id.route()),
            expires_at: s.created_at + DAY,
        }),
    };
    store
        .create_session(new, SessionLimit::Unlimited, s.created_at, None)
        .await
        .unwrap();
}

/// Keeps calling until the call succeeds; panics after `within`.
async fn until_ok<T, F, Fut>(within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let started = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if started.elapsed() < within => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("still failing after {within:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_unavailable_quickly_and_the_store_recovers() {
    let mut server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let store = open(&server.url(), &prefix()).await;
    let s = session(uuid::Uuid::new_v4(), NOW);
    create(&store, &s).await;

    let mut server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let got = store.get_session(&tenant(), &s.id).await;
        assert!(
            matches!(got, Err(StoreError::Unavailable(_))),
            "a stopped server is unavailable: {got:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
        let started = Instant::now();
        let pinged = store.ping().await;
        assert!(
            matches!(pinged, Err(StoreError::Unavailable(_))),
            "{pinged:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(6));
    }
    let started = Instant::now();
    assert_eq!(
        store.wait_hint(Duration::from_millis(300)).await,
        Vec::<usize>::new()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "wait_hint keeps its deadline"
    );

    // Nothing answers at all: connecting fails, and says so.
    let started = Instant::now();
    let refused = RedisStore::connect(&server.url(), RedisOptions::default()).await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{:?}",
        refused.err()
    );
    assert!(started.elapsed() < Duration::from_secs(6));
    let cluster_url = format!("redis-cluster://127.0.0.1:{}", server.port());
    let refused = RedisStore::connect(&cluster_url, RedisOptions::default()).await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{:?}",
        refused.err()
    );
    assert!(started.elapsed() < Duration::from_secs(12));

    let server = tokio::task::spawn_blocking(move || {
        server.start_again();
        server
    })
    .await
    .unwrap();
    // The same store, no reconnect code: it comes back by itself (the data is gone: the
    // restarted server is empty).
    until_ok(Duration::from_secs(10), || store.ping()).await;
    let again = session(uuid::Uuid::new_v4(), NOW);
    create(&store, &again).await;
    assert_eq!(
        store.get_session(&tenant(), &again.id).await.unwrap(),
        Some(again)
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_times_out_and_the_store_recovers() {
    let server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let opts = RedisOptions {
        prefix: prefix(),
        response_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
    };
    let store = RedisStore::connect(&server.url(), opts).await.unwrap();
    let s = session(uuid::Uuid::new_v4(), NOW);
    create(&store, &s).await;
    let info = std::process::Command::new("redis-cli")
        .args(["-p", &server.port().to_string(), "INFO", "server"])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&info.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("process_id:").map(|p| p.trim().to_owned()))
        .unwrap();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };

    signal("-STOP");
    for _ in 0..3 {
        let started = Instant::now();
        let got = store.get_session(&tenant(), &s.id).await;
        let took = started.elapsed();
        assert!(matches!(got, Err(StoreError::Unavailable(_))), "{got:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    signal("-CONT");
    let t = tenant();
    let got = until_ok(Duration::from_secs(10), || store.get_session(&t, &s.id)).await;
    assert_eq!(got, Some(s));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_outage_is_unavailable_and_the_store_recovers() {
    let mut cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3))
        .await
        .unwrap();
    let prefix = prefix();
    let (store, waiter) = (
        open(&cluster.url(), &prefix).await,
        open(&cluster.url(), &prefix).await,
    );
    // The waiter subscribes on the first node, the one that goes down.
    assert_eq!(
        waiter.wait_hint(Duration::from_millis(100)).await,
        Vec::<usize>::new()
    );
    let sessions: Vec<Session> = (0..24)
        .map(|_| session(uuid::Uuid::new_v4(), NOW))
        .collect();
    for s in &sessions {
        create(&store, s).await;
    }

    let mut cluster = tokio::task::spawn_blocking(move || {
        cluster.stop_node(0);
        cluster
    })
    .await
    .unwrap();
    let mut unavailable = 0;
    for s in &sessions {
        let started = Instant::now();
        match store.get_session(&tenant(), &s.id).await {
            Err(StoreError::Unavailable(_)) => unavailable += 1,
            Ok(Some(_)) => {}
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(unavailable > 0, "some sessions were on the stopped node");
    let started = Instant::now();
    waiter.wait_hint(Duration::from_millis(500)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "wait_hint keeps its deadline"
    );

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_node(0);
        cluster
    })
    .await
    .unwrap();
    // The same stores, no reconnect code: every slot answers again (the restarted node is
    // empty), and hints flow again.
    let t = tenant();
    for s in &sessions {
        until_ok(Duration::from_secs(20), || store.get_session(&t, &s.id)).await;
    }
    for _ in 0..8 {
        let s = session(uuid::Uuid::new_v4(), NOW);
        until_ok(Duration::from_secs(10), || {
            store.create_session(
                NewSession {
                    session: s.clone(),
                    refresh: None,
                },
                SessionLimit::Unlimited,
                NOW,
                None,
            )
        })
        .await;
        let route = s.id.route().index();
        let task = tokio::spawn({
            let waiter = waiter.clone();
            async move { hinted(&waiter, route).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        store
            .revoke_session(&tenant(), &s.id, RevokeReason::Logout, NOW + 1, None)
            .await
            .unwrap()
            .unwrap();
        assert!(
            task.await.unwrap(),
            "route {route} was hinted after the outage"
        );
    }
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

/// Waits for a hint naming `route` (other routes may be hinted too).
async fn hinted(store: &RedisStore, route: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if store
            .wait_hint(Duration::from_secs(1))
            .await
            .contains(&route)
        {
            return true;
        }
    }
    false
}

async fn hints_reach_another_store(url: &str) {
    let prefix = prefix();
    let (waiter, writer) = (open(url, &prefix).await, open(url, &prefix).await);
    // Subscribes (nothing is hinted yet).
    assert_eq!(
        waiter.wait_hint(Duration::from_millis(100)).await,
        Vec::<usize>::new()
    );

    // Users on several routes: on a Cluster, several nodes publish.
    for _ in 0..8 {
        let s = session(uuid::Uuid::new_v4(), NOW);
        create(&writer, &s).await;
        let route = s.id.route().index();
        let task = tokio::spawn({
            let waiter = waiter.clone();
            async move { hinted(&waiter, route).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer
            .revoke_session(&tenant(), &s.id, RevokeReason::Logout, NOW + 1, None)
            .await
            .unwrap()
            .unwrap();
        assert!(task.await.unwrap(), "route {route} was hinted");
    }
    // Another prefix hears nothing.
    let other = open(url, &self::prefix()).await;
    assert_eq!(
        other.wait_hint(Duration::from_millis(100)).await,
        Vec::<usize>::new()
    );
    let s = session(uuid::Uuid::new_v4(), NOW);
    create(&writer, &s).await;
    writer
        .revoke_session(&tenant(), &s.id, RevokeReason::Logout, NOW + 1, None)
        .await
        .unwrap();
    assert_eq!(
        other.wait_hint(Duration::from_millis(300)).await,
        Vec::<usize>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_reach_another_store_standalone() {
    hints_reach_another_store(&standalone_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_reach_another_store_across_cluster_nodes() {
    hints_reach_another_store(&cluster_url().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_listing_spans_the_cluster_and_drops_what_expired() {
    let url = cluster_url().await;
    let prefix = prefix();
    let store = open(&url, &prefix).await;
    let users: Vec<uuid::Uuid> = (0..60).map(|_| uuid::Uuid::new_v4()).collect();
    let mut all = Vec::new();
    for (i, u) in users.iter().enumerate() {
        // Many sessions share a creation second: ties are ordered by creation, newest first.
        for k in 0..5 {
            let s = session(*u, NOW + (i as i64 / 3) * 10 + k / 2);
            create(&store, &s).await;
            all.push(s);
        }
    }
    let mut newest_first: Vec<Session> = all.iter().rev().cloned().collect();
    newest_first.sort_by_key(|s| std::cmp::Reverse(s.created_at)); // stable: keeps the ties
    let expected: Vec<SessionId> = newest_first.iter().map(|s| s.id.clone()).collect();
    let find = |limit: usize, state: Option<StateFilter>| {
        let store = store.clone();
        async move {
            let q = SessionQuery {
                user_id: None,
                state,
                limit,
                before: None,
            };
            let found = store.find_sessions(&tenant(), &q, NOW + 60).await.unwrap();
            found.into_iter().map(|s| s.id).collect::<Vec<_>>()
        }
    };
    for limit in [1, 7, 255, 256, 257, 299, 300, 1000] {
        assert_eq!(
            find(limit, None).await,
            expected[..limit.min(expected.len())],
            "limit {limit}"
        );
    }
    assert_eq!(store.count_active_sessions(NOW + 60).await.unwrap(), 300);

    // Revoke every other session: the filter pages through the whole index.
    for s in newest_first.iter().step_by(2) {
        store
            .revoke_session(&tenant(), &s.id, RevokeReason::Admin, NOW + 61, None)
            .await
            .unwrap()
            .unwrap();
    }
    let revoked: Vec<SessionId> = expected.iter().step_by(2).cloned().collect();
    assert_eq!(find(1000, Some(StateFilter::Revoked)).await, revoked);
    assert_eq!(find(3, Some(StateFilter::Revoked)).await, revoked[..3]);
    assert_eq!(store.count_active_sessions(NOW + 62).await.unwrap(), 150);

    // Sessions whose keys expired (deleted here) vanish from listings, counts and the index.
    let client = redis::cluster::ClusterClient::new(
        url.trim_start_matches("redis-cluster://")
            .split(',')
            .map(|n| format!("redis://{n}"))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    let gone: Vec<&Session> = newest_first.iter().take(10).collect();
    for s in &gone {
        let key = format!("{prefix}{{r{}}}:s:{}", s.id.route().0, s.id);
        let n: i64 = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 1, "{key}");
    }
    assert_eq!(find(1000, None).await, expected[10..]);
    assert_eq!(store.count_active_sessions(NOW + 62).await.unwrap(), 145);
    let index = format!("{prefix}{{t:{}}}:sessions", tenant());
    let zcard = |conn: &mut redis::cluster_async::ClusterConnection| {
        let index = index.clone();
        let mut conn = conn.clone();
        async move {
            redis::cmd("ZCARD")
                .arg(&index)
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        zcard(&mut conn).await,
        300,
        "young members are kept: their create may be in flight"
    );
    // Past the grace period a read prunes them.
    store.count_active_sessions(NOW + 1_000).await.unwrap();
    assert_eq!(zcard(&mut conn).await, 290, "the gone members were pruned");

    // A user's own listing reads the user's index, on one slot.
    let u = users[59];
    let q = SessionQuery {
        user_id: Some(u),
        state: None,
        limit: 100,
        before: None,
    };
    let mine: Vec<SessionId> = store
        .find_sessions(&tenant(), &q, NOW + 60)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let want: Vec<SessionId> = newest_first
        .iter()
        .skip(10)
        .filter(|s| s.user_id == u)
        .map(|s| s.id.clone())
        .collect();
    assert_eq!(mine, want);
}

/// Runs `cmd` on the server, or the Cluster, at `url`.
async fn raw<T: redis::FromRedisValue>(url: &str, cmd: &redis::Cmd) -> T {
    match url.strip_prefix("redis-cluster://") {
        Some(nodes) => {
            let nodes: Vec<String> = nodes.split(',').map(|n| format!("redis://{n}")).collect();
            let client = redis::cluster::ClusterClient::new(nodes).unwrap();
            let mut conn = client.get_async_connection().await.unwrap();
            cmd.query_async(&mut conn).await.unwrap()
        }
        None => {
            let client = redis::Client::open(url).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            cmd.query_async(&mut conn).await.unwrap()
        }
    }
}

/// Takes `s` out of its tenant's and its user's indexes and deletes its record: gone as if
/// pruned after its keys expired.
async fn unindex(url: &str, prefix: &str, s: &Session) {
    let route = s.id.route().0;
    let tenant_index = format!("{prefix}{{t:{}}}:sessions", s.tenant_id);
    let user_index = format!("{prefix}{{r{route}}}:u:{}:{}", s.tenant_id, s.user_id);
    for index in [tenant_index, user_index] {
        let n: i64 = raw(url, redis::cmd("ZREM").arg(&index).arg(s.id.as_str())).await;
        assert_eq!(n, 1, "{index} had {}", s.id);
    }
    let record = format!("{prefix}{{r{route}}}:s:{}", s.id);
    let n: i64 = raw(url, redis::cmd("DEL").arg(&record)).await;
    assert_eq!(n, 1, "{record}");
}

async fn a_cursor_that_left_the_index_goes_on_with_older_sessions(url: &str) {
    let prefix = prefix();
    let store = open(url, &prefix).await;
    let users: Vec<uuid::Uuid> = (0..2).map(|_| uuid::Uuid::new_v4()).collect();
    // Four sessions a second over four seconds, of both users.
    let mut all = Vec::new();
    for second in 0..4 {
        for k in 0..4 {
            let s = session(users[k % 2], NOW + second);
            create(&store, &s).await;
            all.push(s);
        }
    }
    let mut newest_first: Vec<Session> = all.iter().rev().cloned().collect();
    newest_first.sort_by_key(|s| std::cmp::Reverse(s.created_at)); // stable: keeps the ties
    let ids = |found: Vec<Session>| found.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let page = |user_id: Option<uuid::Uuid>, before: Option<&Session>, limit: usize| {
        let store = store.clone();
        let q = SessionQuery {
            user_id,
            state: None,
            limit,
            before: before.map(|s| SessionCursor {
                created_at: s.created_at,
                id: s.id.clone(),
            }),
        };
        async move { store.find_sessions(&tenant(), &q, NOW + 60).await.unwrap() }
    };
    let expected = |sessions: &[Session]| sessions.iter().map(|s| s.id.clone()).collect::<Vec<_>>();

    // The tenant's listing: a page ends in the middle of a second (NOW + 2).
    assert_eq!(ids(page(None, None, 6).await), expected(&newest_first[..6]));
    let cursor = &newest_first[5];
    assert_eq!(cursor.created_at, NOW + 2);
    // Still a member: the next page starts right after it, in the same second.
    assert_eq!(
        ids(page(None, Some(cursor), 3).await),
        expected(&newest_first[6..9])
    );
    // Gone from the index: the next page goes on with the sessions created before its
    // second, never again with one of the first page.
    unindex(url, &prefix, cursor).await;
    let next = page(None, Some(cursor), 6).await;
    assert_eq!(ids(next.clone()), expected(&newest_first[8..14]));
    assert!(next.iter().all(|s| s.created_at < cursor.created_at));

    // A user's listing, paged by three, its cursor unindexed before every next page: each
    // page is older than the cursor's second, and no session is listed twice.
    let user = users[1];
    let mine: Vec<Session> = newest_first
        .iter()
        .filter(|s| s.user_id == user)
        .cloned()
        .collect();
    assert_eq!(mine.len(), 8, "two a second");
    let mut listed: Vec<SessionId> = Vec::new();
    let mut before: Option<Session> = None;
    for _ in 0..10 {
        let found = page(Some(user), before.as_ref(), 3).await;
        let Some(last) = found.last().cloned() else {
            break;
        };
        if let Some(b) = &before {
            assert!(
                found.iter().all(|s| s.created_at < b.created_at),
                "{found:?}"
            );
        }
        for s in &found {
            assert!(!listed.contains(&s.id), "{} listed twice", s.id);
            listed.push(s.id.clone());
        }
        unindex(url, &prefix, &last).await;
        before = Some(last);
    }
    // The rest of each cursor's second is skipped: NOW + 3, NOW + 3, NOW + 2 | NOW + 1,
    // NOW + 1, NOW | nothing before NOW.
    let order: Vec<usize> = listed
        .iter()
        .map(|id| mine.iter().position(|s| &s.id == id).unwrap())
        .collect();
    assert_eq!(order, [0, 1, 2, 4, 5, 6]);
    assert!(page(Some(user), before.as_ref(), 10).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_that_left_the_index_goes_on_with_older_sessions_standalone() {
    a_cursor_that_left_the_index_goes_on_with_older_sessions(&standalone_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_that_left_the_index_goes_on_with_older_sessions_on_a_cluster() {
    a_cursor_that_left_the_index_goes_on_with_older_sessions(&cluster_url().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_log_members_are_what_serde_reads() {
    let store = open(&standalone_url(), &prefix()).await;
    let s = session(uuid::Uuid::new_v4(), NOW);
    create(&store, &s).await;
    let route = s.id.route().index();
    store
        .revoke_session(&tenant(), &s.id, RevokeReason::PartnerLogout, NOW + 1, None)
        .await
        .unwrap()
        .unwrap();
    let read = store.read_log(&[(route, 0)], 10).await.unwrap();
    let LogRead::Entries(entries) = &read[0] else {
        panic!("{read:?}");
    };
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].seq, 1);
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((entries[0].at - at).abs() < 5, "`at` is the server's clock");
    assert_eq!(
        entries[0].change,
        sessiond_store::Change::SessionEnded {
            tenant: tenant(),
            session: s.id.clone(),
            user: s.user_id,
            reason: RevokeReason::PartnerLogout,
            auth_time: Some(s.auth_time),
        }
    );
    // A cursor past the head (say, the server lost its data) cannot resume.
    assert_eq!(
        store.read_log(&[(route, 5)], 10).await.unwrap(),
        vec![LogRead::Gone { head: 1 }]
    );
    assert!(store.read_log(&[(256, 0)], 10).await.is_err());
}

/// A session record written before `auth_time` was stored (no `au` field) reads it as its
/// `created_at`: in reads, when re-authenticated, and in the change log when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_from_before_auth_time_reads_it_as_created_at() {
    let url = standalone_url();
    let prefix = prefix();
    let store = open(&url, &prefix).await;
    let user = uuid::Uuid::new_v4();
    let (a, b) = (session(user, NOW), session(user, NOW + 1));
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let route = a.id.route().0;
    for s in [&a, &b] {
        create(&store, s).await;
        let removed: i64 = redis::cmd("HDEL")
            .arg(format!("{prefix}{{r{route}}}:s:{}", s.id))
            .arg("au")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(removed, 1, "the record had an auth_time");
        assert_eq!(
            store.get_session(&tenant(), &s.id).await.unwrap().as_ref(),
            Some(s)
        );
    }

    let reauthed = store
        .reauthenticate(&tenant(), &a.id, NOW + 50)
        .await
        .unwrap()
        .expect("active");
    assert_eq!(
        (reauthed.auth_time, reauthed.last_seen_at),
        (NOW + 50, NOW + 50)
    );
    assert_eq!(
        store.get_session(&tenant(), &a.id).await.unwrap(),
        Some(reauthed)
    );
    for s in [&a, &b] {
        store
            .revoke_session(&tenant(), &s.id, RevokeReason::Logout, NOW + 60, None)
            .await
            .unwrap()
            .expect("revoked");
    }
    let read = store
        .read_log(&[(a.id.route().index(), 0)], 10)
        .await
        .unwrap();
    let LogRead::Entries(entries) = &read[0] else {
        panic!("{read:?}");
    };
    let auth_times: Vec<_> = entries
        .iter()
        .map(|e| match &e.change {
            sessiond_store::Change::SessionEnded {
                session, auth_time, ..
            } => (session.clone(), *auth_time),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        auth_times,
        vec![
            (a.id.clone(), Some(NOW + 50)),
            (b.id.clone(), Some(b.created_at))
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_mismatches_are_caller_bugs() {
    let store = open(&standalone_url(), &prefix()).await;
    let user = uuid::Uuid::new_v4();
    let mut s = session(user, NOW);
    s.id = SessionId::generate(Route(Route::of_user(&user).0.wrapping_add(1)), [5; 15]);
    let got = store
        .create_session(
            NewSession {
                session: s,
                refresh: None,
            },
            SessionLimit::Unlimited,
            NOW,
            None,
        )
        .await;
    assert!(matches!(got, Err(StoreError::Backend(_))), "{got:?}");
    assert!(
        RedisStore::connect(
            &standalone_url(),
            RedisOptions {
                prefix: "a{b}:".into(),
                ..RedisOptions::default()
            }
        )
        .await
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_per_session() {
    let url = standalone_url();
    let prefix = prefix();
    let store = open(&url, &prefix).await;
    let s = session(uuid::Uuid::new_v4(), NOW);
    let hash = token(s.id.route());
    store
        .create_session(
            NewSession {
                session: s.clone(),
                refresh: Some(NewRefreshToken {
                    hash,
                    expires_at: NOW + DAY,
                }),
            },
            SessionLimit::EvictOldest(5),
            NOW,
            None,
        )
        .await
        .unwrap();
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let route = s.id.route().0;
    let hex: String = hash.0.iter().map(|b| format!("{b:02x}")).collect();
    let mut total = 0;
    for key in [
        format!("{prefix}{{r{route}}}:s:{}", s.id),
        format!("{prefix}{{r{route}}}:rt:{hex}"),
        format!("{prefix}{{r{route}}}:u:{}:{}", tenant(), s.user_id),
    ] {
        let bytes: i64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut conn)
            .await
            .unwrap();
        println!("{key}: {bytes} bytes");
        total += bytes;
    }
    println!("one session with its refresh token and user index: {total} bytes");
    assert!(total < 2_048, "{total}");

    // What a session adds to its tenant's index.
    let index = format!("{prefix}{{t:{}}}:sessions", tenant());
    let usage = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        let index = index.clone();
        async move {
            redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&index)
                .arg("SAMPLES")
                .arg(0)
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
        }
    };
    let before = usage(&mut conn).await;
    for _ in 0..500 {
        create(&store, &session(uuid::Uuid::new_v4(), NOW)).await;
    }
    let per_member = (usage(&mut conn).await - before) / 500;
    println!("tenant index: {per_member} bytes per session");
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}{{r{route}}}:s:{}", s.id))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (2 * DAY - 5..=2 * DAY).contains(&ttl),
        "kept a day past its expiry: {ttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_every_partition_takes_one_round() {
    for url in [standalone_url(), cluster_url().await] {
        let store = open(&url, &prefix()).await;
        let cursors: Vec<(usize, u64)> = (0..store.partitions()).map(|p| (p, 0)).collect();
        store.read_log(&cursors, 100).await.unwrap();
        let started = Instant::now();
        for _ in 0..10 {
            let reads = store.read_log(&cursors, 100).await.unwrap();
            assert_eq!(reads.len(), 256);
        }
        println!(
            "{url}: read_log of 256 partitions: {:?}",
            started.elapsed() / 10
        );
    }
}

/// The cluster client re-sends a script whose connection broke before the answer came back
/// (its retries). A re-sent create or rotation must answer as the first one did: not a
/// conflict, and not reuse detection revoking the user's own session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_create_or_rotation_answers_as_the_first() {
    let store = open(&standalone_url(), &prefix()).await;
    let user = uuid::Uuid::new_v4();
    let s = session(user, NOW);
    let t0 = token(s.id.route());
    let new = NewSession {
        session: s.clone(),
        refresh: Some(NewRefreshToken {
            hash: t0,
            expires_at: NOW + DAY,
        }),
    };
    for _ in 0..2 {
        let evicted = store
            .create_session(new.clone(), SessionLimit::EvictOldest(1), NOW, None)
            .await
            .unwrap();
        assert!(evicted.is_empty());
    }
    let other = Session {
        user_id: user,
        ..session(user, NOW + 1)
    };
    let clash = NewSession {
        session: Session {
            id: s.id.clone(),
            ..other
        },
        refresh: None,
    };
    assert!(
        matches!(
            store
                .create_session(clash, SessionLimit::Unlimited, NOW + 1, None)
                .await,
            Err(StoreError::Conflict)
        ),
        "another session with a taken id is still a conflict"
    );
    let rotation = Rotation {
        tenant_id: tenant(),
        presented: t0,
        successor: NewRefreshToken {
            hash: token(s.id.route()),
            expires_at: NOW + DAY,
        },
        sealed_successor: b"sealed".to_vec(),
        grace_seconds: 0,
        now: NOW + 5,
    };
    for _ in 0..2 {
        assert!(matches!(
            store.rotate_refresh(rotation.clone(), None).await.unwrap(),
            RotateOutcome::Rotated { .. }
        ));
    }
    let mut stolen = rotation.clone();
    stolen.successor.hash = token(s.id.route());
    assert!(
        matches!(
            store.rotate_refresh(stolen, None).await.unwrap(),
            RotateOutcome::Reused { revoked: true, .. }
        ),
        "another request with a rotated token is still reuse"
    );
}

/// Redis keeps no audit trail: a write handed audit events to commit is refused before it
/// writes anything, rather than losing them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_handed_audit_events_are_refused_and_write_nothing() {
    let store = open(&standalone_url(), &prefix()).await;
    let s = session(uuid::Uuid::new_v4(), NOW);
    let audit: sessiond_store::AuditWith<[SessionId]> = Some(std::sync::Arc::new(|_| Vec::new()));
    let refused = store
        .create_session(
            NewSession {
                session: s.clone(),
                refresh: None,
            },
            SessionLimit::Unlimited,
            NOW,
            audit,
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Backend(_))),
        "{refused:?}"
    );
    assert_eq!(store.get_session(&tenant(), &s.id).await.unwrap(), None);

    create(&store, &s).await;
    let audit: sessiond_store::AuditWith<[Session]> = Some(std::sync::Arc::new(|_| Vec::new()));
    let refused = store
        .revoke_session(&tenant(), &s.id, RevokeReason::Logout, NOW + 1, audit)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Backend(_))),
        "{refused:?}"
    );
    let kept = store.get_session(&tenant(), &s.id).await.unwrap().unwrap();
    assert_eq!(kept.state, SessionState::Active);
}

/// A login without a session limit looks at a few of the user's index members (the oldest
/// four, four at random), not at all of them: its cost does not grow with the user's sessions
/// (a script blocks all of Redis while it runs). The index still sheds members whose record is
/// gone: the oldest at once, the others over the following logins; a create under a limit,
/// which must count, prunes them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_without_a_limit_does_not_scan_the_users_sessions() {
    let url = standalone_url();
    let prefix = prefix();
    let store = open(&url, &prefix).await;
    let user = uuid::Uuid::new_v4();
    let sessions: Vec<Session> = (0..400).map(|i| session(user, NOW + i)).collect();
    for s in &sessions {
        create(&store, s).await;
    }
    let route = sessions[0].id.route().0;
    let index = format!("{prefix}{{r{route}}}:u:{}:{user}", tenant());
    // Records gone (as if expired): the two oldest and 100 in the middle.
    let middle = &sessions[100..200];
    for s in sessions[..2].iter().chain(middle) {
        let key = format!("{prefix}{{r{route}}}:s:{}", s.id);
        let n: i64 = raw(&url, redis::cmd("DEL").arg(&key)).await;
        assert_eq!(n, 1);
    }
    let members = || async {
        raw::<Vec<String>>(&url, redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1)).await
    };
    let gone_in_middle = |left: &[String]| {
        middle
            .iter()
            .filter(|s| left.contains(&s.id.as_str().to_owned()))
            .count()
    };
    let mut at = NOW + 1_000;
    create(&store, &session(user, at)).await;
    let left = members().await;
    for s in &sessions[..2] {
        assert!(
            !left.contains(&s.id.as_str().to_owned()),
            "the gone oldest are pruned"
        );
    }
    assert!(
        gone_in_middle(&left) >= 96,
        "one create looks at four members at random, not at all of them: {} of 100 left",
        gone_in_middle(&left)
    );
    // Over the next logins the random picks find the others (about 0.9% of them a login).
    for _ in 0..300 {
        at += 1;
        create(&store, &session(user, at)).await;
    }
    let left = gone_in_middle(&members().await);
    assert!(left <= 40, "{left} of 100 gone members still indexed");

    // Under a limit every member is looked at: all the gone ones go.
    let new = NewSession {
        session: session(user, at + 1),
        refresh: None,
    };
    store
        .create_session(new, SessionLimit::EvictOldest(10_000), at + 1, None)
        .await
        .unwrap();
    assert_eq!(gone_in_middle(&members().await), 0);
    assert_eq!(members().await.len(), 400 - 102 + 302);
}
