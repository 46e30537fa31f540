//! Races and odd input found in review: each test attacks one of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_client_that_hangs_up_mid_logout_still_gets_its_session_revoked_everywhere() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    for _ in 0..8 {
        let login = s.login_ok("t1", "alice").await;
        let token = login.str("userSessionToken");
        assert_eq!(s.whoami("t1", &token).await.status, 200, "cached as active");
        // The whole request is sent, then the connection is closed without reading a byte.
        let addr = s.base.trim_start_matches("http://");
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST /api/v2/auth/logout HTTP/1.1\r\nHost: {addr}\r\nX-Tenant-ID: t1\r\nX-Activity-ID: {}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n",
            activity()
        );
        tokio::io::AsyncWriteExt::write_all(&mut conn, request.as_bytes())
            .await
            .unwrap();
        drop(conn);
        // The logout runs to its end although nobody waits for it: its audit event (written
        // after the cache invalidation) appears, and the node refuses the token.
        let sid = login.str("sessionId");
        let mut finished = false;
        for _ in 0..400 {
            if !s
                .audit("t1", &format!("sessionId={sid}&type=session_revoked"))
                .await
                .is_empty()
            {
                finished = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(finished, "the abandoned logout must complete");
        s.whoami("t1", &token).await.problem(401, "session_revoked");
    }
}

#[tokio::test]
async fn logins_racing_a_disable_leave_no_live_session() {
    let s = TestServer::start().await;
    let uid = s.tenant_with_user("t1", "integration", json!({})).await;
    let mut logins = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let rb = s
            .api(Method::POST, "/api/v2/auth/login", "t1")
            .json(&json!({"username": "alice", "password": PASSWORD}));
        logins.spawn(TestServer::send(rb));
    }
    tokio::time::sleep(Duration::from_millis(3)).await;
    let r = TestServer::send(s.admin(
        Method::POST,
        &format!("/admin/v1/tenants/t1/users/{uid}/disable"),
    ))
    .await;
    assert_eq!(r.status, 204);
    for r in logins.join_all().await {
        if r.status == 200 {
            let me = s.whoami("t1", &r.str("userSessionToken")).await;
            assert_eq!(
                me.status, 401,
                "a login that raced the disable must not stay live: {}",
                me.body
            );
        } else {
            r.problem(403, "account_disabled");
        }
    }
    let active = TestServer::send(s.admin(
        Method::GET,
        &format!("/admin/v1/tenants/t1/sessions?userId={uid}&state=active"),
    ))
    .await;
    assert_eq!(active.body["sessions"], json!([]));
}

#[tokio::test]
async fn odd_input_gets_contract_errors() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let token = s.login_ok("t1", "alice").await.str("userSessionToken");
    let r = TestServer::send(
        s.api(Method::DELETE, "/api/v2/sessions/%FF", "t1")
            .bearer_auth(&token),
    )
    .await;
    r.problem(400, "invalid_request");
    TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/%FF"))
        .await
        .problem(400, "invalid_request");
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/login", "t1")
            .json(&json!({"username": "alice", "password": PASSWORD, "mode": "url"})),
    )
    .await;
    r.problem(400, "invalid_request");
    let r = TestServer::send(s.api(Method::POST, "/api/v2/auth/login", "t1").json(
        &json!({"username": "alice", "password": PASSWORD, "sessionId": "chosen-by-client"}),
    ))
    .await;
    r.problem(400, "invalid_request");
    let r = TestServer::send(
        s.api(Method::GET, "/api/v2/session", "t1")
            .header("X-Tenant-ID", "t2")
            .bearer_auth(&token),
    )
    .await;
    r.problem(400, "invalid_header");
    // Admin routes on an unknown tenant: 404, like any missing resource.
    TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/nope/audit"))
        .await
        .problem(404, "not_found");
    TestServer::send(
        s.admin(Method::PATCH, "/admin/v1/tenants/nope/policy")
            .json(&json!({})),
    )
    .await
    .problem(404, "not_found");
}

#[tokio::test]
async fn policy_patch_is_a_merge_patch_and_keeps_structural_headers() {
    let s = TestServer::start().await;
    s.tenant(
        "t1",
        "integration",
        json!({"maxSessionsPerUser": 1, "idleTtl": 600}),
    )
    .await;
    let patch = |body: serde_json::Value| {
        TestServer::send(
            s.admin(Method::PATCH, "/admin/v1/tenants/t1/policy")
                .json(&body),
        )
    };
    let p = patch(json!({"maxSessionsPerUser": null})).await;
    assert_eq!(
        (
            p.body["maxSessionsPerUser"].as_i64(),
            p.body["idleTtl"].as_i64()
        ),
        (Some(0), Some(600)),
        "{}",
        p.body
    );
    let t = TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/t1")).await;
    assert_eq!(t.body["overrides"], json!({"idleTtl": 600}));
    patch(json!({"requiredHeaders": []}))
        .await
        .problem(400, "invalid_request");
    patch(json!({"requiredHeaders": ["Authorization", "X-Tenant-ID"]})).await;
    patch(json!({"idleTtl": "soon"}))
        .await
        .problem(400, "invalid_request");
    patch(json!({"sessionTokenTtl": 86401}))
        .await
        .problem(400, "invalid_request");
    let r = TestServer::send(
        s.admin(Method::PATCH, "/admin/v1/tenants/t1/policy")
            .json(&json!([1])),
    )
    .await;
    r.problem(400, "invalid_request");
}

#[tokio::test]
async fn usernames_are_one_name_per_unicode_spelling() {
    let s = TestServer::start().await;
    s.tenant("t1", "integration", json!({})).await;
    let uid = s.user("t1", "Jos\u{e9}").await;
    let dup = TestServer::send(
        s.admin(Method::POST, "/admin/v1/tenants/t1/users")
            .json(&json!({"username": "Jose\u{301}", "password": PASSWORD})),
    )
    .await;
    dup.problem(409, "invalid_request");
    assert_eq!(
        s.login("t1", "Jose\u{301}").await.status,
        200,
        "either spelling logs in"
    );
    for bad in [" alice", "alice ", "ali\u{202e}ce", "", "a\u{0}b"] {
        let r = TestServer::send(
            s.admin(Method::POST, "/admin/v1/tenants/t1/users")
                .json(&json!({"username": bad, "password": PASSWORD})),
        )
        .await;
        r.problem(400, "invalid_request");
    }
    let found = TestServer::send(s.admin(
        Method::GET,
        "/admin/v1/tenants/t1/users?username=Jose%CC%81",
    ))
    .await;
    assert_eq!(found.body["userId"], uid.as_str(), "{}", found.body);
    TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/t1/users?username=nobody"))
        .await
        .problem(404, "not_found");
    TestServer::send(s.admin(
        Method::GET,
        "/admin/v1/tenants/t1/users?username=x&externalId=y",
    ))
    .await
    .problem(400, "invalid_request");
}
