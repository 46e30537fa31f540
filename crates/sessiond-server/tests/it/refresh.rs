//! Refresh rotation: single use, reuse detection, the idempotent grace window, no forks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::*;
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn a_retry_within_the_grace_window_gets_the_same_token() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let rt = s.login_ok("t1", "alice").await.str("refreshToken");
    let first = s.refresh("t1", &rt).await;
    assert_eq!(first.status, 200);
    s.clock.advance(5);
    let again = s.refresh("t1", &rt).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(
        again.str("refreshToken"),
        first.str("refreshToken"),
        "idempotent within the grace window"
    );
    assert_eq!(again.str("sessionId"), first.str("sessionId"));
    // The handed-out successor still works, once.
    let next = s.refresh("t1", &first.str("refreshToken")).await;
    assert_eq!(next.status, 200);
    assert_eq!(
        s.whoami("t1", &next.str("userSessionToken")).await.status,
        200
    );
}

#[tokio::test]
async fn reuse_after_the_grace_window_revokes_the_session() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let login = s.login_ok("t1", "alice").await;
    let rt = login.str("refreshToken");
    let first = s.refresh("t1", &rt).await;
    s.clock.advance(11);
    s.refresh("t1", &rt)
        .await
        .problem(401, "refresh_token_reused");
    // The whole session is gone: its tokens and its newest refresh token too.
    s.whoami("t1", &first.str("userSessionToken"))
        .await
        .problem(401, "session_revoked");
    s.refresh("t1", &first.str("refreshToken"))
        .await
        .problem(401, "session_revoked");
    let sid = login.str("sessionId");
    let events = s.audit("t1", &format!("sessionId={sid}")).await;
    assert!(events.iter().any(|e| e["type"] == "refresh_token_reused"));
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "session_revoked" && e["reason"] == "reuse_detected")
    );
}

#[tokio::test]
async fn an_older_token_is_reuse_even_within_the_grace_window() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let rt0 = s.login_ok("t1", "alice").await.str("refreshToken");
    let rt1 = s.refresh("t1", &rt0).await.str("refreshToken");
    let _rt2 = s.refresh("t1", &rt1).await.str("refreshToken");
    s.refresh("t1", &rt0)
        .await
        .problem(401, "refresh_token_reused");
}

#[tokio::test]
async fn concurrent_refreshes_never_fork_the_session() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let login = s.login_ok("t1", "alice").await;
    let rt = login.str("refreshToken");
    let replies = futures_join(&s, &rt, 16).await;
    let mut successors = HashSet::new();
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.str("sessionId"), login.str("sessionId"));
        successors.insert(r.str("refreshToken"));
    }
    assert_eq!(successors.len(), 1, "every racer gets the one successor");
    let active = TestServer::send(s.admin(
        reqwest::Method::GET,
        "/admin/v1/tenants/t1/sessions?state=active",
    ))
    .await;
    assert_eq!(active.body["sessions"].as_array().unwrap().len(), 1);
}

async fn futures_join(s: &TestServer, rt: &str, n: usize) -> Vec<Reply> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let req = s
            .api(reqwest::Method::POST, "/api/v2/auth/refresh", "t1")
            .json(&json!({"refreshToken": rt}));
        set.spawn(TestServer::send(req));
    }
    set.join_all().await
}

#[tokio::test]
async fn refresh_tokens_are_bound_to_their_tenant_and_profile() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    s.tenant_with_user("t2", "integration", json!({})).await;
    s.tenant_with_user("play", "playground", json!({})).await;
    let rt = s.login_ok("t1", "alice").await.str("refreshToken");
    s.refresh("t2", &rt)
        .await
        .problem(401, "refresh_token_invalid");
    s.refresh("t1", "not-a-token")
        .await
        .problem(401, "refresh_token_invalid");
    s.refresh("t1", &"x".repeat(300))
        .await
        .problem(401, "refresh_token_invalid");
    let r = TestServer::send(
        s.req(reqwest::Method::POST, "/api/v2/auth/refresh")
            .header("X-Tenant-ID", "play")
            .json(&json!({"refreshToken": rt})),
    )
    .await;
    r.problem(400, "refresh_not_enabled");
    // The token was not consumed by the refused attempts.
    assert_eq!(s.refresh("t1", &rt).await.status, 200);
}

/// One fsync per session write: a login, a refresh, a logout and an admin revocation each
/// commit once — the session change, its change-log entry and its audit events in one
/// SQLite transaction — and the events are in the trail all the same.
#[tokio::test]
async fn each_session_write_commits_once_with_its_audit_events() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let commits = || s.store.commits();

    let before = commits();
    let login = s.login_ok("t1", "alice").await;
    assert_eq!(commits() - before, 1, "a login");
    let sid = login.str("sessionId");

    let before = commits();
    let next = s.refresh("t1", &login.str("refreshToken")).await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(commits() - before, 1, "a refresh");

    let before = commits();
    let out = s.logout("t1", &next.str("userSessionToken")).await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert_eq!(commits() - before, 1, "a logout");

    // A user revoking their own session by id, and an admin revoking one.
    let own = s.login_ok("t1", "alice").await;
    let before = commits();
    let revoked = TestServer::send(
        s.api(
            reqwest::Method::DELETE,
            &format!("/api/v2/sessions/{}", own.str("sessionId")),
            "t1",
        )
        .bearer_auth(own.str("userSessionToken")),
    )
    .await;
    assert_eq!(revoked.status, 204, "{}", revoked.body);
    assert_eq!(commits() - before, 1, "a revocation of one's own session");

    let other = s.login_ok("t1", "alice").await.str("sessionId");
    let before = commits();
    let revoked = TestServer::send(s.admin(
        reqwest::Method::DELETE,
        &format!("/admin/v1/tenants/t1/sessions/{other}"),
    ))
    .await;
    assert_eq!(revoked.status, 204, "{}", revoked.body);
    // The revocation commits once; the admin API then records the operator's action
    // (`admin_action`) in a write of its own.
    assert_eq!(commits() - before, 2, "an admin revocation");

    let types = |events: Vec<serde_json::Value>| -> Vec<String> {
        let mut t: Vec<String> = events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        t.reverse();
        t
    };
    assert_eq!(
        types(s.audit("t1", &format!("sessionId={sid}")).await),
        [
            "login_succeeded",
            "session_created",
            "session_refreshed",
            "session_revoked"
        ]
    );
    assert!(
        types(s.audit("t1", &format!("sessionId={other}")).await)
            .contains(&"session_revoked".to_owned())
    );
}

/// A read that finds its session timed out records the timeout and its audit event in one
/// commit (reads run without a task of their own: nothing may be left half done).
#[tokio::test]
async fn a_timeout_found_by_a_read_commits_once_with_its_audit_event() {
    let s = TestServer::start().await;
    s.tenant_with_user("prod", "production", json!({"httpsOnly": false}))
        .await;
    let login = s.login_ok("prod", "alice").await;
    s.clock.advance(31 * 60);
    let before = s.store.commits();
    s.whoami("prod", &login.str("userSessionToken"))
        .await
        .problem(401, "session_expired");
    assert_eq!(s.store.commits() - before, 1);
    let events = s
        .audit("prod", &format!("sessionId={}", login.str("sessionId")))
        .await;
    assert_eq!(events[0]["type"], "session_expired", "{events:?}");
    assert_eq!(events[0]["reason"], "idle_timeout");
}

/// Sessions in one store, the audit trail in another (as with Redis for sessions): a store
/// that holds its answer to the first `mark_expired` — the timeout already written — until
/// the test lets it go.
struct HeldTimeout {
    inner: std::sync::Arc<sessiond_store_sqlite::SqliteStore>,
    /// Notified once the timeout is written and its answer held.
    written: tokio::sync::Notify,
    /// Lets the held answer go.
    release: tokio::sync::Notify,
    held: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl sessiond_store::SessionStore for HeldTimeout {
    async fn create_session(
        &self,
        new: sessiond_store::NewSession,
        limit: sessiond_store::SessionLimit,
        now: sessiond_store::UnixTime,
        audit: sessiond_store::AuditWith<[sessiond_store::SessionId]>,
    ) -> sessiond_store::StoreResult<Vec<sessiond_store::SessionId>> {
        self.inner.create_session(new, limit, now, audit).await
    }
    async fn get_session(
        &self,
        tenant: &sessiond_store::TenantId,
        id: &sessiond_store::SessionId,
    ) -> sessiond_store::StoreResult<Option<sessiond_store::Session>> {
        self.inner.get_session(tenant, id).await
    }
    async fn touch_session(
        &self,
        tenant: &sessiond_store::TenantId,
        id: &sessiond_store::SessionId,
        now: sessiond_store::UnixTime,
    ) -> sessiond_store::StoreResult<()> {
        self.inner.touch_session(tenant, id, now).await
    }
    async fn rotate_refresh(
        &self,
        rotation: sessiond_store::Rotation,
        audit: sessiond_store::AuditWith<sessiond_store::RotateOutcome>,
    ) -> sessiond_store::StoreResult<sessiond_store::RotateOutcome> {
        self.inner.rotate_refresh(rotation, audit).await
    }
    async fn revoke_session(
        &self,
        tenant: &sessiond_store::TenantId,
        id: &sessiond_store::SessionId,
        reason: sessiond_store::RevokeReason,
        now: sessiond_store::UnixTime,
        audit: sessiond_store::AuditWith<[sessiond_store::Session]>,
    ) -> sessiond_store::StoreResult<Option<sessiond_store::Session>> {
        self.inner
            .revoke_session(tenant, id, reason, now, audit)
            .await
    }
    async fn revoke_user_sessions(
        &self,
        tenant: &sessiond_store::TenantId,
        user: &sessiond_store::UserId,
        reason: sessiond_store::RevokeReason,
        keep: Option<&sessiond_store::SessionId>,
        now: sessiond_store::UnixTime,
        audit: sessiond_store::AuditWith<[sessiond_store::Session]>,
    ) -> sessiond_store::StoreResult<Vec<sessiond_store::Session>> {
        self.inner
            .revoke_user_sessions(tenant, user, reason, keep, now, audit)
            .await
    }
    async fn reauthenticate(
        &self,
        tenant: &sessiond_store::TenantId,
        id: &sessiond_store::SessionId,
        now: sessiond_store::UnixTime,
    ) -> sessiond_store::StoreResult<Option<sessiond_store::Session>> {
        self.inner.reauthenticate(tenant, id, now).await
    }
    async fn expire_sessions(
        &self,
        now: sessiond_store::UnixTime,
        batch: usize,
    ) -> sessiond_store::StoreResult<Vec<sessiond_store::Session>> {
        self.inner.expire_sessions(now, batch).await
    }
    async fn mark_expired(
        &self,
        tenant: &sessiond_store::TenantId,
        id: &sessiond_store::SessionId,
        now: sessiond_store::UnixTime,
        audit: sessiond_store::AuditWith<bool>,
    ) -> sessiond_store::StoreResult<bool> {
        let recorded = self.inner.mark_expired(tenant, id, now, audit).await;
        if !self.held.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.written.notify_one();
            self.release.notified().await;
        }
        recorded
    }
    async fn find_sessions(
        &self,
        tenant: &sessiond_store::TenantId,
        query: &sessiond_store::SessionQuery,
        now: sessiond_store::UnixTime,
    ) -> sessiond_store::StoreResult<Vec<sessiond_store::Session>> {
        self.inner.find_sessions(tenant, query, now).await
    }
    async fn consume_nonce(
        &self,
        tenant: &sessiond_store::TenantId,
        nonce: &str,
        expires_at: sessiond_store::UnixTime,
        now: sessiond_store::UnixTime,
    ) -> sessiond_store::StoreResult<bool> {
        self.inner
            .consume_nonce(tenant, nonce, expires_at, now)
            .await
    }
    async fn count_active_sessions(
        &self,
        now: sessiond_store::UnixTime,
    ) -> sessiond_store::StoreResult<u64> {
        self.inner.count_active_sessions(now).await
    }
    async fn get_refresh(
        &self,
        hash: &sessiond_store::TokenHash,
    ) -> sessiond_store::StoreResult<Option<sessiond_store::RefreshRecord>> {
        self.inner.get_refresh(hash).await
    }
    async fn ping(&self) -> sessiond_store::StoreResult<()> {
        self.inner.ping().await
    }
}

/// A read that finds its session timed out writes: the timeout, then (sessions and audit
/// trail in two stores, as with sessions on Redis) its audit event. A client that hangs up
/// in between must not cut the event off: the timeout is recorded once, so an event lost
/// then is lost for good.
#[tokio::test]
async fn a_timeout_found_by_a_read_is_audited_though_the_client_hangs_up() {
    use sessiond_store::SessionStore as _;
    use tower::ServiceExt as _;
    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(sessiond_core::ManualClock::new(START));
    let identity = std::sync::Arc::new(
        sessiond_store_sqlite::SqliteStore::open(&dir.path().join("sessiond.db")).unwrap(),
    );
    let sessions = std::sync::Arc::new(HeldTimeout {
        inner: identity.clone(),
        written: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
        held: std::sync::atomic::AtomicBool::new(false),
    });
    let engine = sessiond_testkit::engine(
        sessions.clone(),
        identity.clone(),
        clock.clone(),
        sessiond_core::token::Alg::EdDSA,
    )
    .await;
    let state = sessiond_testkit::state(engine);
    let node = sessiond_testkit::Server::serve(state.clone()).await;
    node.tenant_with_user("prod", "production", json!({"httpsOnly": false}))
        .await;
    let login = TestServer::send(
        node.http
            .post(format!("{}/api/v2/auth/login", node.base))
            .header("X-Tenant-ID", "prod")
            .header("X-Activity-ID", activity())
            .json(&json!({"username": "alice", "password": PASSWORD})),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let sid = login.str("sessionId");
    clock.advance(31 * 60);

    // The whoami, served as a connection serves it; the client hangs up (its future is
    // dropped) once the timeout is written and before the answer.
    let mut req = axum::http::Request::get("/api/v2/session")
        .header("X-Tenant-ID", "prod")
        .header("X-Activity-ID", activity())
        .header(
            "Authorization",
            format!("Bearer {}", login.str("userSessionToken")),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let served = sessiond_server::router(state).oneshot(req);
    tokio::select! {
        _ = served => panic!("answered while the store held its answer"),
        _ = sessions.written.notified() => {}
    }
    sessions.release.notify_one();

    let session = sessiond_store::SessionId::parse(&sid).unwrap();
    let tenant = sessiond_store::TenantId::parse("prod").unwrap();
    let stored = identity
        .get_session(&tenant, &session)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(stored.state, sessiond_store::SessionState::Expired { .. }),
        "the timeout is written: {:?}",
        stored.state
    );
    let mut events = Vec::new();
    for _ in 0..100 {
        let r = TestServer::send(node.admin(
            reqwest::Method::GET,
            &format!("/admin/v1/tenants/prod/audit?sessionId={sid}&type=session_expired"),
        ))
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        events = r.body["events"].as_array().unwrap().clone();
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(events.len(), 1, "the timeout's audit event: {events:?}");
    assert_eq!(events[0]["reason"], "idle_timeout");
}
