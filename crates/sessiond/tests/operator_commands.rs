//! Operator commands run as an operator would: `sessiond backup FILE` copies the live SQLite
//! database while the server runs (and the copy holds what it acknowledged), `serve` takes
//! its address and data dir as flags, and a metrics token guards `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use sessiond_store::{IdentityStore, TenantId};

const ADMIN: &str = "backup-admin-token-0123456789";

fn backup(data: &std::path::Path, to: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["backup", to.to_str().unwrap()])
        .env("SESSIOND_DATA_DIR", data)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_backup_of_a_running_server_holds_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = common::spawn(|cmd| {
        cmd.env("SESSIOND_DATA_DIR", &data)
            .env("SESSIOND_ADMIN_TOKEN", ADMIN);
    });
    let res = reqwest::Client::new()
        .post(format!("{}/admin/v1/tenants", server.base))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"id": "backed-up", "profile": "integration"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);

    let copy = dir.path().join("copy.db");
    let out = backup(&data, &copy);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = backup(&data, &copy);
    assert!(!again.status.success(), "a backup never overwrites");

    drop(server);
    let store = sessiond_store_sqlite::SqliteStore::open(&copy).unwrap();
    let tenant = store
        .get_tenant(&TenantId::parse("backed-up").unwrap())
        .await
        .unwrap();
    assert!(tenant.is_some(), "the copy holds the acknowledged tenant");
}

/// `serve --data-dir DIR --listen ADDR` work without the environment variables.
#[test]
fn serve_takes_its_data_dir_and_address_as_flags() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("flag-data");
    let server = common::spawn(|cmd| {
        cmd.env_remove("SESSIOND_DATA_DIR")
            .env("SESSIOND_ADMIN_TOKEN", ADMIN)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data);
    });
    assert!(server.base.starts_with("http://127.0.0.1:"));
    assert!(
        data.join("sessiond.db").exists(),
        "the database is in --data-dir"
    );
}

/// With `metrics_token` set, `/metrics` answers only a scraper that presents it.
#[tokio::test]
async fn a_metrics_token_guards_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::spawn(|cmd| {
        cmd.env("SESSIOND_DATA_DIR", dir.path().join("data"))
            .env("SESSIOND_ADMIN_TOKEN", ADMIN)
            .env("SESSIOND_METRICS_TOKEN", "metrics-scraper-token-0123456789");
    });
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", server.base);
    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let wrong = http.get(&url).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let scraper = http
        .get(&url)
        .bearer_auth("metrics-scraper-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(scraper.status().as_u16(), 200);
    assert!(
        scraper
            .text()
            .await
            .unwrap()
            .contains("sessiond_sessions_active")
    );
}
