//! The README's quick start and partner integration, run verbatim (but for the server
//! address) against the binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

/// The first `sh` block after a README heading.
fn block(heading: &str) -> String {
    let readme = include_str!("../../../README.md");
    let section = &readme[readme.find(heading).expect("the section")..];
    let start = section.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = start + section[start..].find("```").expect("the block ends");
    section[start..end].to_owned()
}

#[test]
fn readme_blocks_work_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::spawn(|cmd| {
        cmd.current_dir(dir.path())
            .env_remove("SESSIOND_DATA_DIR")
            .env_remove("SESSIOND_ADMIN_TOKEN");
    });
    let url = server.base.clone();
    let script = block("## Quick start") + &block("## Partner integration");
    assert!(script.contains("SESSIOND=http://127.0.0.1:8080\n"));
    let script = script.replace(
        "SESSIOND=http://127.0.0.1:8080\n",
        &format!("SESSIOND={url}\n"),
    );
    let run = || {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(dir.path())
            .output()
            .expect("bash, curl and openssl are needed for this test");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let first = run();
    // Run again, as a reader trying it twice would: the creations answer 409, the rest the
    // same. The client id differs per second: wait for the next one.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = run();
    drop(server);
    let common = [
        "\"token_type\":\"Bearer\"",
        "\"refresh_expires_in\":86400",
        "\"state\":\"active\"",
        "\n204\n",
        "\"code\":\"session_revoked\"",
        "\"type\":\"login_succeeded\"",
        "\"type\":\"session_refreshed\"",
        "\"code\":\"sso_token_invalid\"",
        "{\"success\":true,\"revoked\":1}",
        "\"maxSessionsPerUser\":1",
        "\"code\":\"session_displaced\"",
        "\"audience\":\"ledger-service\"",
        "\"active\":true",
    ];
    let created = ["\"profile\":\"integration\"", "\"username\":\"alice\""];
    for expected in common.iter().chain(&created) {
        assert!(first.contains(expected), "missing {expected} in:\n{first}");
    }
    for expected in common.iter().chain(&["\"status\":409"]) {
        assert!(
            again.contains(expected),
            "second run: missing {expected} in:\n{again}"
        );
    }
}

/// The operator console's first step, verbatim but for the binary: it creates an operator
/// who can then sign in on `_operators` and is an admin.
#[test]
fn the_first_operator_is_created_as_the_readme_says() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::spawn(|cmd| {
        cmd.current_dir(dir.path())
            .env_remove("SESSIOND_DATA_DIR")
            .env_remove("SESSIOND_ADMIN_TOKEN");
    });
    let script = block("## Operator console");
    assert!(script.contains("cargo run --release -- operator create"));
    let script = script.replace("cargo run --release --", env!("CARGO_BIN_EXE_sessiond"));
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("SESSIOND_URL", &server.base)
        .env_remove("SESSIOND_DATA_DIR")
        .env_remove("SESSIOND_ADMIN_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("\"role\": \"admin\"") || stdout.contains("\"role\":\"admin\""),
        "{stdout}"
    );
    let login = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            &format!("{}/api/v2/auth/login", server.base),
            "-H",
            "X-Tenant-ID: _operators",
            "-H",
            &format!("X-Activity-ID: {}", uuid::Uuid::new_v4()),
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"username": "ada", "password": "a long passphrase"}"#,
        ])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&login.stdout);
    assert!(body.contains("userSessionToken"), "{body}");
}
