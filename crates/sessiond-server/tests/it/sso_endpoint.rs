//! Partner SSO verified by the partner's own endpoint: sessiond asks it about an opaque token
//! (RFC 7662-style, with the tenant's bearer secret), creates the session as for a JWT,
//! refuses a replay, and survives a slow or failing partner behind a circuit breaker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::*;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "partner-verification-secret-of-32-bytes-or-more";
/// Another tenant's secret for the same endpoint.
const SECRET2: &str = "another-tenants-verification-secret-32-bytes";

#[derive(Clone, Copy, PartialEq)]
enum Mood {
    Well,
    Failing,
    Slow,
}

/// The partner's verification endpoint: knows tokens → its answers; counts the questions.
#[derive(Clone)]
struct Partner {
    url: String,
    known: Arc<Mutex<HashMap<String, Value>>>,
    asked: Arc<AtomicUsize>,
    mood: Arc<Mutex<Mood>>,
}

impl Partner {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = Partner {
            url: format!("http://{}/introspect", listener.local_addr().unwrap()),
            known: Arc::default(),
            asked: Arc::default(),
            mood: Arc::new(Mutex::new(Mood::Well)),
        };
        async fn answer(
            State(p): State<Partner>,
            headers: HeaderMap,
            Form(form): Form<HashMap<String, String>>,
        ) -> (StatusCode, axum::Json<Value>) {
            p.asked.fetch_add(1, Ordering::SeqCst);
            let mood = *p.mood.lock().unwrap();
            match mood {
                Mood::Failing => return (StatusCode::BAD_GATEWAY, axum::Json(json!({}))),
                Mood::Slow => tokio::time::sleep(Duration::from_secs(10)).await,
                Mood::Well => {}
            }
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
            let accepted = [SECRET, SECRET2].map(|s| format!("Bearer {s}"));
            if !accepted.iter().any(|a| Some(a.as_str()) == auth) {
                return (StatusCode::UNAUTHORIZED, axum::Json(json!({})));
            }
            let token = form.get("token").cloned().unwrap_or_default();
            let known = p.known.lock().unwrap().get(&token).cloned();
            let answer = known.unwrap_or_else(|| json!({"active": false}));
            (StatusCode::OK, axum::Json(answer))
        }
        let app = axum::Router::new()
            .route("/introspect", axum::routing::post(answer))
            .with_state(p.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        p
    }

    /// A token of `sub`, meant for sessiond's trust, good for ten minutes.
    fn issue(&self, token: &str, sub: &str) {
        let answer = json!({"active": true, "sub": sub, "aud": ["sessiond-sso", "other"], "exp": START + 600});
        self.answer(token, answer);
    }

    fn answer(&self, token: &str, answer: Value) {
        self.known.lock().unwrap().insert(token.to_owned(), answer);
    }

    fn set(&self, mood: Mood) {
        *self.mood.lock().unwrap() = mood;
    }
}

async fn trust(s: &TestServer, tenant: &str, url: &str, secret: &str) -> Reply {
    TestServer::send(
        s.admin(Method::PUT, &format!("/admin/v1/tenants/{tenant}/sso"))
            .json(&json!({"audience": "sessiond-sso", "verifyUrl": url, "verifySecret": secret})),
    )
    .await
}

async fn sso(s: &TestServer, tenant: &str, token: &str) -> Reply {
    TestServer::send(
        s.api(Method::POST, "/api/v2/auth/sso", tenant)
            .json(&json!({"ssoToken": token})),
    )
    .await
}

#[tokio::test]
async fn an_opaque_token_vouched_for_by_the_partner_opens_a_session_once() {
    let s = TestServer::start().await;
    let partner = Partner::start().await;
    s.tenant("hub", "integration", json!({})).await;
    assert_eq!(trust(&s, "hub", &partner.url, SECRET).await.status, 204);
    partner.issue("opaque-1", "partner-user-42");
    partner.issue("opaque-2", "partner-user-42");

    let r = sso(&s, "hub", "opaque-1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let me = s.whoami("hub", &r.str("userSessionToken")).await;
    assert_eq!(me.body["authMethod"], "sso");
    let user = TestServer::send(s.admin(
        Method::GET,
        "/admin/v1/tenants/hub/users?externalId=partner-user-42",
    ))
    .await;
    assert_eq!(user.body["userId"], me.body["userId"], "{}", user.body);
    // Single use, though the partner would vouch for it again.
    sso(&s, "hub", "opaque-1")
        .await
        .problem(401, "sso_token_invalid");
    // Unknown to the partner.
    sso(&s, "hub", "forged")
        .await
        .problem(401, "sso_token_invalid");
    // The same user's next token is a second session; and re-authenticates one.
    let second = sso(&s, "hub", "opaque-2").await;
    assert_eq!(second.status, 200);
    partner.issue("opaque-3", "partner-user-42");
    partner.issue("opaque-4", "someone-else");
    let reauth = |token: &'static str| {
        TestServer::send(
            s.api(Method::POST, "/api/v2/auth/reauthenticate", "hub")
                .bearer_auth(second.str("userSessionToken"))
                .json(&json!({"ssoToken": token})),
        )
    };
    reauth("opaque-4").await.problem(401, "sso_token_invalid");
    assert_eq!(reauth("opaque-3").await.status, 200);
}

#[tokio::test]
async fn a_wrong_secret_or_a_failing_partner_is_unavailable_not_invalid_and_opens_the_breaker() {
    let s = TestServer::start().await;
    let partner = Partner::start().await;
    s.tenant("hub", "integration", json!({})).await;
    s.tenant("hub2", "integration", json!({})).await;
    assert_eq!(trust(&s, "hub2", &partner.url, SECRET2).await.status, 204);
    partner.issue("t", "u1");
    partner.issue("t2", "u2");
    // sessiond's own credentials refused: the user's token is not to blame (and the partner
    // is not down: this counts towards no breaker).
    assert_eq!(
        trust(&s, "hub", &partner.url, &"x".repeat(40)).await.status,
        204
    );
    for _ in 0..6 {
        let r = sso(&s, "hub", "t").await;
        r.problem(503, "sso_unavailable");
        assert!(r.headers.contains_key("retry-after"));
    }
    assert_eq!(partner.asked.load(Ordering::SeqCst), 6);
    assert_eq!(trust(&s, "hub", &partner.url, SECRET).await.status, 204);

    // Five failures in a row: the breaker opens.
    partner.set(Mood::Failing);
    for _ in 0..5 {
        sso(&s, "hub", "t").await.problem(503, "sso_unavailable");
    }
    let asked = partner.asked.load(Ordering::SeqCst);
    assert_eq!(asked, 11);
    partner.set(Mood::Well);
    let r = sso(&s, "hub", "t").await;
    r.problem(503, "sso_unavailable");
    assert_eq!(
        partner.asked.load(Ordering::SeqCst),
        asked,
        "an open breaker does not ask"
    );
    assert_eq!(r.headers["retry-after"], "30");
    // Another tenant's credential at the same endpoint has a breaker of its own.
    assert_eq!(sso(&s, "hub2", "t2").await.status, 200);
    let failures = s.audit("hub", "type=login_failed").await;
    assert!(failures.iter().all(|e| e["reason"] == "sso_unavailable"));

    // After 30 s one request probes; a failure opens the breaker again at once.
    partner.set(Mood::Failing);
    s.clock.advance(30);
    let before = partner.asked.load(Ordering::SeqCst);
    sso(&s, "hub", "t").await.problem(503, "sso_unavailable");
    sso(&s, "hub", "t").await.problem(503, "sso_unavailable");
    assert_eq!(
        partner.asked.load(Ordering::SeqCst),
        before + 1,
        "one probe"
    );
    // The partner is well again: the next probe closes it.
    partner.set(Mood::Well);
    s.clock.advance(30);
    let r = sso(&s, "hub", "t").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_partner_costs_a_login_at_most_the_timeout() {
    let s = TestServer::start().await;
    let partner = Partner::start().await;
    s.tenant("hub", "integration", json!({})).await;
    assert_eq!(trust(&s, "hub", &partner.url, SECRET).await.status, 204);
    partner.issue("t", "u1");
    partner.set(Mood::Slow);
    let started = Instant::now();
    sso(&s, "hub", "t").await.problem(503, "sso_unavailable");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the login waited {took:?} for a partner that takes 10 s"
    );
    // The token was not spent by the failed attempt.
    partner.set(Mood::Well);
    assert_eq!(sso(&s, "hub", "t").await.status, 200);
}

#[tokio::test]
async fn the_verification_endpoint_obeys_the_outbound_rules() {
    let s = TestServer::start().await;
    s.tenant("prod", "production", json!({})).await;
    trust(&s, "prod", "http://127.0.0.1:9/introspect", SECRET)
        .await
        .problem(400, "invalid_request");
    trust(&s, "prod", "https://169.254.169.254/latest", SECRET)
        .await
        .problem(400, "invalid_request");
    // A public address, but the secret and the users' tokens would travel in clear.
    trust(&s, "prod", "http://partner.example.com/introspect", SECRET)
        .await
        .problem(400, "invalid_request");
    assert_eq!(
        trust(&s, "prod", "https://partner.example.com/introspect", SECRET)
            .await
            .status,
        204
    );
    s.tenant("hub", "integration", json!({})).await;
    for body in [
        json!({"audience": "a", "verifyUrl": "http://127.0.0.1:9/x"}),
        json!({"audience": "a", "verifyUrl": "http://127.0.0.1:9/x", "verifySecret": "short"}),
        json!({"audience": "a", "jwksUrl": "http://127.0.0.1:9/j", "verifySecret": SECRET}),
        json!({"audience": "a", "jwksUrl": "http://127.0.0.1:9/j", "verifyUrl": "http://127.0.0.1:9/x", "verifySecret": SECRET}),
    ] {
        TestServer::send(
            s.admin(Method::PUT, "/admin/v1/tenants/hub/sso")
                .json(&body),
        )
        .await
        .problem(400, "invalid_request");
    }
}
