//! A 2xx write is durable: SIGKILL the real binary right after a logout and a refresh,
//! restart it on the same data dir, and the revoked session and rotated token stay dead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

const ADMIN: &str = "durability-admin-token-123";

mod common;
use common::Server;

fn start(data_dir: &Path) -> Server {
    common::spawn(|cmd| {
        cmd.env("SESSIOND_DATA_DIR", data_dir)
            .env("SESSIOND_ADMIN_TOKEN", ADMIN)
            // A fixed issuer: with port 0 the default (http://<bound address>) changes per start.
            .env("SESSIOND_ISSUER", "http://sessiond.test")
            .env("SESSIOND_LOG_LEVEL", "warn");
    })
}

async fn call(
    http: &reqwest::Client,
    s: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = http
        .request(method, format!("{}{path}", s.base))
        .header("X-Tenant-ID", "t1")
        .header("X-Activity-ID", uuid::Uuid::new_v4().to_string());
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let res = rb.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let mut s = start(dir.path());
    use reqwest::Method as M;

    let tenant =
        json!({"id": "t1", "profile": "integration", "policy": {"refreshGraceSeconds": 0}});
    let (st, _) = call(
        &http,
        &s,
        M::POST,
        "/admin/v1/tenants",
        Some(ADMIN),
        Some(tenant),
    )
    .await;
    assert_eq!(st, 201);
    let (st, _) = call(
        &http,
        &s,
        M::POST,
        "/admin/v1/tenants/t1/users",
        Some(ADMIN),
        Some(json!({"username": "alice", "password": "correct horse"})),
    )
    .await;
    assert_eq!(st, 201);
    let login = json!({"username": "alice", "password": "correct horse"});
    let (_, a) = call(
        &http,
        &s,
        M::POST,
        "/api/v2/auth/login",
        None,
        Some(login.clone()),
    )
    .await;
    let (_, b) = call(&http, &s, M::POST, "/api/v2/auth/login", None, Some(login)).await;
    let a_token = a["userSessionToken"].as_str().unwrap().to_owned();
    let rt0 = b["refreshToken"].as_str().unwrap().to_owned();

    let (st, _) = call(
        &http,
        &s,
        M::POST,
        "/api/v2/auth/logout",
        Some(&a_token),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (st, b2) = call(
        &http,
        &s,
        M::POST,
        "/api/v2/auth/refresh",
        None,
        Some(json!({"refreshToken": rt0})),
    )
    .await;
    assert_eq!(st, 200);
    s.child.kill().unwrap(); // SIGKILL: no shutdown, no flush
    s.child.wait().unwrap();

    let mut s = start(dir.path());
    let (st, e) = call(&http, &s, M::GET, "/api/v2/session", Some(&a_token), None).await;
    assert_eq!((st, e["code"].as_str()), (401, Some("session_revoked")));
    let b2_token = b2["userSessionToken"].as_str().unwrap().to_owned();
    let (st, _) = call(&http, &s, M::GET, "/api/v2/session", Some(&b2_token), None).await;
    assert_eq!(
        st, 200,
        "the refreshed session and the keys that signed its token survived"
    );
    let (st, e) = call(
        &http,
        &s,
        M::POST,
        "/api/v2/auth/refresh",
        None,
        Some(json!({"refreshToken": rt0})),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (401, Some("refresh_token_reused"))
    );
    s.child.kill().unwrap();
    s.child.wait().unwrap();
}

/// A logout acknowledged just before SIGKILL still reaches the relying party: its event waits
/// in the change log (the outbox, written with the revocation), and the restarted node
/// delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_event_survives_sigkill() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    // The relying party: down (503) until `up`; records what it accepted.
    let up = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rp = format!(
        "http://{}/backchannel-logout",
        listener.local_addr().unwrap()
    );
    let app = {
        let (up, accepted) = (up.clone(), accepted.clone());
        axum::Router::new().fallback(axum::routing::post(move |body: String| async move {
            if !up.load(Ordering::SeqCst) {
                return axum::http::StatusCode::SERVICE_UNAVAILABLE;
            }
            accepted.lock().unwrap().push(body);
            axum::http::StatusCode::OK
        }))
    };
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let s = start(dir.path());
    use reqwest::Method as M;
    for (path, body) in [
        (
            "/admin/v1/tenants",
            json!({"id": "t1", "profile": "integration"}),
        ),
        (
            "/admin/v1/tenants/t1/users",
            json!({"username": "alice", "password": "correct horse"}),
        ),
        (
            "/admin/v1/tenants/t1/clients",
            json!({"clientId": "app", "backchannelLogoutUri": rp}),
        ),
    ] {
        let (st, b) = call(&http, &s, M::POST, path, Some(ADMIN), Some(body)).await;
        assert_eq!(st, 201, "{b}");
    }
    let login = json!({"username": "alice", "password": "correct horse"});
    let (_, a) = call(&http, &s, M::POST, "/api/v2/auth/login", None, Some(login)).await;
    let token = a["userSessionToken"].as_str().unwrap().to_owned();
    let sid = a["sessionId"].as_str().unwrap().to_owned();
    let (st, _) = call(
        &http,
        &s,
        M::POST,
        "/api/v2/auth/logout",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let mut s = s;
    s.child.kill().unwrap(); // SIGKILL right after the 2xx
    s.child.wait().unwrap();
    assert!(accepted.lock().unwrap().is_empty());

    up.store(true, Ordering::SeqCst);
    let mut s = start(dir.path());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while accepted.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted node never delivered the logout event"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let got = accepted.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "delivered once: {got:?}");
    let jwt = got[0].strip_prefix("logout_token=").unwrap();
    let payload = jwt.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sid"], sid.as_str());
    assert_eq!(claims["aud"], "app");
    s.child.kill().unwrap();
    s.child.wait().unwrap();
}

#[test]
fn config_check_masks_secrets() {
    let out = Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["config", "check"])
        .env("SESSIOND_ADMIN_TOKEN", "very-secret-admin-token")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("listen = \"127.0.0.1:8080\"") && !text.contains("very-secret"),
        "{text}"
    );
}
