//! The example configurations in `deploy/` stay valid: every `deploy/*.toml` (found by
//! listing the directory, so a new example is checked too) passes `sessiond config check`
//! with none of the caller's `SESSIOND_*` variables, keeps its secrets out of the file, and
//! masks the secrets the environment adds (admin token, master key, store passwords).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ADMIN_TOKEN: &str = "deploy-example-admin-token-0123456789";
const MASTER_KEY: &str = "6465706c6f792d6578616d706c652d6d61737465722d6b65792d333262797465";
const STORE_PASSWORD: &str = "deploy-example-store-password";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("the deploy/ directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no deploy/*.toml example to check");
    files
}

/// `sessiond --config <file> config check` with no inherited `SESSIOND_*` variable, plus
/// `env`.
fn config_check(file: &Path, env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessiond"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SESSIOND_") {
            cmd.env_remove(&key);
        }
    }
    cmd.arg("--config").arg(file).args(["config", "check"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sessiond")
}

/// `url` with `password` added to its user info, for URLs of servers that take one.
fn with_password(url: &str, password: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !(scheme.starts_with("postgres") || scheme.starts_with("redis")) {
        return None;
    }
    let rest = match rest.split_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{user}:{password}@{host}")
        }
        None => format!("sessiond:{password}@{rest}"),
    };
    Some(format!("{scheme}://{rest}"))
}

fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn every_example_configuration_is_valid_and_keeps_secrets_out() {
    let docs = std::fs::read_to_string(deploy_dir().join("../DEPLOYMENT.md"))
        .expect("DEPLOYMENT.md at the repository root");
    for file in examples() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(&file).unwrap();
        let parsed: toml::Table = source
            .parse()
            .unwrap_or_else(|e| panic!("{name} is not TOML: {e}"));

        // Secrets never go into the examples.
        for key in ["admin_token", "master_key"] {
            assert!(!parsed.contains_key(key), "{name} sets {key}");
        }
        let store = parsed.get("store").and_then(|s| s.as_table());
        let urls: Vec<(&str, String)> = ["sessions", "identity"]
            .into_iter()
            .filter_map(|k| {
                let url = store?.get(k)?.as_str()?.to_owned();
                Some((k, url))
            })
            .collect();
        for (key, url) in &urls {
            let userinfo = url
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('@'))
                .map(|(u, _)| u);
            assert!(
                !userinfo.is_some_and(|u| u.contains(':')),
                "{name}: store.{key} carries a password"
            );
        }
        assert!(
            docs.contains(&format!("deploy/{name}")),
            "DEPLOYMENT.md does not mention deploy/{name}"
        );

        // Valid as it is.
        let out = config_check(&file, &[]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("configuration is valid"),
            "{name}: {}",
            text(&out)
        );

        // Valid with the secrets a deployment adds in the environment, which stay masked.
        let mut env = vec![
            ("SESSIOND_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("SESSIOND_MASTER_KEY", MASTER_KEY.to_owned()),
        ];
        for (key, url) in &urls {
            if let Some(u) = with_password(url, STORE_PASSWORD) {
                let var = if *key == "sessions" {
                    "SESSIOND_STORE_SESSIONS"
                } else {
                    "SESSIOND_STORE_IDENTITY"
                };
                env.push((var, u));
            }
        }
        let out = config_check(&file, &env);
        let shown = text(&out);
        assert!(out.status.success(), "{name} with secrets: {shown}");
        for secret in [ADMIN_TOKEN, MASTER_KEY, STORE_PASSWORD] {
            assert!(
                !shown.contains(secret),
                "{name}: a secret appears in the output: {shown}"
            );
        }
    }
}

#[test]
fn passwords_are_added_where_a_server_takes_them() {
    assert_eq!(
        with_password("postgres://sessiond@db.internal:5432/s", "pw").as_deref(),
        Some("postgres://sessiond:pw@db.internal:5432/s")
    );
    assert_eq!(
        with_password("redis-cluster://a:1,b:2", "pw").as_deref(),
        Some("redis-cluster://sessiond:pw@a:1,b:2")
    );
    assert_eq!(with_password("sqlite", "pw"), None);
    assert_eq!(with_password("sqlite:///var/lib/x.db", "pw"), None);
}
