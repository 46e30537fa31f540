//! Native HTTPS of the real binary: served with the configured certificate, reloaded on
//! SIGHUP and on file change without dropping open connections, refused at start (and kept
//! on reload) when bad; SIGHUP without TLS does not end the process; and the `[server]`
//! timeouts reach the listener.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary's log lines (stderr), as they come.
fn log_lines(server: &mut common::Server) -> mpsc::Receiver<String> {
    let stderr = server.child.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits (at most 8 s) for a log line containing every one of `needles`; returns it.
fn logged(logs: &mpsc::Receiver<String>, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match logs.recv_timeout(left) {
            Ok(line) if needles.iter().all(|n| line.contains(n)) => return line,
            Ok(_) => {}
            Err(e) => panic!("no log line with {needles:?}: {e}"),
        }
    }
}

fn hup(server: &common::Server) {
    let pid = server.child.id().to_string();
    let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(status.success());
}

/// A fresh self-signed certificate for 127.0.0.1; returns (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

/// A client that trusts only `cert_pem`, making a new connection per client.
fn client_trusting(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn healthz(client: &reqwest::Client, base: &str) -> Result<u16, String> {
    client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

fn write_pair(dir: &Path, (cert, key): &(String, String)) {
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
}

/// Waits (at most 8 s) until a fresh client trusting `cert` gets an answer.
async fn served_with(cert: &str, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        match healthz(&client_trusting(cert), base).await {
            Ok(200) => return,
            other => assert!(
                Instant::now() < deadline,
                "the new certificate is not served: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spawn_tls(dir: &Path, reload_check_secs: &str) -> common::Server {
    common::spawn(|cmd| {
        cmd.env("SESSIOND_DATA_DIR", dir.join("data"))
            .env("SESSIOND_LOG_LEVEL", "info")
            .stderr(Stdio::piped())
            .env("SESSIOND_TLS_CERT", dir.join("cert.pem"))
            .env("SESSIOND_TLS_KEY", dir.join("key.pem"))
            .env("SESSIOND_TLS_RELOAD_CHECK_SECS", reload_check_secs);
    })
}

/// HTTPS with the configured certificate; SIGHUP (file checks off) swaps it for new
/// connections while a connection opened before keeps working; on SIGHUP a file that is not
/// a certificate, then a valid certificate whose key does not match, are refused (the
/// binary logs the failed reload) and the certificate in use stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let first = self_signed();
    write_pair(dir.path(), &first);
    let mut server = spawn_tls(dir.path(), "0");
    let logs = log_lines(&mut server);
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let base = server.base.clone();

    // A connection opened before the reload, kept alive in this client's pool.
    let before = client_trusting(&first.0);
    assert_eq!(healthz(&before, &base).await, Ok(200));
    // Plain HTTP on the TLS port is not served.
    let plain = base.replace("https://", "http://");
    let answered = reqwest::get(format!("{plain}/healthz"))
        .await
        .is_ok_and(|r| r.status().is_success());
    assert!(!answered, "plain HTTP must not be served on the TLS port");

    let second = self_signed();
    write_pair(dir.path(), &second);
    hup(&server);
    logged(&logs, &["TLS certificate reloaded", "SIGHUP"]);
    served_with(&second.0, &base).await;
    // New connections get the new certificate: a fresh client trusting the old one fails...
    assert!(healthz(&client_trusting(&first.0), &base).await.is_err());
    // ...while the connection made before the reload still works (a new one from this
    // client would fail the same way).
    assert_eq!(healthz(&before, &base).await, Ok(200));

    // A bad file is refused on reload: the certificate in use stays.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    hup(&server);
    logged(&logs, &["TLS certificate reload failed", "cert.pem"]);
    assert_eq!(healthz(&client_trusting(&second.0), &base).await, Ok(200));

    // A valid certificate with a key that does not match it is refused too.
    let third = self_signed();
    std::fs::write(dir.path().join("cert.pem"), &third.0).unwrap();
    hup(&server);
    logged(&logs, &["TLS certificate reload failed", "does not match"]);
    assert_eq!(healthz(&client_trusting(&second.0), &base).await, Ok(200));
    assert!(healthz(&client_trusting(&third.0), &base).await.is_err());
}

/// Without TLS, SIGHUP is logged and ignored: the process keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_without_tls_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = common::spawn(|cmd| {
        cmd.env("SESSIOND_DATA_DIR", dir.path().join("data"))
            .env("SESSIOND_LOG_LEVEL", "info")
            .stderr(Stdio::piped());
    });
    let logs = log_lines(&mut server);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert_eq!(healthz(&client, &server.base).await, Ok(200));
    hup(&server);
    logged(&logs, &["SIGHUP", "nothing to reload"]);
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "SIGHUP ended the process"
    );
    assert_eq!(healthz(&client, &server.base).await, Ok(200));
}

/// With `tls.reload_check_secs = 1`, a rewritten certificate is served without a signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_certificate_file_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let first = self_signed();
    write_pair(dir.path(), &first);
    let server = spawn_tls(dir.path(), "1");
    assert_eq!(
        healthz(&client_trusting(&first.0), &server.base).await,
        Ok(200)
    );
    let second = self_signed();
    write_pair(dir.path(), &second);
    served_with(&second.0, &server.base).await;
    assert!(
        healthz(&client_trusting(&first.0), &server.base)
            .await
            .is_err()
    );
}

/// A `production` tenant (HTTPS only) accepts a client that reaches sessiond directly over
/// its native TLS, with no proxy header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_tenant_accepts_direct_https() {
    let dir = tempfile::tempdir().unwrap();
    let pair = self_signed();
    write_pair(dir.path(), &pair);
    let admin = "tls-test-admin-token-0123456789";
    let server = common::spawn(|cmd| {
        cmd.env("SESSIOND_DATA_DIR", dir.path().join("data"))
            .env("SESSIOND_ADMIN_TOKEN", admin)
            .env("SESSIOND_TLS_CERT", dir.path().join("cert.pem"))
            .env("SESSIOND_TLS_KEY", dir.path().join("key.pem"));
    });
    let http = client_trusting(&pair.0);
    let created = http
        .post(format!("{}/admin/v1/tenants", server.base))
        .bearer_auth(admin)
        .json(&serde_json::json!({"id": "prod1", "profile": "production"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let login = http
        .post(format!("{}/api/v2/auth/login", server.base))
        .header("X-Tenant-ID", "prod1")
        .header("X-Activity-ID", uuid::Uuid::new_v4().to_string())
        .json(&serde_json::json!({"username": "nobody", "password": "wrong password here"}))
        .send()
        .await
        .unwrap();
    let status = login.status().as_u16();
    let body = login.text().await.unwrap();
    assert_eq!(status, 401, "refused as not HTTPS? {body}");
}

#[test]
fn a_bad_certificate_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = self_signed();
    let cert = dir.path().join("broken-cert.pem");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    let missing = dir.path().join("missing-cert.pem");
    for bad in [&cert, &missing] {
        let out = Command::new(env!("CARGO_BIN_EXE_sessiond"))
            .arg("serve")
            .env("SESSIOND_LISTEN", "127.0.0.1:0")
            .env("SESSIOND_DATA_DIR", dir.path().join("data"))
            .env("SESSIOND_TLS_CERT", bad)
            .env("SESSIOND_TLS_KEY", dir.path().join("key.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {}", bad.display());
        assert!(
            stderr.contains(&bad.display().to_string()),
            "the error must name {}: {stderr}",
            bad.display()
        );
    }
}

/// `SESSIOND_SERVER_HEADER_READ_TIMEOUT_SECS` reaches the listener: a client that opens a
/// TCP connection to the HTTPS port and sends nothing is dropped after it.
#[test]
fn a_silent_client_is_dropped_after_the_configured_timeout() {
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &self_signed());
    let server = common::spawn(|cmd| {
        cmd.env("SESSIOND_DATA_DIR", dir.path().join("data"))
            .env("SESSIOND_TLS_CERT", dir.path().join("cert.pem"))
            .env("SESSIOND_TLS_KEY", dir.path().join("key.pem"))
            .env("SESSIOND_SERVER_HEADER_READ_TIMEOUT_SECS", "1");
    });
    let addr = server.base.trim_start_matches("https://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf);
    assert!(
        matches!(n, Ok(0))
            || n.as_ref()
                .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut),
        "expected a close, got {n:?} after {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}
