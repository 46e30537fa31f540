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
