//! The session lifecycle of the seeds, end to end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn login_whoami_refresh_logout() {
    let s = TestServer::start().await;
    let user_id = s
        .tenant_with_user("1234567", "integration", json!({}))
        .await;

    let login = s.login_ok("1234567", "alice").await;
    let b = &login.body;
    assert_eq!(b["expires_in"], 3600);
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["tenantId"], "1234567");
    assert_eq!(b["refresh_expires_in"], 86400);
    assert!(b["customerId"].is_string() && b["scope"].is_string());
    assert_eq!(login.headers["cache-control"], "no-store");
    let token = login.str("userSessionToken");
    let sid = login.str("sessionId");

    let me = s.whoami("1234567", &token).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["sessionId"], sid.as_str());
    assert_eq!(me.body["userId"], user_id.as_str());
    assert_eq!(me.body["state"], "active");

    let r = s.refresh("1234567", &login.str("refreshToken")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["sessionId"], sid.as_str());
    assert_ne!(r.str("refreshToken"), login.str("refreshToken"));
    let token2 = r.str("userSessionToken");
    assert_eq!(s.whoami("1234567", &token2).await.status, 200);

    assert_eq!(s.logout("1234567", &token2).await.status, 204);
    s.whoami("1234567", &token)
        .await
        .problem(401, "session_revoked");
    s.whoami("1234567", &token2)
        .await
        .problem(401, "session_revoked");
    s.refresh("1234567", &r.str("refreshToken"))
        .await
        .problem(401, "session_revoked");
    // Logout is idempotent.
    assert_eq!(s.logout("1234567", &token2).await.status, 204);

    let kinds: Vec<String> = s
        .audit("1234567", &format!("sessionId={sid}"))
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "session_revoked",
            "session_refreshed",
            "session_created",
            "login_succeeded"
        ]
    );
}

#[tokio::test]
async fn token_claims_follow_the_contract() {
    let s = TestServer::start().await;
    let user_id = s.tenant_with_user("t1", "integration", json!({})).await;
    let login = s.login_ok("t1", "alice").await;
    let token = login.str("userSessionToken");
    let parts: Vec<&str> = token.split('.').collect();
    let decode = |p: &str| -> serde_json::Value {
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap(),
        )
        .unwrap()
    };
    let header = decode(parts[0]);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    let jwks = TestServer::send(s.req(Method::GET, "/.well-known/jwks.json")).await;
    assert!(
        jwks.body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"])
    );
    assert_eq!(
        jwks.body["keys"].as_array().unwrap().len(),
        2,
        "signing key and published next key"
    );
    let c = decode(parts[1]);
    for claim in [
        "iss",
        "aud",
        "sub",
        "sid",
        "tid",
        "cid",
        "scope",
        "jti",
        "iat",
        "nbf",
        "exp",
        "auth_time",
        "amr",
    ] {
        assert!(!c[claim].is_null(), "claim {claim} missing: {c}");
    }
    assert_eq!(c["sub"], user_id.as_str());
    assert_eq!(c["tid"], "t1");
    assert_eq!(c["iss"], ISSUER);
    assert_eq!(c["sid"], login.body["sessionId"]);
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
}

#[tokio::test]
async fn headers_are_echoed_and_activity_is_generated_where_optional() {
    let s = TestServer::start().await;
    s.tenant_with_user("play", "playground", json!({})).await;
    let r = TestServer::send(
        s.req(Method::POST, "/api/v2/auth/login")
            .header("X-Tenant-ID", "play")
            .header("X-Correlation-ID", "corr-12345678")
            .header("X-Session-ID", "session-12345678")
            .json(&json!({"username": "alice", "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["x-correlation-id"], "corr-12345678");
    assert_eq!(r.headers["x-session-id"], "session-12345678");
    let generated = r.headers["x-activity-id"].to_str().unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(generated).unwrap().get_version_num(),
        4
    );
    // Playground: no refresh token, 10000 s tokens.
    assert!(r.body.get("refreshToken").is_none() && r.body.get("refresh_expires_in").is_none());
    assert_eq!(r.body["expires_in"], 10000);

    let a = activity();
    let r = TestServer::send(
        s.api(Method::GET, "/healthz", "play")
            .header("X-Activity-ID", &a),
    )
    .await;
    assert_eq!(r.status, 200);
    let events = s.audit("play", "type=login_succeeded").await;
    assert_eq!(events[0]["correlationId"], "corr-12345678");
    assert_eq!(events[0]["activityId"], generated);
}

#[tokio::test]
async fn finhub_logout_header_form() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let token = s.login_ok("t1", "alice").await.str("userSessionToken");
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/logout", "t1")
            .header("X-Session-Active", "true")
            .header("X-User-Session-Token", &token),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    s.whoami("t1", &token).await.problem(401, "session_revoked");
}

#[tokio::test]
async fn logout_all_and_device_management() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    s.user("t1", "bob").await;
    let phone = s.login_ok("t1", "alice").await;
    let laptop = s.login_ok("t1", "alice").await;
    let tablet = s.login_ok("t1", "alice").await;
    let bob = s.login_ok("t1", "bob").await;
    let tok = |r: &Reply| r.str("userSessionToken");

    let list = TestServer::send(
        s.api(Method::GET, "/api/v2/sessions", "t1")
            .bearer_auth(tok(&phone)),
    )
    .await;
    let sessions = list.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    let current: Vec<_> = sessions.iter().filter(|x| x["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["sessionId"], phone.body["sessionId"]);

    // Revoke one device; another user's session cannot be revoked.
    let path = format!("/api/v2/sessions/{}", laptop.str("sessionId"));
    assert_eq!(
        TestServer::send(s.api(Method::DELETE, &path, "t1").bearer_auth(tok(&phone)))
            .await
            .status,
        204
    );
    s.whoami("t1", &tok(&laptop))
        .await
        .problem(401, "session_revoked");
    let path = format!("/api/v2/sessions/{}", bob.str("sessionId"));
    TestServer::send(s.api(Method::DELETE, &path, "t1").bearer_auth(tok(&phone)))
        .await
        .problem(404, "not_found");
    assert_eq!(s.whoami("t1", &tok(&bob)).await.status, 200);

    // All others: keeps the current one.
    let r = TestServer::send(
        s.api(Method::DELETE, "/api/v2/sessions?scope=others", "t1")
            .bearer_auth(tok(&phone)),
    )
    .await;
    assert_eq!(r.body["revoked"], 1, "{}", r.body);
    s.whoami("t1", &tok(&tablet))
        .await
        .problem(401, "session_revoked");
    assert_eq!(s.whoami("t1", &tok(&phone)).await.status, 200);

    let laptop2 = s.login_ok("t1", "alice").await;
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/logout-all", "t1")
            .bearer_auth(tok(&laptop2)),
    )
    .await;
    assert_eq!(r.body["revoked"], 2, "{}", r.body);
    s.whoami("t1", &tok(&phone))
        .await
        .problem(401, "session_revoked");
    assert_eq!(
        s.whoami("t1", &tok(&bob)).await.status,
        200,
        "other users keep their sessions"
    );
}

#[tokio::test]
async fn idle_and_absolute_timeouts_use_the_clock() {
    let s = TestServer::start().await;
    s.tenant_with_user("prod", "production", json!({"httpsOnly": false}))
        .await;
    let login = s.login_ok("prod", "alice").await;
    let token = login.str("userSessionToken");
    // Activity within the idle timeout (30 min) keeps the session alive past it.
    for _ in 0..3 {
        s.clock.advance(15 * 60);
        let me = s.whoami("prod", &token).await;
        assert_eq!(me.status, 200, "{}", me.body);
    }
    s.clock.advance(31 * 60);
    s.refresh("prod", &login.str("refreshToken"))
        .await
        .problem(401, "session_expired");
    // A token still within its own lifetime is refused once its session idled out.
    let token = s.login_ok("prod", "alice").await.str("userSessionToken");
    s.clock.advance(31 * 60);
    s.whoami("prod", &token)
        .await
        .problem(401, "session_expired");
    s.clock.advance(30 * 60);
    s.whoami("prod", &token).await.problem(401, "token_expired");
    assert_eq!(s.audit("prod", "type=session_expired").await.len(), 2);

    // Absolute lifetime: refreshing every 20 minutes does not pass 24 h.
    let login = s.login_ok("prod", "alice").await;
    let mut rt = login.str("refreshToken");
    let mut last = None;
    for _ in 0..80 {
        s.clock.advance(20 * 60);
        let r = s.refresh("prod", &rt).await;
        if r.status != 200 {
            last = Some(r);
            break;
        }
        assert!(r.body["expires_in"].as_i64().unwrap() <= 3600);
        rt = r.str("refreshToken");
    }
    last.expect("the absolute lifetime must end the session")
        .problem(401, "session_expired");
}
