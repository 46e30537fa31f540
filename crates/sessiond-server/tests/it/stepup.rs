//! Step-up re-authentication over real HTTP: a new token for the same session with a fresh
//! `auth_time`, the tenant's `reauthMaxAge` on operations that end other sessions, and the
//! attacks on it (wrong passwords back off, SSO tokens are single use and bound to the user).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::partner::{SSO_SECRET, client, introspect, mint, set_sso, sso, sso_claims};
use crate::testkit::*;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::{Value, json};

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

async fn reauth(s: &TestServer, tenant: &str, token: &str, body: Value) -> Reply {
    TestServer::send(
        s.api(Method::POST, "/api/v2/auth/reauthenticate", tenant)
            .bearer_auth(token)
            .json(&body),
    )
    .await
}

async fn logout_all(s: &TestServer, tenant: &str, token: &str) -> Reply {
    TestServer::send(
        s.api(Method::POST, "/api/v2/auth/logout-all", tenant)
            .bearer_auth(token),
    )
    .await
}

#[tokio::test]
async fn reauthentication_renews_auth_time_for_the_same_session() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let login = s.login_ok("t1", "alice").await;
    let (token, rt) = (login.str("userSessionToken"), login.str("refreshToken"));
    assert_eq!(claims(&token)["auth_time"], START);
    s.clock.advance(100);
    let r = reauth(&s, "t1", &token, json!({"password": PASSWORD})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("refreshToken").is_none(), "no new refresh token");
    assert_eq!(
        r.str("sessionId"),
        login.str("sessionId"),
        "the same session"
    );
    let fresh = r.str("userSessionToken");
    assert_eq!(claims(&fresh)["auth_time"], START + 100);
    assert_eq!(claims(&fresh)["amr"], json!(["pwd"]));
    assert_eq!(s.whoami("t1", &fresh).await.status, 200);
    assert_eq!(
        s.whoami("t1", &token).await.status,
        200,
        "the old token still works"
    );

    // Later refreshes keep the new auth_time; introspection reports it.
    s.clock.advance(10);
    let next = s.refresh("t1", &rt).await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(
        claims(&next.str("userSessionToken"))["auth_time"],
        START + 100
    );
    let (id, secret) = client(&s, "t1", "svc").await;
    let i = introspect(&s, &id, &secret, &next.str("userSessionToken")).await;
    assert_eq!(i.body["auth_time"], START + 100, "{}", i.body);
    let audit = s.audit("t1", "type=session_reauthenticated").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["reason"], "pwd");
}

#[tokio::test]
async fn a_stale_session_must_reauthenticate_before_ending_other_sessions() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({"reauthMaxAge": 300}))
        .await;
    let phone = s.login_ok("t1", "alice").await;
    let laptop = s.login_ok("t1", "alice").await;
    let token = laptop.str("userSessionToken");
    // Fresh enough: allowed (and undone by logging in again).
    s.clock.advance(300);
    let r = TestServer::send(
        s.api(
            Method::DELETE,
            &format!("/api/v2/sessions/{}", phone.str("sessionId")),
            "t1",
        )
        .bearer_auth(&token),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.body);
    let phone = s.login_ok("t1", "alice").await;

    s.clock.advance(1);
    logout_all(&s, "t1", &token)
        .await
        .problem(401, "reauthentication_required");
    TestServer::send(
        s.api(Method::DELETE, "/api/v2/sessions?scope=others", "t1")
            .bearer_auth(&token),
    )
    .await
    .problem(401, "reauthentication_required");
    TestServer::send(
        s.api(
            Method::DELETE,
            &format!("/api/v2/sessions/{}", phone.str("sessionId")),
            "t1",
        )
        .bearer_auth(&token),
    )
    .await
    .problem(401, "reauthentication_required");
    assert_eq!(
        s.whoami("t1", &phone.str("userSessionToken")).await.status,
        200,
        "nothing was revoked"
    );
    // Ending one's own session never needs it.
    let own = s.login_ok("t1", "alice").await;
    s.clock.advance(301);
    assert_eq!(
        s.logout("t1", &own.str("userSessionToken")).await.status,
        204
    );

    let fresh = reauth(&s, "t1", &token, json!({"password": PASSWORD})).await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    let r = logout_all(&s, "t1", &fresh.str("userSessionToken")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["revoked"], 2);
}

/// Guesses through re-authentication and through login count against one account: with a
/// backoff after two failures, one wrong login and one wrong re-authentication hold even the
/// right password back.
#[tokio::test]
async fn wrong_passwords_are_refused_and_back_off_like_logins() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({"loginBackoffAfter": 2}))
        .await;
    let token = s.login_ok("t1", "alice").await.str("userSessionToken");
    TestServer::send(
        s.api(Method::POST, "/api/v2/auth/login", "t1")
            .json(&json!({"username": "alice", "password": "guess-guess"})),
    )
    .await
    .problem(401, "invalid_credentials");
    reauth(&s, "t1", &token, json!({"password": "guess-guess"}))
        .await
        .problem(401, "invalid_credentials");
    reauth(&s, "t1", &token, json!({"password": PASSWORD}))
        .await
        .problem(429, "rate_limited");
    s.login("t1", "alice").await.problem(429, "rate_limited");
    let audit = s.audit("t1", "type=session_reauthenticated").await;
    assert!(audit.is_empty(), "no re-authentication for a guess");
    for body in [
        json!({}),
        json!({"password": PASSWORD, "ssoToken": "x"}),
        json!({"ssoToken": "x"}),
    ] {
        reauth(&s, "t1", &token, body)
            .await
            .problem(400, "invalid_request");
    }
}

#[tokio::test]
async fn an_ended_session_cannot_be_reauthenticated() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let token = s.login_ok("t1", "alice").await.str("userSessionToken");
    assert_eq!(s.logout("t1", &token).await.status, 204);
    reauth(&s, "t1", &token, json!({"password": PASSWORD}))
        .await
        .problem(401, "session_revoked");
}

#[tokio::test]
async fn an_sso_session_reauthenticates_with_a_fresh_token_of_the_same_user() {
    let s = TestServer::start().await;
    s.tenant("hub", "integration", json!({})).await;
    set_sso(&s, "hub", json!({"hs256Secret": SSO_SECRET})).await;
    let key = EncodingKey::from_secret(SSO_SECRET.as_bytes());
    let token_for = |sub: &str, jti: &str| {
        mint(
            Algorithm::HS256,
            &key,
            &sso_claims(sub, jti, START + 600),
            None,
        )
    };
    let login = sso(&s, "hub", &token_for("u7", "j1")).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let session = login.str("userSessionToken");
    // Another partner user's valid token proves nothing about this session — and is not
    // spent by the attempt: its user still logs in with it.
    sso(&s, "hub", &token_for("u8", "j2")).await;
    reauth(
        &s,
        "hub",
        &session,
        json!({"ssoToken": token_for("u8", "j3")}),
    )
    .await
    .problem(401, "sso_token_invalid");
    assert_eq!(sso(&s, "hub", &token_for("u8", "j3")).await.status, 200);
    // The login's own token is spent.
    reauth(
        &s,
        "hub",
        &session,
        json!({"ssoToken": token_for("u7", "j1")}),
    )
    .await
    .problem(401, "sso_token_invalid");
    reauth(&s, "hub", &session, json!({"password": PASSWORD}))
        .await
        .problem(400, "invalid_request");
    s.clock.advance(5);
    let r = reauth(
        &s,
        "hub",
        &session,
        json!({"ssoToken": token_for("u7", "j4")}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let fresh = claims(&r.str("userSessionToken"));
    assert_eq!(fresh["auth_time"], START + 5);
    assert_eq!(fresh["amr"], json!(["sso"]));
    // Single use here too.
    reauth(
        &s,
        "hub",
        &session,
        json!({"ssoToken": token_for("u7", "j4")}),
    )
    .await
    .problem(401, "sso_token_invalid");
}

/// In cookie mode the new token replaces the session cookie, which lives as long as the
/// refresh cookie may still be used; the CSRF token is required.
#[tokio::test]
async fn cookie_mode_reauthentication_sets_the_session_cookie() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/login", "t1")
            .json(&json!({"username": "alice", "password": PASSWORD, "mode": "cookie"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let csrf = r.str("csrfToken");
    let cookies: Vec<String> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    let jar = cookies.join("; ");
    let send = |csrf: Option<&str>| {
        let mut rb = s
            .api(Method::POST, "/api/v2/auth/reauthenticate", "t1")
            .header("cookie", &jar)
            .json(&json!({"password": PASSWORD}));
        if let Some(c) = csrf {
            rb = rb.header("x-csrf-token", c);
        }
        TestServer::send(rb)
    };
    assert_eq!(send(None).await.status, 403, "no CSRF token");
    let r = send(Some(&csrf)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("userSessionToken").is_none());
    let session_cookie = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-sessiond-session="))
        .unwrap();
    assert!(
        session_cookie.contains("Max-Age=86400"),
        "as long as the session may refresh: {session_cookie}"
    );
}
