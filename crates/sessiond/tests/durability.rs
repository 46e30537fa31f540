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
