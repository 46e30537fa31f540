//! The operator API: tenants and policy, users, sessions, audit and keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn tenants_and_policy() {
    let s = TestServer::start().await;
    let r = s
        .tenant("t1", "production", json!({"maxSessionsPerUser": 1}))
        .await;
    assert_eq!(r.body["policy"]["idleTtl"], 1800);
    assert_eq!(r.body["policy"]["maxSessionsPerUser"], 1);
    assert_eq!(r.body["policy"]["httpsOnly"], true);
    let p = TestServer::send(
        s.admin(Method::PATCH, "/admin/v1/tenants/t1/policy")
            .json(&json!({"idleTtl": 600, "httpsOnly": false})),
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(
        (
            p.body["idleTtl"].as_i64(),
            p.body["maxSessionsPerUser"].as_i64()
        ),
        (Some(600), Some(1))
    );
    let t = TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/t1")).await;
    assert_eq!(t.body["policy"]["idleTtl"], 600);
    assert_eq!(t.body["profile"], "production");
    // The new policy is in force at once.
    s.user("t1", "alice").await;
    let token = s.login_ok("t1", "alice").await.str("userSessionToken");
    s.clock.advance(601);
    s.whoami("t1", &token).await.problem(401, "session_expired");
}

#[tokio::test]
async fn password_change_revokes_sessions() {
    let s = TestServer::start().await;
    let uid = s.tenant_with_user("t1", "integration", json!({})).await;
    let token = s.login_ok("t1", "alice").await.str("userSessionToken");
    let r = TestServer::send(
        s.admin(
            Method::POST,
            &format!("/admin/v1/tenants/t1/users/{uid}/password"),
        )
        .json(&json!({"password": "a brand new one"})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    s.whoami("t1", &token).await.problem(401, "session_revoked");
    s.login("t1", "alice")
        .await
        .problem(401, "invalid_credentials");
    let ok = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/login", "t1")
            .json(&json!({"username": "alice", "password": "a brand new one"})),
    )
    .await;
    assert_eq!(ok.status, 200);
    let ev = s.audit("t1", "type=session_revoked").await;
    assert_eq!(ev[0]["reason"], "password_changed");
}

#[tokio::test]
async fn session_search_and_revoke() {
    let s = TestServer::start().await;
    let uid = s.tenant_with_user("t1", "integration", json!({})).await;
    s.user("t1", "bob").await;
    let a1 = s.login_ok("t1", "alice").await;
    s.login_ok("t1", "alice").await;
    s.login_ok("t1", "bob").await;
    let list = TestServer::send(s.admin(
        Method::GET,
        &format!("/admin/v1/tenants/t1/sessions?userId={uid}"),
    ))
    .await;
    assert_eq!(list.body["sessions"].as_array().unwrap().len(), 2);
    let path = format!("/admin/v1/tenants/t1/sessions/{}", a1.str("sessionId"));
    assert_eq!(
        TestServer::send(s.admin(Method::DELETE, &path))
            .await
            .status,
        204
    );
    assert_eq!(
        TestServer::send(s.admin(Method::DELETE, &path))
            .await
            .status,
        204,
        "idempotent"
    );
    s.whoami("t1", &a1.str("userSessionToken"))
        .await
        .problem(401, "session_revoked");
    let revoked =
        TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/t1/sessions?state=revoked")).await;
    let revoked = revoked.body["sessions"].as_array().unwrap().clone();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["revokedReason"], "admin");
    let active =
        TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/t1/sessions?state=active")).await;
    assert_eq!(active.body["sessions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn audit_filters() {
    let s = TestServer::start().await;
    let uid = s.tenant_with_user("t1", "integration", json!({})).await;
    let act = activity();
    let r = TestServer::send(
        s.req(Method::POST, "/api/v2/auth/login")
            .header("X-Tenant-ID", "t1")
            .header("X-Activity-ID", &act)
            .header("User-Agent", "test-agent/1.0")
            .json(&json!({"username": "alice", "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, 200);
    let by_activity = s.audit("t1", &format!("activityId={act}")).await;
    assert_eq!(by_activity.len(), 2);
    assert_eq!(by_activity[0]["userAgent"], "test-agent/1.0");
    assert_eq!(by_activity[0]["ip"], "127.0.0.1");
    assert_eq!(
        s.audit("t1", &format!("userId={uid}&type=session_created"))
            .await
            .len(),
        1
    );
    assert_eq!(
        s.audit("t1", &format!("since={}", START + 1)).await.len(),
        0
    );
    assert_eq!(s.audit("t1", "limit=1").await.len(), 1);
    s.tenant("t2", "integration", json!({})).await;
    let t2 = s.audit("t2", "").await;
    assert_eq!(t2.len(), 1, "tenants are isolated: {t2:?}");
    assert_eq!(
        t2[0]["type"], "admin_action",
        "only its own creation: {t2:?}"
    );
    assert_eq!(t2[0]["reason"], "POST /admin/v1/tenants");
    assert_eq!(t2[0]["actor"], "admin-token");
}

#[tokio::test]
async fn key_rotation_keeps_issued_tokens_valid() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let before = s.login_ok("t1", "alice").await.str("userSessionToken");
    let keys = TestServer::send(s.admin(Method::GET, "/admin/v1/keys")).await;
    let next = keys.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "next")
        .unwrap()["kid"]
        .clone();
    let rotated = TestServer::send(s.admin(Method::POST, "/admin/v1/keys/rotate")).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let signing = rotated.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "signing")
        .unwrap()["kid"]
        .clone();
    assert_eq!(
        signing, next,
        "the published next key signs after a rotation"
    );
    assert_eq!(s.whoami("t1", &before).await.status, 200);
    let after = s.login_ok("t1", "alice").await.str("userSessionToken");
    assert_eq!(s.whoami("t1", &after).await.status, 200);
    let jwks = TestServer::send(s.req(Method::GET, "/.well-known/jwks.json")).await;
    assert_eq!(jwks.body["keys"].as_array().unwrap().len(), 3);
}

fn kid_in_state(keys: &serde_json::Value, state: &str) -> String {
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == state)
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_revoked_key_is_unpublished_and_its_cached_tokens_are_refused() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let token = s.login_ok("t1", "alice").await.str("userSessionToken");
    // Verified once and cached.
    assert_eq!(s.whoami("t1", &token).await.status, 200);
    let keys = TestServer::send(s.admin(Method::GET, "/admin/v1/keys")).await;
    let (signing, next) = (
        kid_in_state(&keys.body, "signing"),
        kid_in_state(&keys.body, "next"),
    );

    let revoked =
        TestServer::send(s.admin(Method::POST, &format!("/admin/v1/keys/{signing}/revoke"))).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(
        kid_in_state(&revoked.body, "signing"),
        next,
        "the published next key takes over"
    );
    let fresh_next = kid_in_state(&revoked.body, "next");
    assert_ne!(fresh_next, next, "a fresh next key is published");
    assert!(!revoked.body.to_string().contains(&signing));

    s.whoami("t1", &token).await.problem(401, "token_invalid");
    let jwks = TestServer::send(s.req(Method::GET, "/.well-known/jwks.json")).await;
    let kids: Vec<&str> = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(!kids.contains(&signing.as_str()), "{kids:?}");
    assert!(kids.contains(&next.as_str()) && kids.contains(&fresh_next.as_str()));
    let listed = TestServer::send(s.admin(Method::GET, "/admin/v1/keys")).await;
    assert!(!listed.body.to_string().contains(&signing));

    let after = s.login_ok("t1", "alice").await.str("userSessionToken");
    assert_eq!(s.whoami("t1", &after).await.status, 200);

    // The next key: replaced, the signing key stays.
    let again =
        TestServer::send(s.admin(Method::POST, &format!("/admin/v1/keys/{fresh_next}/revoke")))
            .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(kid_in_state(&again.body, "signing"), next);
    assert_ne!(kid_in_state(&again.body, "next"), fresh_next);
    assert_eq!(s.whoami("t1", &after).await.status, 200);

    TestServer::send(s.admin(Method::POST, &format!("/admin/v1/keys/{signing}/revoke")))
        .await
        .problem(404, "not_found");
    TestServer::send(s.admin(Method::POST, "/admin/v1/keys/no-such-kid/revoke"))
        .await
        .problem(404, "not_found");
    let unauthenticated =
        TestServer::send(s.req(Method::POST, &format!("/admin/v1/keys/{next}/revoke"))).await;
    assert_eq!(unauthenticated.status, 401);
    assert_eq!(s.whoami("t1", &after).await.status, 200);
}

#[tokio::test]
async fn health_endpoints() {
    let s = TestServer::start().await;
    assert_eq!(
        TestServer::send(s.req(Method::GET, "/healthz"))
            .await
            .status,
        200
    );
    let r = TestServer::send(s.req(Method::GET, "/readyz")).await;
    assert_eq!(r.body["status"], "ready");
}
