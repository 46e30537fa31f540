//! `sessiond keys revoke KID` against the real binary: the key leaves the keyring at once,
//! and an unknown kid is an error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

const ADMIN: &str = "key-revocation-admin-token-123";

fn cli(base: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["--url", base])
        .args(args)
        .env("SESSIOND_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap()
}

fn keys(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kid(keys: &serde_json::Value, state: &str) -> String {
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == state)
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn keys_revoke_removes_the_key_and_promotes_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::spawn(|cmd| {
        cmd.env("SESSIOND_DATA_DIR", dir.path())
            .env("SESSIOND_ADMIN_TOKEN", ADMIN);
    });
    let before = keys(&cli(&server.base, &["keys", "list"]));
    let (signing, next) = (kid(&before, "signing"), kid(&before, "next"));
    let after = keys(&cli(&server.base, &["keys", "revoke", &signing]));
    assert_eq!(kid(&after, "signing"), next);
    assert!(!after.to_string().contains(&signing));
    assert!(
        !keys(&cli(&server.base, &["keys", "list"]))
            .to_string()
            .contains(&signing)
    );
    let unknown = cli(&server.base, &["keys", "revoke", &signing]);
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("404") && stderr.contains("not_found"),
        "{stderr}"
    );
}
