//! What a start refuses: a second process on one SQLite file (it would not see the first
//! one's cached state; the file is free again once the first is gone), and an address it
//! cannot bind — before it generates any secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

/// Starts a second server on `data`; returns its exit status and stderr, or fails the test
/// if it is still running after 10 s (it was not refused).
fn second_start(data: &std::path::Path) -> (std::process::ExitStatus, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .arg("serve")
        .env("SESSIOND_LISTEN", "127.0.0.1:0")
        .env("SESSIOND_DATA_DIR", data)
        .env("SESSIOND_ADMIN_TOKEN", "sqlite-lock-admin-token-0123456789")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status, err);
        }
        if started.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a second process on the same SQLite file kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_second_process_on_one_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = common::spawn(|cmd| {
        cmd.env("SESSIOND_DATA_DIR", &data)
            .env("SESSIOND_ADMIN_TOKEN", "sqlite-lock-admin-token-0123456789");
    });
    let (status, stderr) = second_start(&data);
    assert!(!status.success(), "the second process must not start");
    assert!(
        stderr.contains("in use by another sessiond process"),
        "{stderr}"
    );
    drop(first);
    let again = common::spawn(|cmd| {
        cmd.env("SESSIOND_DATA_DIR", &data)
            .env("SESSIOND_ADMIN_TOKEN", "sqlite-lock-admin-token-0123456789");
    });
    assert!(again.base.starts_with("http://127.0.0.1:"));
}

/// A start that cannot bind its address fails before it generates any secret: nothing is
/// left in the data dir that a later start would use without ever printing it.
#[test]
fn a_failed_bind_generates_no_secrets() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .arg("serve")
        .env("SESSIOND_LISTEN", &addr)
        .env("SESSIOND_DATA_DIR", &data)
        .env_remove("SESSIOND_ADMIN_TOKEN")
        .env_remove("SESSIOND_MASTER_KEY")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen"), "{err}");
    assert!(
        !data.join("admin.token").exists(),
        "no admin token generated"
    );
    assert!(!data.join("master.key").exists(), "no master key generated");
}
