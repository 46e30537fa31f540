//! The data dir holds password hashes and secrets: every file sessiond keeps there is
//! owner-only (0600), even in a directory an operator made wider.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn files(dir: &Path) -> Vec<(String, u32)> {
    let mut v: Vec<(String, u32)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                mode(&e.path()),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn every_file_in_a_wide_data_dir_is_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A secret left world-readable by an older version is tightened too.
    std::fs::write(dir.join("admin.token"), "private-files-admin-token-123\n").unwrap();
    std::fs::set_permissions(
        dir.join("admin.token"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();

    let server = common::spawn(|cmd| {
        cmd.env("SESSIOND_DATA_DIR", &dir)
            .env_remove("SESSIOND_ADMIN_TOKEN")
            .env_remove("SESSIOND_MASTER_KEY")
            .env_remove("SESSIOND_STORE_SESSIONS")
            .env_remove("SESSIOND_STORE_IDENTITY")
            .env("SESSIOND_LOG_LEVEL", "warn");
    });
    // Writes, so that the WAL and its index exist.
    let http = reqwest::Client::new();
    let admin = |m: reqwest::Method, path: &str| {
        http.request(m, format!("{}{path}", server.base))
            .bearer_auth("private-files-admin-token-123")
            .header("X-Activity-ID", uuid::Uuid::new_v4().to_string())
    };
    let res = admin(reqwest::Method::POST, "/admin/v1/tenants")
        .json(&json!({"id": "t1", "profile": "integration"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let res = admin(reqwest::Method::POST, "/admin/v1/tenants/t1/users")
        .json(&json!({"username": "alice", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let res = http
        .post(format!("{}/api/v2/auth/login", server.base))
        .header("X-Tenant-ID", "t1")
        .header("X-Activity-ID", uuid::Uuid::new_v4().to_string())
        .json(&json!({"username": "alice", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    let found = files(&dir);
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "admin.token",
        "master.key",
        "sessiond.db",
        "sessiond.db-shm",
        "sessiond.db-wal",
        "sessiond.lock",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {found:?}");
    }
    for (name, m) in &found {
        assert_eq!(*m, 0o600, "{name} is {m:o}: {found:?}");
    }
    assert_eq!(
        mode(&dir),
        0o755,
        "the operator's directory is left as it was"
    );
    drop(server);
}
