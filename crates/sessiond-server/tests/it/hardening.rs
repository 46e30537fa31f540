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
    TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/t1/users"))
        .await
        .problem(400, "invalid_request");
}

/// A server behind a trusted proxy (`proxy`: how 127.0.0.1 is listed) with `per_minute`
/// logins per client, one tenant and user `alice`.
async fn behind_proxy(proxy: &'static str, per_minute: u32) -> TestServer {
    let s = TestServer::start_with(|st| {
        st.trusted_proxies = vec![proxy.parse().unwrap()].into();
        st.limiters = std::sync::Arc::new(sessiond_server::ratelimit::Limiters::new(
            sessiond_server::ratelimit::RateLimits {
                auth_per_minute: per_minute,
                partner_per_minute: 0,
            },
        ));
    })
    .await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    s
}

/// A login through the proxy, with these `X-Forwarded-For` lines.
async fn login_via(s: &TestServer, xff: &[&str]) -> Reply {
    let mut rb = s.api(Method::POST, "/api/v2/auth/login", "t1");
    for line in xff {
        rb = rb.header("X-Forwarded-For", *line);
    }
    TestServer::send(rb.json(&json!({"username": "alice", "password": PASSWORD}))).await
}

/// A client sends its own `X-Forwarded-For` line; the proxy adds a second line with the
/// address it saw. The forged first line must neither pick the audited address nor a fresh
/// rate-limit budget.
#[tokio::test]
async fn a_forged_forwarded_for_line_neither_picks_the_address_nor_escapes_the_limit() {
    for proxy in ["127.0.0.1", "127.0.0.0/8"] {
        let s = behind_proxy(proxy, 3).await;
        for i in 0..3 {
            let forged = format!("198.51.100.{i}");
            let r = login_via(&s, &[&forged, "203.0.113.7"]).await;
            assert_eq!(r.status, 200, "{proxy}: {}", r.body);
        }
        let audited = s.audit("t1", "type=login_succeeded").await;
        assert!(
            audited.len() == 3 && audited.iter().all(|e| e["ip"] == "203.0.113.7"),
            "{proxy}: {audited:?}"
        );
        // Same client, yet another forged address (also as a list in one line): still limited.
        login_via(&s, &["192.0.2.99", "203.0.113.7"])
            .await
            .problem(429, "rate_limited");
        login_via(&s, &["192.0.2.98, 203.0.113.7"])
            .await
            .problem(429, "rate_limited");
        if proxy.contains('/') {
            // Through a second proxy of the range: skipped, the client is still found.
            login_via(&s, &["192.0.2.97", "203.0.113.7, 127.0.0.5"])
                .await
                .problem(429, "rate_limited");
        }
        // Another client behind the same proxy has its own budget.
        let other = login_via(&s, &["198.51.100.1", "203.0.113.8"]).await;
        assert_eq!(other.status, 200, "{proxy}: {}", other.body);
    }
}

/// IPv6 clients are limited per /64: a host owns the whole /64 and picks any address in it.
#[tokio::test]
async fn ipv6_clients_share_a_limit_per_64() {
    let s = behind_proxy("127.0.0.1", 2).await;
    for client in ["2001:db8:1:2::a", "2001:db8:1:2:ffff:ffff:ffff:fffe"] {
        let r = login_via(&s, &[client]).await;
        assert_eq!(r.status, 200, "{client}: {}", r.body);
    }
    login_via(&s, &["2001:db8:1:2::b"])
        .await
        .problem(429, "rate_limited");
    let neighbour = login_via(&s, &["2001:db8:1:3::a"]).await;
    assert_eq!(neighbour.status, 200, "another /64: {}", neighbour.body);
    // The audit keeps the full address.
    let ips: Vec<_> = s
        .audit("t1", "type=login_succeeded")
        .await
        .iter()
        .map(|e| e["ip"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(ips.iter().any(|ip| ip == "2001:db8:1:2::a"), "{ips:?}");
    assert!(ips.iter().any(|ip| ip == "2001:db8:1:3::a"), "{ips:?}");
}
