//! A refused request leaves one line in the log, at the default level, with its activity id
//! and the problem's code, so an operator can find it from what the client saw.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[tokio::test]
async fn a_refused_request_is_logged_with_its_activity_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let server = common::spawn(|cmd| {
        cmd.env("SESSIOND_DATA_DIR", dir.path().join("data"))
            .env("SESSIOND_ADMIN_TOKEN", "request-log-admin-token-0123456789")
            .env("SESSIOND_LOG_LEVEL", "info")
            .stderr(file);
    });
    let activity = uuid::Uuid::new_v4().to_string();
    let res = reqwest::Client::new()
        .get(format!("{}/admin/v1/keys", server.base))
        .header("Authorization", "Bearer not-the-admin-token-at-all")
        .header("X-Activity-ID", &activity)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    let mut found = String::new();
    for _ in 0..100 {
        found = std::fs::read_to_string(&log).unwrap();
        if found.contains(&activity) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let line = found
        .lines()
        .find(|l| l.contains(&activity))
        .unwrap_or_else(|| panic!("no log line with the activity id in:\n{found}"));
    assert!(line.contains("request refused"), "{line}");
    assert!(line.contains("403") && line.contains("forbidden"), "{line}");
    assert!(line.contains("/admin/v1/keys"), "{line}");
    assert!(!line.contains("not-the-admin-token"), "{line}");
}
