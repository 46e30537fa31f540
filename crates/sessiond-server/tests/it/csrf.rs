//! Cookie mode's CSRF token is bound to the session: a matching cookie/header pair planted
//! from another session (cookie injection, a sibling subdomain) does not pass.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::*;
use reqwest::Method;
use serde_json::json;

/// A cookie-mode login: the `Cookie` header its `Set-Cookie`s make, and its CSRF token.
async fn cookie_login(s: &TestServer, user: &str) -> (String, String) {
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/login", "t1")
            .json(&json!({"username": user, "password": PASSWORD, "mode": "cookie"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    (jar(&r), r.str("csrfToken"))
}

fn cookies(r: &Reply) -> Vec<(String, String)> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            let (n, v) = pair.split_once('=').unwrap();
            (n.to_owned(), v.to_owned())
        })
        .collect()
}

fn jar(r: &Reply) -> String {
    cookies(r)
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn cookie<'a>(jar: &'a str, name: &str) -> &'a str {
    jar.split("; ")
        .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
        .unwrap()
}

/// The victim's session and refresh cookies with the attacker's CSRF cookie.
fn planted(victim: &str, attacker: &str) -> String {
    format!(
        "__Host-sessiond-session={}; __Host-sessiond-refresh={}; __Host-sessiond-csrf={}",
        cookie(victim, "__Host-sessiond-session"),
        cookie(victim, "__Host-sessiond-refresh"),
        cookie(attacker, "__Host-sessiond-csrf"),
    )
}

async fn session_of(s: &TestServer, jar: &str) -> Reply {
    TestServer::send(
        s.api(Method::GET, "/api/v2/session", "t1")
            .header("Cookie", jar),
    )
    .await
}

#[tokio::test]
async fn a_csrf_pair_from_another_session_is_refused() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    s.user("t1", "mallory").await;
    let (victim, victim_csrf) = cookie_login(&s, "alice").await;
    let (attacker, attacker_csrf) = cookie_login(&s, "mallory").await;
    assert_ne!(victim_csrf, attacker_csrf);
    assert_eq!(cookie(&attacker, "__Host-sessiond-csrf"), attacker_csrf);
    let mixed = planted(&victim, &attacker);

    // The attacker's own pair — cookie and header equal — with the victim's session.
    for (m, path) in [
        (Method::POST, "/api/v2/auth/logout"),
        (Method::POST, "/api/v2/auth/logout-all"),
        (Method::DELETE, "/api/v2/sessions?scope=others"),
    ] {
        let r = TestServer::send(
            s.api(m, path, "t1")
                .header("Cookie", &mixed)
                .header("X-CSRF-Token", &attacker_csrf),
        )
        .await;
        r.problem(403, "forbidden");
    }
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/refresh", "t1")
            .header("Cookie", &mixed)
            .header("X-CSRF-Token", &attacker_csrf)
            .json(&json!({})),
    )
    .await;
    r.problem(403, "forbidden");
    // A header matching no session's token, with or without the same cookie.
    for guess in ["0".repeat(64), "guess".to_owned()] {
        let with_cookie = format!(
            "{}; __Host-sessiond-csrf={guess}",
            victim
                .split("; ")
                .filter(|p| !p.starts_with("__Host-sessiond-csrf="))
                .collect::<Vec<_>>()
                .join("; ")
        );
        for j in [&victim, &with_cookie] {
            let r = TestServer::send(
                s.api(Method::POST, "/api/v2/auth/logout", "t1")
                    .header("Cookie", j.as_str())
                    .header("X-CSRF-Token", &guess),
            )
            .await;
            r.problem(403, "forbidden");
        }
    }

    // Nothing happened: the victim's session is active, its refresh token unrotated.
    assert_eq!(session_of(&s, &victim).await.status, 200);
    assert_eq!(session_of(&s, &attacker).await.status, 200);

    // The victim's own token works — even with the attacker's cookie planted — and a refresh
    // keeps it (same session), while the refresh cookie rotates.
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/refresh", "t1")
            .header("Cookie", &mixed)
            .header("X-CSRF-Token", &victim_csrf)
            .json(&json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.str("csrfToken"), victim_csrf);
    let refreshed = jar(&r);
    assert_eq!(cookie(&refreshed, "__Host-sessiond-csrf"), victim_csrf);
    assert_ne!(
        cookie(&refreshed, "__Host-sessiond-refresh"),
        cookie(&victim, "__Host-sessiond-refresh")
    );
    let r = TestServer::send(
        s.api(Method::DELETE, "/api/v2/sessions?scope=others", "t1")
            .header("Cookie", &refreshed)
            .header("X-CSRF-Token", &victim_csrf),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/logout", "t1")
            .header("Cookie", &refreshed)
            .header("X-CSRF-Token", &victim_csrf),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    session_of(&s, &refreshed)
        .await
        .problem(401, "session_revoked");
    // The attacker's session was never touched; a new login gets a new token.
    assert_eq!(session_of(&s, &attacker).await.status, 200);
    let (_, again) = cookie_login(&s, "alice").await;
    assert_ne!(again, victim_csrf);
}

/// A refresh token of one session with the session cookie (and CSRF token) of another is
/// refused: the CSRF token must be of the session the refresh token belongs to.
#[tokio::test]
async fn a_cookie_refresh_is_bound_to_the_refresh_tokens_session() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    s.user("t1", "mallory").await;
    let (victim, victim_csrf) = cookie_login(&s, "alice").await;
    let (attacker, attacker_csrf) = cookie_login(&s, "mallory").await;
    // The attacker's session cookie too, next to the victim's refresh cookie.
    let mixed = format!(
        "__Host-sessiond-session={}; __Host-sessiond-refresh={}; __Host-sessiond-csrf={}",
        cookie(&attacker, "__Host-sessiond-session"),
        cookie(&victim, "__Host-sessiond-refresh"),
        attacker_csrf,
    );
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/refresh", "t1")
            .header("Cookie", &mixed)
            .header("X-CSRF-Token", &attacker_csrf)
            .json(&json!({})),
    )
    .await;
    r.problem(403, "forbidden");
    // Without a session cookie the refresh names no session: refused.
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/refresh", "t1")
            .header(
                "Cookie",
                format!(
                    "__Host-sessiond-refresh={}",
                    cookie(&victim, "__Host-sessiond-refresh")
                ),
            )
            .header("X-CSRF-Token", &attacker_csrf)
            .json(&json!({})),
    )
    .await;
    r.problem(403, "forbidden");
    assert_eq!(session_of(&s, &attacker).await.status, 200);
    // The refused requests did not spend the victim's refresh token: past the grace window
    // (a spent token would now count as reuse and revoke the session) it still rotates.
    s.clock.advance(60);
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/refresh", "t1")
            .header("Cookie", &victim)
            .header("X-CSRF-Token", &victim_csrf)
            .json(&json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "the victim's refresh: {}", r.body);
    assert_eq!(session_of(&s, &jar(&r)).await.status, 200);
}

/// The session cookie outlives its token so that, once the token has expired, a cookie-mode
/// refresh (and logout) still names the session.
#[tokio::test]
async fn the_csrf_token_works_after_the_session_token_expired() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let login = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/login", "t1")
            .json(&json!({"username": "alice", "password": PASSWORD, "mode": "cookie"})),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let csrf = login.str("csrfToken");
    let refresh_age = login.body["refresh_expires_in"].as_i64().unwrap();
    let session_cookie = login
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("__Host-sessiond-session="))
        .unwrap();
    assert!(
        session_cookie.contains(&format!("Max-Age={refresh_age}")),
        "{session_cookie}"
    );
    let victim = jar(&login);
    let expires_in = login.body["expires_in"].as_i64().unwrap();
    s.clock.advance(expires_in - 60);
    // Keep the session from idling out, then let the token expire.
    assert_eq!(session_of(&s, &victim).await.status, 200);
    s.clock.advance(61);
    session_of(&s, &victim).await.problem(401, "token_expired");
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/refresh", "t1")
            .header("Cookie", &victim)
            .header("X-CSRF-Token", &csrf)
            .json(&json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.str("csrfToken"), csrf);
    let fresh = jar(&r);
    assert_eq!(session_of(&s, &fresh).await.status, 200);
    // Logout with an expired session cookie still needs the session's own token.
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/logout", "t1")
            .header("Cookie", &victim)
            .header("X-CSRF-Token", "guess"),
    )
    .await;
    r.problem(403, "forbidden");
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/logout", "t1")
            .header("Cookie", &victim)
            .header("X-CSRF-Token", &csrf),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    session_of(&s, &fresh).await.problem(401, "session_revoked");
}

/// SSO's cookie mode hands out the session-bound token too.
#[tokio::test]
async fn sso_cookie_mode_binds_the_csrf_token_to_its_session() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    const SECRET: &str = "a-partner-shared-secret-of-32-bytes!!";
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let r = TestServer::send(
        s.admin(Method::PUT, "/admin/v1/tenants/t1/sso")
            .json(&json!({
                "issuer": "https://partner.example",
                "audience": "sessiond-sso",
                "hs256Secret": SECRET,
            })),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let claims = json!({"sub": "partner-user-7", "jti": "j1", "exp": START + 60, "iat": START,
        "aud": "sessiond-sso", "iss": "https://partner.example"});
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/sso", "t1")
            .json(&json!({"ssoToken": token, "mode": "cookie"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (sso_jar, sso_csrf) = (jar(&r), r.str("csrfToken"));
    let (_, other_csrf) = cookie_login(&s, "alice").await;
    let r = TestServer::send(
        s.api(Method::DELETE, "/api/v2/sessions?scope=others", "t1")
            .header("Cookie", &sso_jar)
            .header("X-CSRF-Token", &other_csrf),
    )
    .await;
    r.problem(403, "forbidden");
    let r = TestServer::send(
        s.api(Method::DELETE, "/api/v2/sessions?scope=others", "t1")
            .header("Cookie", &sso_jar)
            .header("X-CSRF-Token", &sso_csrf),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}
