//! Outbound requests (JWKS fetches, webhooks): production tenants cannot point them at
//! internal addresses — refused when set, and again when connecting — while playground and
//! integration tenants may; and tokens with unknown `kid`s cannot make the server fetch at will.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::Method;
use serde_json::{Value, json};
use sessiond_store::{IdentityStore, PolicyOverrides, Profile, SsoSettings, Tenant, TenantId};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Addresses no production tenant may name (each written as an operator could).
const INTERNAL: [&str; 8] = [
    "http://127.0.0.1:9/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://10.0.0.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://127.1/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "https://localhost:8443/hook",
];

/// A local server answering `GET /jwks.json` with `jwks` and `POST /hook` with 204, counting
/// each and keeping the hooks' bodies. Returns its base URL.
struct Local {
    base: String,
    jwks_hits: Arc<AtomicUsize>,
    hooks: Arc<std::sync::Mutex<Vec<Value>>>,
}

async fn local_server(jwks: Value) -> Local {
    let jwks_hits = Arc::new(AtomicUsize::new(0));
    let hooks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (hits, seen) = (jwks_hits.clone(), hooks.clone());
    let app = axum::Router::new()
        .route(
            "/jwks.json",
            axum::routing::get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                let j = jwks.clone();
                async move { axum::Json(j) }
            }),
        )
        .route(
            "/hook",
            axum::routing::post(move |body: String| {
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap_or(Value::Null));
                async { axum::http::StatusCode::NO_CONTENT }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Local {
        base: format!("http://127.0.0.1:{port}"),
        jwks_hits,
        hooks,
    }
}

fn port_of(base: &str) -> &str {
    base.rsplit(':').next().unwrap()
}

/// The partner's Ed25519 signing key and its JWKS (kid `k1`).
fn partner_key() -> (EncodingKey, Value) {
    use base64::Engine as _;
    use ring::signature::KeyPair;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key());
    (
        EncodingKey::from_ed_der(pkcs8.as_ref()),
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA"}]}),
    )
}

/// An SSO token naming `kid`, signed with `key`.
fn token_with_kid(key: &EncodingKey, kid: &str, jti: &str) -> String {
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some(kid.to_owned());
    let claims = json!({"sub": "u1", "jti": jti, "exp": START + 600, "iat": START,
        "aud": "sessiond-sso", "iss": "https://partner.example"});
    encode(&h, &claims, key).unwrap()
}

async fn sso(s: &TestServer, tenant: &str, token: &str) -> Reply {
    TestServer::send(
        s.api(Method::POST, "/api/v2/auth/sso", tenant)
            .json(&json!({"ssoToken": token})),
    )
    .await
}

async fn put_sso(s: &TestServer, tenant: &str, jwks_url: &str) -> Reply {
    TestServer::send(
        s.admin(Method::PUT, &format!("/admin/v1/tenants/{tenant}/sso"))
            .json(
                &json!({"issuer": "https://partner.example", "audience": "sessiond-sso",
                "jwksUrl": jwks_url}),
            ),
    )
    .await
}

/// Writes SSO settings straight to the store, as data set before these checks existed (or
/// by another tool) would be: only the connect-time checks stand in the way.
async fn store_sso(s: &TestServer, tenant: &str, jwks_url: &str) {
    s.store
        .set_sso(
            &TenantId::parse(tenant).unwrap(),
            SsoSettings {
                issuer: Some("https://partner.example".into()),
                audience: "sessiond-sso".into(),
                sealed_hs256_secret: None,
                public_key_pem: None,
                jwks_url: Some(jwks_url.into()),
                verify_url: None,
                sealed_verify_secret: None,
                updated_at: START,
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn production_tenants_cannot_set_a_webhook_on_an_internal_address() {
    let s = TestServer::start().await;
    s.tenant("prod", "production", json!({})).await;
    s.tenant("dev", "integration", json!({})).await;
    for (i, url) in INTERNAL.iter().enumerate() {
        let created = TestServer::send(s.admin(Method::POST, "/admin/v1/tenants").json(
            &json!({"id": format!("p{i}"), "profile": "production", "policy": {"webhookUrl": url}}),
        ))
        .await;
        created.problem(400, "invalid_request");
        let detail = created.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("webhookUrl") && detail.contains("production"),
            "{url}: {detail}"
        );
        TestServer::send(
            s.admin(Method::PATCH, "/admin/v1/tenants/prod/policy")
                .json(&json!({"webhookUrl": url})),
        )
        .await
        .problem(400, "invalid_request");

        // Integration (and playground) tenants develop against local services.
        s.tenant(&format!("i{i}"), "integration", json!({"webhookUrl": url}))
            .await;
        let patched = TestServer::send(
            s.admin(Method::PATCH, "/admin/v1/tenants/dev/policy")
                .json(&json!({"webhookUrl": url})),
        )
        .await;
        assert_eq!(patched.status, 200, "{url}: {}", patched.body);
    }
    let public = TestServer::send(
        s.admin(Method::PATCH, "/admin/v1/tenants/prod/policy")
            .json(&json!({"webhookUrl": "https://hooks.example.com/sessiond"})),
    )
    .await;
    assert_eq!(public.status, 200, "{}", public.body);
}

#[tokio::test]
async fn production_tenants_cannot_set_a_jwks_url_on_an_internal_address() {
    let s = TestServer::start().await;
    s.tenant("prod", "production", json!({})).await;
    s.tenant("dev", "integration", json!({})).await;
    for url in INTERNAL {
        let r = put_sso(&s, "prod", url).await;
        r.problem(400, "invalid_request");
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("jwksUrl"), "{url}: {detail}");
        assert_eq!(put_sso(&s, "dev", url).await.status, 204, "{url}");
    }
    // Setting a public URL fetches nothing yet, so it needs no network here.
    let r = put_sso(
        &s,
        "prod",
        "https://partner.example.com/.well-known/jwks.json",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
}

#[tokio::test]
async fn a_production_jwks_url_on_a_loopback_name_is_never_fetched() {
    let (key, jwks) = partner_key();
    let local = local_server(jwks).await;
    let s = TestServer::start().await;
    // `localhost` resolves to loopback; it is refused when set, so it is stored directly.
    let url = format!("http://localhost:{}/jwks.json", port_of(&local.base));
    s.tenant("prod", "production", json!({"httpsOnly": false}))
        .await;
    store_sso(&s, "prod", &url).await;
    let r = sso(&s, "prod", &token_with_kid(&key, "k1", "a")).await;
    r.problem(401, "sso_token_invalid");
    // The same for a literal loopback address (never resolved, checked as such).
    s.clock.advance(60);
    store_sso(&s, "prod", &format!("{}/jwks.json", local.base)).await;
    sso(&s, "prod", &token_with_kid(&key, "k1", "b"))
        .await
        .problem(401, "sso_token_invalid");
    assert_eq!(
        local.jwks_hits.load(Ordering::SeqCst),
        0,
        "a production tenant's JWKS request never reaches a loopback address"
    );

    // An integration tenant with the same URL reaches it, and its token verifies: the server
    // above was reachable, only the policy kept the production tenant away.
    s.tenant("dev", "integration", json!({})).await;
    assert_eq!(put_sso(&s, "dev", &url).await.status, 204);
    let r = sso(&s, "dev", &token_with_kid(&key, "k1", "c")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(local.jwks_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unknown_kids_cannot_make_the_server_fetch_the_jwks_at_will() {
    let (key, jwks) = partner_key();
    let local = local_server(jwks).await;
    let s = TestServer::start().await;
    s.tenant("hub", "integration", json!({})).await;
    assert_eq!(
        put_sso(&s, "hub", &format!("{}/jwks.json", local.base))
            .await
            .status,
        204
    );
    // 50 unauthenticated tokens with random kids, all at once: one fetch, the rest wait for
    // it and are then throttled.
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..50 {
        let token = token_with_kid(&key, &uuid::Uuid::new_v4().to_string(), &format!("b{i}"));
        let req = s
            .api(Method::POST, "/api/v2/auth/sso", "hub")
            .json(&json!({"ssoToken": token}));
        burst.spawn(TestServer::send(req));
    }
    for r in burst.join_all().await {
        r.problem(401, "sso_token_invalid");
    }
    assert_eq!(local.jwks_hits.load(Ordering::SeqCst), 1);
    // One after the other, still within the refetch interval: no fetch at all.
    for i in 0..50 {
        let kid = uuid::Uuid::new_v4().to_string();
        sso(&s, "hub", &token_with_kid(&key, &kid, &format!("seq-{i}")))
            .await
            .problem(401, "sso_token_invalid");
        if i == 25 {
            s.clock.advance(10);
        }
    }
    assert_eq!(local.jwks_hits.load(Ordering::SeqCst), 1);
    // Past the interval, one more fetch.
    s.clock.advance(30);
    for i in 0..10 {
        let kid = uuid::Uuid::new_v4().to_string();
        sso(&s, "hub", &token_with_kid(&key, &kid, &format!("late-{i}")))
            .await
            .problem(401, "sso_token_invalid");
    }
    assert_eq!(local.jwks_hits.load(Ordering::SeqCst), 2);
}

/// Raises `suspicious_activity` (refresh-token reuse) for alice of `tenant`.
async fn raise_alert(s: &TestServer, tenant: &str) {
    let rt = s.login_ok(tenant, "alice").await.str("refreshToken");
    s.refresh(tenant, &rt).await;
    s.clock.advance(60);
    s.refresh(tenant, &rt)
        .await
        .problem(401, "refresh_token_reused");
}

#[tokio::test]
async fn a_production_webhook_on_a_loopback_address_is_never_delivered() {
    let local = local_server(json!({})).await;
    let hook = format!("{}/hook", local.base);
    let s = TestServer::start().await;
    // Stored directly (refused when set through the API): a production tenant whose
    // webhook points at loopback, by address and by name.
    for (id, url) in [
        ("prod", hook.clone()),
        (
            "prodname",
            format!("http://localhost:{}/hook", port_of(&local.base)),
        ),
    ] {
        s.store
            .create_tenant(Tenant {
                id: TenantId::parse(id).unwrap(),
                name: None,
                profile: Profile::Production,
                overrides: PolicyOverrides {
                    https_only: Some(false),
                    webhook_url: Some(url),
                    ..Default::default()
                },
                created_at: START,
            })
            .await
            .unwrap();
        s.user(id, "alice").await;
        raise_alert(&s, id).await;
    }
    // The same receiver for an integration tenant gets its alert.
    s.tenant_with_user("dev", "integration", json!({"webhookUrl": hook}))
        .await;
    raise_alert(&s, "dev").await;
    let mut waited = Duration::ZERO;
    while local.hooks.lock().unwrap().is_empty() && waited < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    // Production alerts were queued first; give any stray delivery time to land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tenants: Vec<Value> = local
        .hooks
        .lock()
        .unwrap()
        .iter()
        .map(|e| e["tenantId"].clone())
        .collect();
    assert_eq!(tenants, vec![json!("dev")]);
}
