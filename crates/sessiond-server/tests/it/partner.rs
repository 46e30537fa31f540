//! Partner integrations: SSO-token sessions, partner logout-user, session limits under
//! concurrency, internal access tokens and introspection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::*;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::Method;
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use serde_json::{Value, json};

pub(crate) const SSO_SECRET: &str = "a-partner-shared-secret-of-32-bytes!!";

fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

/// An Ed25519 key: (signing key, SPKI PEM of the public key, raw public key).
fn ed25519() -> (EncodingKey, String, Vec<u8>) {
    let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    let spki = [
        &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ][..],
        &public,
    ]
    .concat();
    (EncodingKey::from_ed_der(pkcs8.as_ref()), pem(&spki), public)
}

fn p256() -> (EncodingKey, String) {
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let prefix = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let spki = [&prefix[..], pair.public_key().as_ref()].concat();
    (EncodingKey::from_ec_der(pkcs8.as_ref()), pem(&spki))
}

pub(crate) fn sso_claims(sub: &str, jti: &str, exp: i64) -> Value {
    json!({"sub": sub, "jti": jti, "exp": exp, "iat": START, "aud": "sessiond-sso", "iss": "https://partner.example"})
}

pub(crate) fn mint(alg: Algorithm, key: &EncodingKey, claims: &Value, kid: Option<&str>) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    encode(&h, claims, key).unwrap()
}

pub(crate) async fn sso(s: &TestServer, tenant: &str, token: &str) -> Reply {
    TestServer::send(
        s.api(Method::POST, "/api/v2/auth/sso", tenant)
            .json(&json!({"ssoToken": token})),
    )
    .await
}

pub(crate) async fn set_sso(s: &TestServer, tenant: &str, trust: Value) {
    let mut body = json!({"issuer": "https://partner.example", "audience": "sessiond-sso"});
    body.as_object_mut()
        .unwrap()
        .extend(trust.as_object().unwrap().clone());
    let r = TestServer::send(
        s.admin(Method::PUT, &format!("/admin/v1/tenants/{tenant}/sso"))
            .json(&body),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
}

#[tokio::test]
async fn sso_with_a_shared_secret_provisions_once_and_refuses_replays() {
    let s = TestServer::start().await;
    s.tenant("hub", "integration", json!({})).await;
    set_sso(&s, "hub", json!({"hs256Secret": SSO_SECRET})).await;
    let key = EncodingKey::from_secret(SSO_SECRET.as_bytes());
    let t1 = mint(
        Algorithm::HS256,
        &key,
        &sso_claims("partner-user-7", "j1", START + 60),
        None,
    );

    let first = sso(&s, "hub", &t1).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(first.body["refreshToken"].is_string());
    let me = s.whoami("hub", &first.str("userSessionToken")).await;
    assert_eq!(me.body["authMethod"], "sso");
    let user = me.body["userId"].clone();

    sso(&s, "hub", &t1).await.problem(401, "sso_token_invalid");
    // The jti record is in the shared store: another node refuses the replay too.
    let node2 = s.second_node().await;
    sso(&node2, "hub", &t1)
        .await
        .problem(401, "sso_token_invalid");
    assert_eq!(s.audit("hub", "type=suspicious_activity").await.len(), 2);

    // A later SSO login of the same partner user maps to the same sessiond user.
    let t2 = mint(
        Algorithm::HS256,
        &key,
        &sso_claims("partner-user-7", "j2", START + 60),
        None,
    );
    let second = sso(&node2, "hub", &t2).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(
        s.whoami("hub", &second.str("userSessionToken")).await.body["userId"],
        user
    );
}

#[tokio::test]
async fn sso_refuses_every_forgery() {
    let s = TestServer::start().await;
    s.tenant("hub", "integration", json!({})).await;
    set_sso(&s, "hub", json!({"hs256Secret": SSO_SECRET})).await;
    let key = EncodingKey::from_secret(SSO_SECRET.as_bytes());
    let good = |jti: &str| sso_claims("u1", jti, START + 60);
    let mut wrong_aud = good("a");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = good("b");
    wrong_iss["iss"] = json!("https://evil.example");
    let mut no_jti = good("c");
    no_jti.as_object_mut().unwrap().remove("jti");
    let mut future = good("d");
    future["nbf"] = json!(START + 3600);
    let other_key = EncodingKey::from_secret(b"another-secret-another-secret-xx");
    let (ed_key, _, _) = ed25519();
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(good("e").to_string())
    );
    let mut jku = Header::new(Algorithm::HS256);
    jku.jku = Some("https://evil.example/jwks".into());
    let with_jku = encode(&jku, &good("f"), &key).unwrap();
    for (why, token) in [
        (
            "wrong audience",
            mint(Algorithm::HS256, &key, &wrong_aud, None),
        ),
        (
            "wrong issuer",
            mint(Algorithm::HS256, &key, &wrong_iss, None),
        ),
        ("no jti", mint(Algorithm::HS256, &key, &no_jti, None)),
        ("not yet valid", mint(Algorithm::HS256, &key, &future, None)),
        (
            "expired",
            mint(
                Algorithm::HS256,
                &key,
                &sso_claims("u1", "g", START - 1),
                None,
            ),
        ),
        (
            "wrong secret",
            mint(Algorithm::HS256, &other_key, &good("h"), None),
        ),
        (
            "other algorithm",
            mint(Algorithm::EdDSA, &ed_key, &good("i"), None),
        ),
        ("alg none", unsigned),
        ("jku header", with_jku),
        ("garbage", "garbage".into()),
    ] {
        let r = sso(&s, "hub", &token).await;
        assert_eq!(r.body["code"], "sso_token_invalid", "{why}: {}", r.body);
    }
    // A tenant without SSO settings trusts no SSO token.
    s.tenant("plain", "integration", json!({})).await;
    sso(&s, "plain", &mint(Algorithm::HS256, &key, &good("j"), None))
        .await
        .problem(401, "sso_token_invalid");
}

#[tokio::test]
async fn sso_with_public_keys_rsa_ec_and_ed25519() {
    let s = TestServer::start().await;
    let rsa_private = include_str!("fixtures/rsa-private.pem");
    let rsa_public = include_str!("fixtures/rsa-public.pem");
    let (ed_key, ed_pem, _) = ed25519();
    let (ec_key, ec_pem) = p256();
    let rsa_key = EncodingKey::from_rsa_pem(rsa_private.as_bytes()).unwrap();
    for (tenant, pem, alg, key) in [
        ("rsa", rsa_public.to_owned(), Algorithm::RS256, &rsa_key),
        ("ec", ec_pem, Algorithm::ES256, &ec_key),
        ("ed", ed_pem.clone(), Algorithm::EdDSA, &ed_key),
    ] {
        s.tenant(tenant, "integration", json!({})).await;
        set_sso(&s, tenant, json!({"publicKeyPem": pem})).await;
        let r = sso(
            &s,
            tenant,
            &mint(alg, key, &sso_claims("u1", "k1", START + 60), None),
        )
        .await;
        assert_eq!(r.status, 200, "{tenant}: {}", r.body);
        // HS256 "signed" with the public key text must not pass (algorithm confusion).
        let confused = EncodingKey::from_secret(pem.as_bytes());
        let r = sso(
            &s,
            tenant,
            &mint(
                Algorithm::HS256,
                &confused,
                &sso_claims("u1", "k2", START + 60),
                None,
            ),
        )
        .await;
        r.problem(401, "sso_token_invalid");
    }
    let bad = TestServer::send(
        s.admin(Method::PUT, "/admin/v1/tenants/ed/sso")
            .json(&json!({"audience": "x", "publicKeyPem": "not a key"})),
    )
    .await;
    bad.problem(400, "invalid_request");
    let two = TestServer::send(
        s.admin(Method::PUT, "/admin/v1/tenants/ed/sso")
            .json(&json!({"audience": "x", "publicKeyPem": ed_pem, "hs256Secret": SSO_SECRET})),
    )
    .await;
    two.problem(400, "invalid_request");
}

#[tokio::test]
async fn sso_with_a_jwks_url_refetches_for_new_keys_at_a_bounded_rate() {
    let (k1, _, pub1) = ed25519();
    let (k2, _, pub2) = ed25519();
    let jwks = std::sync::Arc::new(std::sync::Mutex::new(json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&pub1), "kid": "k1", "alg": "EdDSA"}
    ]})));
    let served = jwks.clone();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let j = served.lock().unwrap().clone();
            async move { axum::Json(j) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let s = TestServer::start().await;
    s.tenant("hub", "integration", json!({})).await;
    set_sso(&s, "hub", json!({"jwksUrl": url})).await;
    let r = sso(
        &s,
        "hub",
        &mint(
            Algorithm::EdDSA,
            &k1,
            &sso_claims("u1", "a", START + 600),
            Some("k1"),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The partner rotates to k2: its kid is unknown, and the JWKS is fetched again only
    // once the refetch interval has passed.
    jwks.lock().unwrap()["keys"][0] =
        json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&pub2), "kid": "k2"});
    let r = sso(
        &s,
        "hub",
        &mint(
            Algorithm::EdDSA,
            &k2,
            &sso_claims("u1", "b", START + 600),
            Some("k2"),
        ),
    )
    .await;
    r.problem(401, "sso_token_invalid");
    s.clock.advance(31);
    let r = sso(
        &s,
        "hub",
        &mint(
            Algorithm::EdDSA,
            &k2,
            &sso_claims("u1", "d", START + 600),
            Some("k2"),
        ),
    )
    .await;
    assert_eq!(
        r.status, 200,
        "an unknown kid refetches once the interval has passed: {}",
        r.body
    );
    let r = sso(
        &s,
        "hub",
        &mint(
            Algorithm::EdDSA,
            &k1,
            &sso_claims("u1", "c", START + 600),
            Some("k1"),
        ),
    )
    .await;
    r.problem(401, "sso_token_invalid");
    let r = sso(
        &s,
        "hub",
        &mint(
            Algorithm::EdDSA,
            &k2,
            &sso_claims("u1", "e", START + 600),
            None,
        ),
    )
    .await;
    r.problem(401, "sso_token_invalid");
}

async fn partner_secret(s: &TestServer, tenant: &str) -> (String, String) {
    let r = TestServer::send(s.admin(
        Method::POST,
        &format!("/admin/v1/tenants/{tenant}/partner-secrets"),
    ))
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    (r.str("secretId"), r.str("secret"))
}

async fn partner_logout(s: &TestServer, secret: Option<&str>, user: &str) -> Reply {
    let mut rb = s
        .req(Method::POST, "/v1/auth/partner/logout-user")
        .json(&json!({"userId": user}));
    if let Some(sec) = secret {
        rb = rb.header("X-PARTNER-SECRET", sec);
    }
    TestServer::send(rb).await
}

#[tokio::test]
async fn partner_logout_by_sessiond_or_external_id() {
    let s = TestServer::start().await;
    let alice = s.tenant_with_user("hub", "integration", json!({})).await;
    set_sso(&s, "hub", json!({"hs256Secret": SSO_SECRET})).await;
    let key = EncodingKey::from_secret(SSO_SECRET.as_bytes());
    let (_, secret) = partner_secret(&s, "hub").await;
    let (old_id, old_secret) = partner_secret(&s, "hub").await;

    let a1 = s.login_ok("hub", "alice").await.str("userSessionToken");
    let a2 = s.login_ok("hub", "alice").await.str("userSessionToken");
    let r = partner_logout(&s, Some(&secret), &alice).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["success"].clone(), r.body["revoked"].clone()),
        (json!(true), json!(2))
    );
    s.whoami("hub", &a1).await.problem(401, "session_revoked");
    s.whoami("hub", &a2).await.problem(401, "session_revoked");
    assert_eq!(
        s.audit("hub", "type=session_revoked").await[0]["reason"],
        "partner_logout"
    );

    // By the partner's own id for an SSO user, with the second active secret.
    let t = sso(
        &s,
        "hub",
        &mint(
            Algorithm::HS256,
            &key,
            &sso_claims("ext-42", "x1", START + 60),
            None,
        ),
    )
    .await;
    let r = partner_logout(&s, Some(&old_secret), "ext-42").await;
    assert_eq!(r.body["revoked"], 1, "{}", r.body);
    s.whoami("hub", &t.str("userSessionToken"))
        .await
        .problem(401, "session_revoked");
    // Unknown users have nothing to revoke.
    assert_eq!(
        partner_logout(&s, Some(&secret), "nobody").await.body["revoked"],
        0
    );

    // Revoked, wrong, malformed and missing secrets.
    let r = TestServer::send(s.admin(
        Method::DELETE,
        &format!("/admin/v1/tenants/hub/partner-secrets/{old_id}"),
    ))
    .await;
    assert_eq!(r.status, 204);
    partner_logout(&s, Some(&old_secret), &alice)
        .await
        .problem(401, "invalid_partner_secret");
    let forged = format!("{}x", &secret[..secret.len() - 1]);
    partner_logout(&s, Some(&forged), &alice)
        .await
        .problem(401, "invalid_partner_secret");
    partner_logout(&s, Some("no-dot"), &alice)
        .await
        .problem(401, "invalid_partner_secret");
    partner_logout(&s, None, &alice)
        .await
        .problem(400, "missing_header");
    let r = TestServer::send(s.admin(
        Method::DELETE,
        &format!("/admin/v1/tenants/hub/partner-secrets/{old_id}"),
    ))
    .await;
    r.problem(404, "not_found");

    // A secret names its tenant: it cannot reach another tenant's users.
    let bob = s.tenant_with_user("other", "integration", json!({})).await;
    let b = s.login_ok("other", "alice").await.str("userSessionToken");
    assert_eq!(
        partner_logout(&s, Some(&secret), &bob).await.body["revoked"],
        0
    );
    assert_eq!(s.whoami("other", &b).await.status, 200);
}

#[tokio::test]
async fn partner_endpoint_is_rate_limited() {
    let s = TestServer::start_with(|st| {
        st.limiters = std::sync::Arc::new(sessiond_server::ratelimit::Limiters::new(
            sessiond_server::ratelimit::RateLimits {
                partner_per_minute: 3,
                ..sessiond_server::ratelimit::RateLimits::unlimited()
            },
        ));
    })
    .await;
    for _ in 0..3 {
        partner_logout(&s, Some("x.y"), "u")
            .await
            .problem(401, "invalid_partner_secret");
    }
    let r = partner_logout(&s, Some("x.y"), "u").await;
    r.problem(429, "rate_limited");
    assert!(
        r.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
}

#[tokio::test]
async fn one_session_per_user_holds_under_concurrent_logins() {
    let s = TestServer::start().await;
    let uid = s
        .tenant_with_user("hub", "integration", json!({"maxSessionsPerUser": 1}))
        .await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let rb = s
            .api(Method::POST, "/api/v2/auth/login", "hub")
            .json(&json!({"username": "alice", "password": PASSWORD}));
        set.spawn(TestServer::send(rb));
    }
    let replies = set.join_all().await;
    assert!(replies.iter().all(|r| r.status == 200));
    let active = TestServer::send(s.admin(
        Method::GET,
        &format!("/admin/v1/tenants/hub/sessions?userId={uid}&state=active"),
    ))
    .await;
    assert_eq!(
        active.body["sessions"].as_array().unwrap().len(),
        1,
        "{}",
        active.body
    );
    let mut live = 0;
    for r in &replies {
        let me = s.whoami("hub", &r.str("userSessionToken")).await;
        if me.status == 200 {
            live += 1;
        } else {
            me.problem(401, "session_displaced");
        }
    }
    assert_eq!(live, 1);
}

pub(crate) async fn client(s: &TestServer, tenant: &str, audience: &str) -> (String, String) {
    let r = TestServer::send(
        s.admin(Method::POST, &format!("/admin/v1/tenants/{tenant}/clients"))
            .json(&json!({"audience": audience})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    (r.str("clientId"), r.str("clientSecret"))
}

pub(crate) async fn introspect(s: &TestServer, id: &str, secret: &str, token: &str) -> Reply {
    TestServer::send(
        s.req(Method::POST, "/oauth2/introspect")
            .basic_auth(id, Some(secret))
            .form(&[("token", token)]),
    )
    .await
}

#[tokio::test]
async fn internal_access_tokens_are_bound_to_the_session() {
    let s = TestServer::start().await;
    s.tenant_with_user("fin", "integration", json!({})).await;
    let (id, secret) = client(&s, "fin", "ledger-service").await;
    let login = s.login_ok("fin", "alice").await;
    let session_token = login.str("userSessionToken");

    let mint = |cred: (&str, &str), tok: &str| {
        s.api(Method::POST, "/internal/v1/access-token", "fin")
            .basic_auth(cred.0, Some(cred.1))
            .header("X-User-Session-Token", tok)
    };
    let r = TestServer::send(mint((&id, &secret), &session_token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.body["audience"], "ledger-service");
    assert!(r.body["expires_in"].as_i64().unwrap() <= 300);
    let internal = r.str("access_token");

    // Not a session token.
    s.whoami("fin", &internal)
        .await
        .problem(401, "token_invalid");
    // Wrong client credentials, missing session token.
    TestServer::send(mint((&id, "wrong"), &session_token))
        .await
        .problem(401, "forbidden");
    TestServer::send(mint(("nobody", &secret), &session_token))
        .await
        .problem(401, "forbidden");
    let r = TestServer::send(
        s.api(Method::POST, "/internal/v1/access-token", "fin")
            .basic_auth(&id, Some(&secret)),
    )
    .await;
    r.problem(400, "missing_header");

    // Introspection: live while the session is, inactive once it is revoked.
    let live = introspect(&s, &id, &secret, &internal).await;
    assert_eq!(live.body["active"], true, "{}", live.body);
    assert_eq!(live.body["aud"], "ledger-service");
    assert_eq!(live.body["sid"], login.body["sessionId"]);
    assert_eq!(
        introspect(&s, &id, &secret, &session_token).await.body["active"],
        true
    );
    assert_eq!(
        introspect(&s, &id, &secret, "garbage").await.body,
        json!({"active": false})
    );
    assert_eq!(s.logout("fin", &session_token).await.status, 204);
    assert_eq!(
        introspect(&s, &id, &secret, &internal).await.body,
        json!({"active": false})
    );
    assert_eq!(
        introspect(&s, &id, &secret, &session_token).await.body,
        json!({"active": false})
    );
    TestServer::send(mint((&id, &secret), &session_token))
        .await
        .problem(401, "session_revoked");
    introspect(&s, &id, "wrong", &internal)
        .await
        .problem(401, "forbidden");

    // A client of another tenant learns nothing about this tenant's tokens.
    s.tenant_with_user("other", "integration", json!({})).await;
    let (oid, osecret) = client(&s, "other", "other-service").await;
    let fresh = s.login_ok("fin", "alice").await.str("userSessionToken");
    assert_eq!(
        introspect(&s, &oid, &osecret, &fresh).await.body,
        json!({"active": false})
    );
    // Form credentials work as well as Basic.
    let r = TestServer::send(s.req(Method::POST, "/oauth2/introspect").form(&[
        ("token", fresh.as_str()),
        ("client_id", &id),
        ("client_secret", &secret),
    ]))
    .await;
    assert_eq!(r.body["active"], true, "{}", r.body);
}
