//! Abuse signals: per-account backoff, suspicious-activity events and signed webhooks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

async fn wrong_password(s: &TestServer, tenant: &str, user: &str) -> Reply {
    TestServer::send(
        s.api(Method::POST, "/api/v2/auth/login", tenant)
            .json(&json!({"username": user, "password": "not the password"})),
    )
    .await
}

#[tokio::test]
async fn repeated_failures_back_off_exponentially_per_account() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({"loginBackoffAfter": 3}))
        .await;
    for _ in 0..3 {
        wrong_password(&s, "t1", "alice")
            .await
            .problem(401, "invalid_credentials");
    }
    // Held back now, even with the right password; other accounts are not.
    let r = s.login("t1", "alice").await;
    r.problem(429, "rate_limited");
    assert_eq!(r.headers["retry-after"], "1");
    wrong_password(&s, "t1", "bob")
        .await
        .problem(401, "invalid_credentials");
    s.clock.advance(1);
    wrong_password(&s, "t1", "alice")
        .await
        .problem(401, "invalid_credentials");
    assert_eq!(s.login("t1", "alice").await.headers["retry-after"], "2");
    s.clock.advance(2);
    assert_eq!(
        s.login("t1", "alice").await.status,
        200,
        "a success resets the count"
    );
    wrong_password(&s, "t1", "alice")
        .await
        .problem(401, "invalid_credentials");
    let burst = s.audit("t1", "type=suspicious_activity").await;
    assert_eq!(burst.len(), 1);
    assert_eq!(burst[0]["reason"], "failure_burst");
    // Unknown accounts back off alike (no hint that an account exists).
    for _ in 0..3 {
        wrong_password(&s, "t1", "mallory").await;
    }
    s.login("t1", "mallory").await.problem(429, "rate_limited");
}

#[tokio::test]
async fn login_attempts_per_account_are_rate_limited_per_tenant() {
    let s = TestServer::start().await;
    s.tenant_with_user(
        "t1",
        "integration",
        json!({"loginRatePerMinute": 3, "loginBackoffAfter": 0}),
    )
    .await;
    s.user("t1", "bob").await;
    s.tenant_with_user("t2", "integration", json!({})).await;
    for _ in 0..3 {
        assert_eq!(s.login("t1", "alice").await.status, 200);
    }
    let r = s.login("t1", "alice").await;
    r.problem(429, "rate_limited");
    assert!(
        r.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(s.login("t1", "bob").await.status, 200, "per account");
    assert_eq!(s.login("t2", "alice").await.status, 200, "per tenant");
    let events = s.audit("t1", "type=login_failed").await;
    assert_eq!(events[0]["reason"], "rate_limited");
}

#[tokio::test]
async fn refresh_from_another_device_and_reuse_are_suspicious() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let login = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/login", "t1")
            .header("User-Agent", "phone/1.0")
            .json(&json!({"username": "alice", "password": PASSWORD})),
    )
    .await;
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/refresh", "t1")
            .header("User-Agent", "curl/8")
            .json(&json!({"refreshToken": login.str("refreshToken")})),
    )
    .await;
    assert_eq!(r.status, 200);
    s.clock.advance(60);
    s.refresh("t1", &login.str("refreshToken"))
        .await
        .problem(401, "refresh_token_reused");
    let reasons: Vec<Value> = s
        .audit("t1", "type=suspicious_activity")
        .await
        .iter()
        .map(|e| e["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        [
            json!("refresh_token_reuse"),
            json!("refresh_from_new_user_agent")
        ]
    );
}

type Received = Arc<Mutex<Vec<(String, String, String)>>>;

/// A webhook receiver on loopback that fails its first `fail_first` deliveries with 500.
async fn receiver(fail_first: usize) -> (String, Received) {
    let got: Received = Arc::default();
    let seen = got.clone();
    let calls = Arc::new(Mutex::new(0usize));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (seen, calls) = (seen.clone(), calls.clone());
            async move {
                let mut n = calls.lock().unwrap();
                *n += 1;
                if *n <= fail_first {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                let h = |k: &str| headers[k].to_str().unwrap().to_owned();
                seen.lock().unwrap().push((
                    h("x-sessiond-timestamp"),
                    h("x-sessiond-signature"),
                    body,
                ));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test]
async fn suspicious_activity_reaches_the_tenant_webhook_signed_and_retried() {
    let (url, got) = receiver(1).await;
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({"webhookUrl": url}))
        .await;
    let hook = TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/t1/webhook")).await;
    assert_eq!(hook.body["url"], url.as_str());
    let secret = hook.str("secret");

    let rt = s.login_ok("t1", "alice").await.str("refreshToken");
    s.refresh("t1", &rt).await;
    s.clock.advance(60);
    let started = std::time::Instant::now();
    s.refresh("t1", &rt)
        .await
        .problem(401, "refresh_token_reused");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(900),
        "delivery never blocks the request"
    );

    // The first delivery got a 500; the retry (after ~1 s) lands.
    let mut delivered = None;
    for _ in 0..100 {
        if let Some(d) = got.lock().unwrap().first().cloned() {
            delivered = Some(d);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (ts, sig, body) = delivered.expect("the webhook is delivered after a retry");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let expected: String = ring::hmac::sign(&key, format!("{ts}.{body}").as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sig, format!("v1={expected}"));
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("suspicious_activity"), Some("refresh_token_reuse"))
    );
    assert_eq!(event["tenantId"], "t1");

    // Without a webhook URL there is nothing to read.
    s.tenant("t2", "integration", json!({})).await;
    TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/t2/webhook"))
        .await
        .problem(404, "not_found");
    let bad = TestServer::send(
        s.admin(Method::PATCH, "/admin/v1/tenants/t2/policy")
            .json(&json!({"webhookUrl": "ftp://x"})),
    )
    .await;
    bad.problem(400, "invalid_request");
}

#[tokio::test]
async fn metrics_expose_requests_events_store_latency_and_active_sessions() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let token = s.login_ok("t1", "alice").await.str("userSessionToken");
    assert_eq!(s.whoami("t1", &token).await.status, 200);
    wrong_password(&s, "t1", "alice").await;
    assert_eq!(s.logout("t1", &token).await.status, 204);
    let res = s.req(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    for expected in [
        r#"sessiond_http_requests_total{method="POST",route="/api/v2/auth/login",status="200"}"#,
        r#"sessiond_http_requests_total{method="POST",route="/api/v2/auth/login",status="401"}"#,
        r#"sessiond_http_request_duration_seconds_bucket{method="GET",route="/api/v2/session""#,
        r#"sessiond_events_total{type="login_failed",reason="invalid_credentials"}"#,
        r#"sessiond_events_total{type="session_revoked",reason="logout"}"#,
        r#"sessiond_store_seconds_bucket{store="sqlite",op="write""#,
        "sessiond_sessions_active ",
        "sessiond_caches_trusted 1",
        "sessiond_change_log_age_seconds 0",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    // Tokens never label anything.
    assert!(!text.contains(&token[..20]));
}
