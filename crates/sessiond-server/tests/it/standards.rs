//! Standards: discovery, RFC 7009 revocation, browser sessions in cookies with CSRF defence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::*;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::json;

#[tokio::test]
async fn discovery_names_the_issuer_keys_and_endpoints() {
    let s = TestServer::start().await;
    let d = TestServer::send(s.req(Method::GET, "/.well-known/openid-configuration")).await;
    assert_eq!(d.status, 200);
    assert_eq!(d.body["issuer"], ISSUER);
    assert_eq!(
        d.body["jwks_uri"],
        format!("{ISSUER}/.well-known/jwks.json")
    );
    assert_eq!(
        d.body["introspection_endpoint"],
        format!("{ISSUER}/oauth2/introspect")
    );
    assert_eq!(
        d.body["revocation_endpoint"],
        format!("{ISSUER}/oauth2/revoke")
    );
    assert_eq!(
        d.body["access_token_signing_alg_values_supported"],
        json!(["EdDSA"])
    );
}

async fn revoke(s: &TestServer, (id, secret): &(String, String), token: &str) -> Reply {
    TestServer::send(
        s.req(Method::POST, "/oauth2/revoke")
            .basic_auth(id, Some(secret))
            .form(&[("token", token)]),
    )
    .await
}

#[tokio::test]
async fn rfc7009_revocation_of_session_and_refresh_tokens() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    s.tenant_with_user("t2", "integration", json!({})).await;
    let c1 = s.service_client("t1").await;
    let c2 = s.service_client("t2").await;

    let a = s.login_ok("t1", "alice").await;
    assert_eq!(
        revoke(&s, &c1, &a.str("userSessionToken")).await.status,
        200
    );
    s.whoami("t1", &a.str("userSessionToken"))
        .await
        .problem(401, "session_revoked");

    let b = s.login_ok("t1", "alice").await;
    assert_eq!(revoke(&s, &c1, &b.str("refreshToken")).await.status, 200);
    s.whoami("t1", &b.str("userSessionToken"))
        .await
        .problem(401, "session_revoked");

    // Another tenant's client cannot revoke, garbage is 200 as the RFC asks, bad clients 401.
    let c = s.login_ok("t1", "alice").await;
    assert_eq!(
        revoke(&s, &c2, &c.str("userSessionToken")).await.status,
        200
    );
    assert_eq!(revoke(&s, &c2, &c.str("refreshToken")).await.status, 200);
    assert_eq!(s.whoami("t1", &c.str("userSessionToken")).await.status, 200);
    assert_eq!(revoke(&s, &c1, "garbage").await.status, 200);
    let bad = (c1.0.clone(), "wrong".to_owned());
    revoke(&s, &bad, &c.str("userSessionToken"))
        .await
        .problem(401, "forbidden");
    let r = TestServer::send(
        s.req(Method::POST, "/oauth2/revoke")
            .form(&[("token", "x")]),
    )
    .await;
    r.problem(401, "forbidden");
    assert_eq!(s.whoami("t1", &c.str("userSessionToken")).await.status, 200);
}

/// The `name=value` of each `Set-Cookie`, and the attributes of each.
fn set_cookies(h: &HeaderMap) -> Vec<(String, String, String)> {
    h.get_all("set-cookie")
        .iter()
        .map(|v| {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap();
            let (n, val) = pair.split_once('=').unwrap();
            (n.to_owned(), val.to_owned(), attrs.to_owned())
        })
        .collect()
}

fn cookie_header(cookies: &[(String, String, String)]) -> String {
    cookies
        .iter()
        .map(|(n, v, _)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn cookie_mode_keeps_tokens_out_of_the_body_and_defends_against_csrf() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let login = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/login", "t1")
            .json(&json!({"username": "alice", "password": PASSWORD, "mode": "cookie"})),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(
        login.body.get("userSessionToken").is_none() && login.body.get("refreshToken").is_none()
    );
    let csrf = login.str("csrfToken");
    let cookies = set_cookies(&login.headers);
    let names: Vec<&str> = cookies.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "__Host-sessiond-session",
            "__Host-sessiond-refresh",
            "__Host-sessiond-csrf"
        ]
    );
    for (name, _, attrs) in &cookies {
        assert!(
            attrs.contains("Path=/")
                && attrs.contains("Secure")
                && attrs.contains("SameSite=Strict"),
            "{name}: {attrs}"
        );
        assert_eq!(
            attrs.contains("HttpOnly"),
            name != "__Host-sessiond-csrf",
            "{name}: {attrs}"
        );
    }
    assert_eq!(cookies[2].1, csrf);
    let jar = cookie_header(&cookies);
    let with = |m: Method, path: &str| s.api(m, path, "t1").header("Cookie", &jar);

    // Reads need no CSRF token; changes do, and a foreign Origin is refused even with it.
    assert_eq!(
        TestServer::send(with(Method::GET, "/api/v2/session"))
            .await
            .status,
        200
    );
    TestServer::send(with(Method::POST, "/api/v2/auth/logout-all"))
        .await
        .problem(403, "forbidden");
    let r = TestServer::send(
        with(Method::POST, "/api/v2/auth/logout-all").header("X-CSRF-Token", "guess"),
    )
    .await;
    r.problem(403, "forbidden");
    let r = TestServer::send(
        with(Method::DELETE, "/api/v2/sessions?scope=others")
            .header("X-CSRF-Token", &csrf)
            .header("Origin", "https://evil.example"),
    )
    .await;
    r.problem(403, "forbidden");
    let own_origin = s.base.clone();
    let r = TestServer::send(
        with(Method::DELETE, "/api/v2/sessions?scope=others")
            .header("X-CSRF-Token", &csrf)
            .header("Origin", &own_origin),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Refresh from the cookie: new cookies, no tokens in the body.
    TestServer::send(with(Method::POST, "/api/v2/auth/refresh").json(&json!({})))
        .await
        .problem(403, "forbidden");
    let r = TestServer::send(
        with(Method::POST, "/api/v2/auth/refresh")
            .header("X-CSRF-Token", &csrf)
            .json(&json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("refreshToken").is_none());
    let fresh = set_cookies(&r.headers);
    assert_ne!(fresh[1].1, cookies[1].1, "the refresh cookie rotated");
    let jar2 = cookie_header(&fresh);
    let csrf2 = r.str("csrfToken");

    // Logout from the cookie clears the cookies; the session is gone.
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/logout", "t1")
            .header("Cookie", &jar2)
            .header("X-CSRF-Token", &csrf2),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(
        set_cookies(&r.headers)
            .iter()
            .all(|(_, v, attrs)| v.is_empty() && attrs.contains("Max-Age=0"))
    );
    let r = TestServer::send(
        s.api(Method::GET, "/api/v2/session", "t1")
            .header("Cookie", &jar2),
    )
    .await;
    r.problem(401, "session_revoked");
    // A Bearer token never needs the CSRF header.
    let token = s.login_ok("t1", "alice").await.str("userSessionToken");
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/logout-all", "t1")
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(r.status, 200);
}

fn header_alg(token: &str) -> String {
    use base64::Engine as _;
    let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&h).unwrap()["alg"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn es256_tokens_verify_with_a_standard_library_from_the_jwks() {
    let s = TestServer::start_signing_with(sessiond_core::token::Alg::ES256).await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let token = s.login_ok("t1", "alice").await.str("userSessionToken");
    assert_eq!(header_alg(&token), "ES256");
    let jwks = TestServer::send(s.req(Method::GET, "/.well-known/jwks.json")).await;
    let kid = {
        use base64::Engine as _;
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&h).unwrap()["kid"].clone()
    };
    let jwk = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap()
        .clone();
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    let key = jsonwebtoken::DecodingKey::from_ec_components(
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap(),
    )
    .unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["sessiond"]);
    v.set_issuer(&[ISSUER]);
    v.validate_exp = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["tid"], "t1");
    assert_eq!(s.whoami("t1", &token).await.status, 200);
}

#[tokio::test]
async fn switching_to_es256_takes_effect_at_the_next_rotation_without_breaking_tokens() {
    use sessiond_core::token::Alg;
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let old = s.login_ok("t1", "alice").await.str("userSessionToken");
    assert_eq!(header_alg(&old), "EdDSA");

    let es = s.restart_signing_with(Alg::ES256).await;
    let still_eddsa = es.login_ok("t1", "alice").await.str("userSessionToken");
    assert_eq!(
        header_alg(&still_eddsa),
        "EdDSA",
        "the signing key does not change at start"
    );
    let keys = TestServer::send(es.admin(Method::GET, "/admin/v1/keys")).await;
    let next = keys.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "next")
        .unwrap()
        .clone();
    assert_eq!(
        next["alg"], "ES256",
        "the published next key has the new algorithm"
    );
    let r = TestServer::send(es.admin(Method::POST, "/admin/v1/keys/rotate")).await;
    assert_eq!(r.status, 200);
    let new = es.login_ok("t1", "alice").await.str("userSessionToken");
    assert_eq!(header_alg(&new), "ES256");
    for t in [&old, &still_eddsa, &new] {
        assert_eq!(es.whoami("t1", t).await.status, 200);
    }
}
