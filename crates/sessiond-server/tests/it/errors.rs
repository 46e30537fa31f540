//! Every reachable error code of the contract, and bad input of every kind: always a 4xx
//! problem+json, never a 5xx.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn header_errors() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let body = json!({"username": "alice", "password": PASSWORD});
    let login = |rb: reqwest::RequestBuilder| TestServer::send(rb.json(&body));
    let path = "/api/v2/auth/login";

    login(
        s.req(Method::POST, path)
            .header("X-Activity-ID", activity()),
    )
    .await
    .problem(400, "missing_header");
    login(s.req(Method::POST, path).header("X-Tenant-ID", "t1"))
        .await
        .problem(400, "missing_header");
    login(s.api(Method::POST, path, "t 1"))
        .await
        .problem(400, "invalid_header");
    login(s.api(Method::POST, path, &"7".repeat(65)))
        .await
        .problem(400, "invalid_header");
    login(s.api(Method::POST, path, "nope"))
        .await
        .problem(400, "unknown_tenant");
    for bad in ["not-a-uuid", "550e8400-e29b-11d4-a716-446655440000"] {
        let r = login(
            s.req(Method::POST, path)
                .header("X-Tenant-ID", "t1")
                .header("X-Activity-ID", bad),
        )
        .await;
        r.problem(400, "invalid_header");
    }
    let r = login(
        s.api(Method::POST, path, "t1")
            .header("X-Correlation-ID", "x".repeat(200)),
    )
    .await;
    r.problem(400, "invalid_header");

    s.whoami("t1", "").await.problem(401, "invalid_header");
    TestServer::send(s.api(Method::GET, "/api/v2/session", "t1"))
        .await
        .problem(401, "missing_header");
    let r = TestServer::send(
        s.api(Method::GET, "/api/v2/session", "t1")
            .header("Authorization", "Basic abc"),
    )
    .await;
    r.problem(401, "invalid_header");
    assert!(r.headers.contains_key("www-authenticate"));
}

#[tokio::test]
async fn body_errors() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let path = "/api/v2/auth/login";
    let raw = |ct: &'static str, b: Vec<u8>| {
        s.api(Method::POST, path, "t1")
            .header("content-type", ct)
            .body(b)
    };
    TestServer::send(raw("application/json", b"{not json".to_vec()))
        .await
        .problem(400, "invalid_request");
    TestServer::send(raw(
        "application/json",
        br#"{"username": 5, "password": []}"#.to_vec(),
    ))
    .await
    .problem(400, "invalid_request");
    TestServer::send(raw(
        "application/json",
        br#"{"username": "alice"}"#.to_vec(),
    ))
    .await
    .problem(400, "invalid_request");
    TestServer::send(raw("application/json", b"".to_vec()))
        .await
        .problem(400, "invalid_request");
    TestServer::send(raw("application/json", vec![0xff, 0xfe, 0x00]))
        .await
        .problem(400, "invalid_request");
    TestServer::send(raw(
        "text/plain",
        br#"{"username":"a","password":"b"}"#.to_vec(),
    ))
    .await
    .problem(415, "invalid_request");
    let big = format!(
        r#"{{"username":"alice","password":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    TestServer::send(raw("application/json", big.into_bytes()))
        .await
        .problem(413, "payload_too_large");
    let long = json!({"username": "alice", "password": "x".repeat(2000)});
    TestServer::send(s.api(Method::POST, path, "t1").json(&long))
        .await
        .problem(400, "invalid_request");
}

#[tokio::test]
async fn credential_errors() {
    let s = TestServer::start().await;
    let uid = s.tenant_with_user("t1", "integration", json!({})).await;
    let wrong = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/login", "t1")
            .json(&json!({"username": "alice", "password": "wrong password"})),
    )
    .await;
    wrong.problem(401, "invalid_credentials");
    let unknown = s.login("t1", "mallory").await;
    unknown.problem(401, "invalid_credentials");
    assert_eq!(
        wrong.body["detail"], unknown.body["detail"],
        "unknown user and wrong password look the same"
    );
    // A user of another tenant does not exist here.
    s.tenant("t2", "integration", json!({})).await;
    s.login("t2", "alice")
        .await
        .problem(401, "invalid_credentials");

    let token = s.login_ok("t1", "alice").await.str("userSessionToken");
    let r = TestServer::send(s.admin(
        Method::POST,
        &format!("/admin/v1/tenants/t1/users/{uid}/disable"),
    ))
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    s.login("t1", "alice")
        .await
        .problem(403, "account_disabled");
    s.whoami("t1", &token).await.problem(401, "session_revoked");
    assert_eq!(s.audit("t1", "type=login_failed").await.len(), 3);
    assert_eq!(s.audit("t2", "type=login_failed").await.len(), 1);
}

#[tokio::test]
async fn token_errors() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    s.tenant_with_user("t2", "integration", json!({})).await;
    let token = s.login_ok("t1", "alice").await.str("userSessionToken");
    for garbage in [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.e30.",
        &format!("{token}x"),
        &"A".repeat(9000),
    ] {
        s.whoami("t1", garbage).await.problem(401, "token_invalid");
    }
    s.whoami("t2", &token).await.problem(401, "tenant_mismatch");
    s.clock.advance(3600);
    s.whoami("t1", &token).await.problem(401, "token_expired");
    // Logout still accepts its own expired token, and a garbage one is refused.
    assert_eq!(s.logout("t1", &token).await.status, 204);
    s.logout("t1", "garbage")
        .await
        .problem(401, "token_invalid");
}

#[tokio::test]
async fn session_limit_displaces_or_rejects() {
    let s = TestServer::start().await;
    s.tenant_with_user("one", "integration", json!({"maxSessionsPerUser": 1}))
        .await;
    let first = s.login_ok("one", "alice").await.str("userSessionToken");
    let second = s.login_ok("one", "alice").await.str("userSessionToken");
    s.whoami("one", &first)
        .await
        .problem(401, "session_displaced");
    assert_eq!(s.whoami("one", &second).await.status, 200);
    assert_eq!(
        s.audit("one", "type=session_revoked").await[0]["reason"],
        "displaced"
    );

    s.tenant_with_user(
        "rej",
        "integration",
        json!({"maxSessionsPerUser": 1, "onLimit": "reject"}),
    )
    .await;
    let keep = s.login_ok("rej", "alice").await.str("userSessionToken");
    s.login("rej", "alice").await.problem(403, "forbidden");
    assert_eq!(s.whoami("rej", &keep).await.status, 200);
}

#[tokio::test]
async fn production_requires_https_via_a_trusted_proxy() {
    let s =
        TestServer::start_with(|st| st.trusted_proxies = vec!["127.0.0.1".parse().unwrap()].into())
            .await;
    s.tenant_with_user("prod", "production", json!({})).await;
    s.login("prod", "alice").await.problem(403, "forbidden");
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/login", "prod")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-For", "203.0.113.7")
            .json(&json!({"username": "alice", "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.audit("prod", "type=login_succeeded").await[0]["ip"],
        "203.0.113.7"
    );

    // Without trusted proxies, X-Forwarded-Proto is not believed.
    let plain = TestServer::start().await;
    plain
        .tenant_with_user("prod", "production", json!({}))
        .await;
    let r = TestServer::send(
        plain
            .api(Method::POST, "/api/v2/auth/login", "prod")
            .header("X-Forwarded-Proto", "https")
            .json(&json!({"username": "alice", "password": PASSWORD})),
    )
    .await;
    r.problem(403, "forbidden");
}

#[tokio::test]
async fn routing_and_admin_errors() {
    let s = TestServer::start().await;
    TestServer::send(s.req(Method::GET, "/nope"))
        .await
        .problem(404, "not_found");
    TestServer::send(s.req(Method::PUT, "/api/v2/auth/login"))
        .await
        .problem(405, "invalid_request");
    TestServer::send(s.req(Method::GET, "/admin/v1/keys"))
        .await
        .problem(401, "missing_header");
    TestServer::send(s.req(Method::GET, "/admin/v1/keys").bearer_auth("wrong"))
        .await
        .problem(403, "forbidden");
    TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/none"))
        .await
        .problem(404, "not_found");
    TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/bad%20id"))
        .await
        .problem(404, "not_found");
    s.tenant("t1", "integration", json!({})).await;
    let dup = TestServer::send(
        s.admin(Method::POST, "/admin/v1/tenants")
            .json(&json!({"id": "t1", "profile": "integration"})),
    )
    .await;
    dup.problem(409, "invalid_request");
    let bad_profile = TestServer::send(
        s.admin(Method::POST, "/admin/v1/tenants")
            .json(&json!({"id": "t3", "profile": "staging"})),
    )
    .await;
    bad_profile.problem(400, "invalid_request");
    let r = TestServer::send(
        s.admin(Method::PATCH, "/admin/v1/tenants/t1/policy")
            .json(&json!({"sessionTokenTtl": 0})),
    )
    .await;
    r.problem(400, "invalid_request");
    let r = TestServer::send(
        s.admin(Method::PATCH, "/admin/v1/tenants/t1/policy")
            .json(&json!({"bogus": 1})),
    )
    .await;
    r.problem(400, "invalid_request");
    s.user("t1", "alice").await;
    let dup = TestServer::send(
        s.admin(Method::POST, "/admin/v1/tenants/t1/users")
            .json(&json!({"username": "alice", "password": PASSWORD})),
    )
    .await;
    dup.problem(409, "invalid_request");
    let short = TestServer::send(
        s.admin(Method::POST, "/admin/v1/tenants/t1/users")
            .json(&json!({"username": "bob", "password": "short"})),
    )
    .await;
    short.problem(400, "invalid_request");
    let r = TestServer::send(s.admin(
        Method::POST,
        &format!(
            "/admin/v1/tenants/t1/users/{}/disable",
            uuid::Uuid::new_v4()
        ),
    ))
    .await;
    r.problem(404, "not_found");
    let r = TestServer::send(s.admin(
        Method::DELETE,
        "/admin/v1/tenants/t1/sessions/AAAAAAAAAAAAAAAAAAAAAA",
    ))
    .await;
    r.problem(404, "not_found");
    TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/t1/audit?type=bogus"))
        .await
        .problem(400, "invalid_request");
    TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/t1/sessions?state=zombie"))
        .await
        .problem(400, "invalid_request");
    TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/t1/sessions?limit=-1"))
        .await
        .problem(400, "invalid_request");
    let r = TestServer::send(
        s.api(Method::DELETE, "/api/v2/sessions", "t1")
            .bearer_auth("x"),
    )
    .await;
    assert_eq!(r.status, 401);
}
