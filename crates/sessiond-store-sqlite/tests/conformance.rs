//! The SQLite store against the conformance suite, plus what only a file-backed store can
//! show: durability across reopening and a crash, and group commit under load.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sessiond_store::{
    AuditEvent, AuditKind, AuditQuery, Change, ChangeLog, DeviceInfo, IdentityStore, LogRead,
    NewRefreshToken, NewSession, PolicyOverrides, Profile, RevokeReason, Session, SessionId,
    SessionLimit, SessionQuery, SessionState, SessionStore, StateFilter, StoreError, Tenant,
    TenantId, TokenHash, User, UserStatus,
};
use sessiond_store_sqlite::SqliteStore;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const NOW: i64 = 1_700_000_000;

/// A fresh store in a file of its own, kept for the life of the test process.
async fn fresh() -> SqliteStore {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let path = dir
        .path()
        .join(format!("{}.db", N.fetch_add(1, Ordering::Relaxed)));
    SqliteStore::open(&path).unwrap()
}

mod conformance {
    use super::fresh;
    sessiond_store::identity_store_conformance!(fresh());
    sessiond_store::session_store_conformance!(fresh());
    sessiond_store::audited_session_writes_conformance!(fresh());
    sessiond_store::session_change_log_conformance!(fresh());
    sessiond_store::identity_change_log_conformance!(fresh());
}

fn tenant(id: &str) -> Tenant {
    Tenant {
        id: TenantId::parse(id).unwrap(),
        name: Some("Durable".into()),
        profile: Profile::Integration,
        overrides: PolicyOverrides {
            max_sessions_per_user: Some(1),
            ..Default::default()
        },
        created_at: NOW,
    }
}

fn user(tenant: &Tenant) -> User {
    User {
        id: uuid::Uuid::new_v4(),
        tenant_id: tenant.id.clone(),
        customer_id: uuid::Uuid::new_v4(),
        username: Some("alice".into()),
        password_hash: Some("$argon2id$v=19$...".into()),
        external_id: None,
        status: UserStatus::Active,
        created_at: NOW,
        role: None,
    }
}

fn session(tenant: &Tenant, user: &User, n: usize) -> Session {
    Session {
        id: SessionId::from_generated(format!("session-{n:0>14}")),
        tenant_id: tenant.id.clone(),
        user_id: user.id,
        customer_id: user.customer_id,
        auth_method: sessiond_store::AuthMethod::Password,
        created_at: NOW,
        auth_time: NOW,
        last_seen_at: NOW,
        absolute_expires_at: NOW + 86_400,
        idle_ttl: Some(1800),
        device: DeviceInfo::default(),
        state: SessionState::Active,
    }
}

fn token(n: u8) -> TokenHash {
    TokenHash([n; 32])
}

fn audit(tenant: &Tenant, n: usize) -> AuditEvent {
    AuditEvent {
        id: 0,
        kind: AuditKind::SessionCreated,
        tenant_id: tenant.id.clone(),
        user_id: None,
        session_id: None,
        activity_id: format!("activity-{n}"),
        correlation_id: None,
        ip: None,
        user_agent: None,
        reason: None,
        at: NOW,
        actor: None,
    }
}

/// Writes a tenant, a user, two sessions (one revoked) with a refresh token, and an audit event.
async fn write_sample(store: &SqliteStore) -> (Tenant, User, Session, Session) {
    let t = tenant("durable");
    let u = user(&t);
    let (s1, s2) = (session(&t, &u, 1), session(&t, &u, 2));
    store.create_tenant(t.clone()).await.unwrap();
    store.create_user(u.clone()).await.unwrap();
    for (s, n) in [(&s1, 1), (&s2, 2)] {
        let new = NewSession {
            session: s.clone(),
            refresh: Some(NewRefreshToken {
                hash: token(n),
                expires_at: NOW + 86_400,
            }),
        };
        store
            .create_session(new, SessionLimit::Unlimited, NOW, None)
            .await
            .unwrap();
    }
    store
        .revoke_session(&t.id, &s2.id, RevokeReason::Logout, NOW + 1, None)
        .await
        .unwrap()
        .unwrap();
    store.append_audit(vec![audit(&t, 1)]).await.unwrap();
    (t, u, s1, s2)
}

/// Checks that everything `write_sample` wrote is there.
async fn check_sample(store: &SqliteStore) {
    let t = tenant("durable");
    assert_eq!(store.get_tenant(&t.id).await.unwrap(), Some(t.clone()));
    let u = store
        .find_user_by_username(&t.id, "alice")
        .await
        .unwrap()
        .expect("the user survives");
    let active = store
        .find_sessions(
            &t.id,
            &SessionQuery {
                user_id: Some(u.id),
                state: Some(StateFilter::Active),
                limit: 10,
                before: None,
            },
            NOW + 2,
        )
        .await
        .unwrap();
    assert_eq!(active.len(), 1);
    let revoked = store
        .get_session(
            &t.id,
            &SessionId::from_generated(format!("session-{:0>14}", 2)),
        )
        .await
        .unwrap()
        .expect("the revoked session survives");
    assert_eq!(
        revoked.state,
        SessionState::Revoked {
            reason: RevokeReason::Logout,
            at: NOW + 1
        },
        "a revoked session never comes back"
    );
    let events = store
        .find_audit(
            &t.id,
            &AuditQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    // The refresh token survives too: it still rotates.
    let rotation = sessiond_store::Rotation {
        tenant_id: t.id.clone(),
        presented: token(1),
        successor: NewRefreshToken {
            hash: token(3),
            expires_at: NOW + 86_400,
        },
        sealed_successor: vec![3],
        grace_seconds: 10,
        now: NOW + 2,
    };
    assert!(matches!(
        store.rotate_refresh(rotation, None).await.unwrap(),
        sessiond_store::RotateOutcome::Rotated { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessiond.db");
    let store = SqliteStore::open(&path).unwrap();
    write_sample(&store).await;
    drop(store);
    let reopened = SqliteStore::open(&path).unwrap();
    check_sample(&reopened).await;
    drop(reopened);
    // Reopening an up-to-date file migrates nothing and loses nothing.
    let again = SqliteStore::open(&path).unwrap();
    assert!(
        again
            .get_tenant(&tenant("durable").id)
            .await
            .unwrap()
            .is_some()
    );
}

/// Set in the child process of `a_write_survives_kill_9`: where to write before dying.
const CRASH_DIR: &str = "SESSIOND_SQLITE_CRASH_TEST_DIR";

/// Not a test of its own: the child half of `a_write_survives_kill_9`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR) else {
        return;
    };
    let store = SqliteStore::open(&Path::new(&dir).join("sessiond.db")).unwrap();
    write_sample(&store).await;
    // Every write above returned Ok: now die without closing anything.
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status();
    std::process::abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_DIR, dir.path())
        .status()
        .unwrap();
    assert!(
        !status.success(),
        "the child must die, not finish: {status:?}"
    );
    assert!(
        dir.path().join("sessiond.db-wal").exists(),
        "the child died before checkpointing: its writes live in the WAL"
    );
    let store = SqliteStore::open(&dir.path().join("sessiond.db")).unwrap();
    check_sample(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_writes_each_get_their_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("sessiond.db")).unwrap());
    let t = tenant("busy");
    store.create_tenant(t.clone()).await.unwrap();

    // 200 writes of four kinds at once: some must fail, and only they may.
    let tasks: Vec<_> = (0..200usize)
        .map(|i| {
            let (store, t) = (store.clone(), t.clone());
            tokio::spawn(async move {
                match i % 4 {
                    // Tenants 0..25 twice each: one create wins, one conflicts.
                    0 => store
                        .create_tenant(tenant(&format!("t{}", i / 8)))
                        .await
                        .map(|()| 0),
                    1 => store.append_audit(vec![audit(&t, i)]).await.map(|()| 1),
                    2 => {
                        let u = User {
                            username: Some(format!("user-{i}")),
                            ..user(&t)
                        };
                        store.create_user(u).await.map(|()| 2)
                    }
                    _ => {
                        let u = user(&t);
                        let new = NewSession {
                            session: session(&t, &u, i),
                            refresh: Some(NewRefreshToken {
                                hash: token(u8::try_from(i).unwrap()),
                                expires_at: NOW + 86_400,
                            }),
                        };
                        store
                            .create_session(new, SessionLimit::Reject(1), NOW, None)
                            .await
                            .map(|_| 3)
                    }
                }
            })
        })
        .collect();
    let mut ok = [0usize; 4];
    let mut conflicts = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(kind) => ok[kind] += 1,
            Err(StoreError::Conflict) => conflicts += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ok, [25, 50, 50, 50]);
    assert_eq!(conflicts, 25);

    for i in 0..25 {
        assert!(
            store
                .get_tenant(&TenantId::parse(&format!("t{i}")).unwrap())
                .await
                .unwrap()
                .is_some()
        );
    }
    let events = store
        .find_audit(
            &t.id,
            &AuditQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 50);
    assert!(
        events.windows(2).all(|w| w[0].id > w[1].id),
        "distinct, ordered ids"
    );
    for i in (2..200).step_by(4) {
        assert!(
            store
                .find_user_by_username(&t.id, &format!("user-{i}"))
                .await
                .unwrap()
                .is_some()
        );
    }
    let sessions = store
        .find_sessions(
            &t.id,
            &SessionQuery {
                limit: 1000,
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(sessions.len(), 50);
    assert!(sessions.iter().all(|s| s.state == SessionState::Active));
}

// ---------------------------------------------------------------------------------------
// The change log

/// The whole log after `after`: (seq, change), checking it is numbered consecutively.
async fn log_after(store: &SqliteStore, mut after: u64) -> Vec<(u64, Change)> {
    let mut all = Vec::new();
    loop {
        let read = store.read_log(&[(0, after)], 3).await.unwrap();
        let [LogRead::Entries(entries)] = read.as_slice() else {
            panic!("cannot resume after {after}: {read:?}");
        };
        if entries.is_empty() {
            return all;
        }
        for e in entries {
            assert_eq!(e.seq, after + 1, "consecutive");
            after = e.seq;
            all.push((e.seq, e.change.clone()));
        }
    }
}

fn ended(s: &Session, reason: RevokeReason) -> Change {
    Change::SessionEnded {
        tenant: s.tenant_id.clone(),
        session: s.id.clone(),
        user: s.user_id,
        reason,
        auth_time: Some(s.auth_time),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_log_survives_reopening_and_numbering_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessiond.db");
    let store = SqliteStore::open(&path).unwrap();
    let (t, _, _, s2) = write_sample(&store).await;
    let written = log_after(&store, 0).await;
    assert_eq!(written, vec![(1, ended(&s2, RevokeReason::Logout))]);
    let at = store.read_log(&[(0, 0)], 1).await.unwrap();
    let [LogRead::Entries(entries)] = at.as_slice() else {
        panic!("{at:?}");
    };
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((entries[0].at - wall).abs() < 5, "`at` is the wall clock");
    drop(store);

    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(log_after(&reopened, 0).await, written, "the log is durable");
    // Purged to the end, the head stays where it was and numbering goes on from it.
    assert_eq!(reopened.purge_log(i64::MAX, 100).await.unwrap(), 1);
    assert_eq!(
        reopened.read_log(&[(0, 0)], 10).await.unwrap(),
        vec![LogRead::Gone { head: 1 }]
    );
    reopened
        .set_tenant_policy(&t.id, PolicyOverrides::default())
        .await
        .unwrap();
    assert_eq!(
        log_after(&reopened, 1).await,
        vec![(
            2,
            Change::TenantChanged {
                tenant: t.id.clone()
            }
        )]
    );
    assert!(
        reopened.read_log(&[(1, 0)], 10).await.is_err(),
        "one partition"
    );
}

/// A write that fails after it logged (an eviction, then a taken session id) rolls its
/// entries back with it, and gives their numbers back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_logs_nothing_and_leaves_no_gap() {
    let store = fresh().await;
    let t = tenant("rollback");
    let u = user(&t);
    let first = session(&t, &u, 1);
    store
        .create_session(
            NewSession {
                session: first.clone(),
                refresh: None,
            },
            SessionLimit::Unlimited,
            NOW,
            None,
        )
        .await
        .unwrap();
    // The same id again, under a limit that would displace the first: a conflict.
    let again = store
        .create_session(
            NewSession {
                session: first.clone(),
                refresh: None,
            },
            SessionLimit::EvictOldest(1),
            NOW,
            None,
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    assert_eq!(log_after(&store, 0).await, vec![], "nothing logged");
    let kept = store.get_session(&t.id, &first.id).await.unwrap().unwrap();
    assert_eq!(kept.state, SessionState::Active, "the eviction was undone");

    let second = session(&t, &u, 2);
    store
        .create_session(
            NewSession {
                session: second,
                refresh: None,
            },
            SessionLimit::EvictOldest(1),
            NOW,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        log_after(&store, 0).await,
        vec![(1, ended(&first, RevokeReason::Displaced))],
        "numbered from 1: the failed write gave its number back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logging_commit_wakes_waiters_and_the_hot_path_does_not() {
    let store = Arc::new(fresh().await);
    let t = tenant("hints");
    let u = user(&t);
    let s = session(&t, &u, 1);
    store
        .create_session(
            NewSession {
                session: s.clone(),
                refresh: None,
            },
            SessionLimit::Unlimited,
            NOW,
            None,
        )
        .await
        .unwrap();

    // A touch logs nothing: the waiter sleeps to its deadline.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_hint(std::time::Duration::from_millis(500)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    store.touch_session(&t.id, &s.id, NOW + 1).await.unwrap();
    assert_eq!(waiter.await.unwrap(), Vec::<usize>::new());

    // A revocation wakes it well before its deadline.
    let started = std::time::Instant::now();
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_hint(std::time::Duration::from_secs(30)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    store
        .revoke_session(&t.id, &s.id, RevokeReason::Admin, NOW + 2, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiter.await.unwrap(), vec![0], "the waiter was woken");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
