//! Runs the real `sessiond serve` for a test and waits until it listens.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running binary; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sessiond serve` on 127.0.0.1:0 with stderr discarded; `configure` sets the rest
/// (environment, working dir, stderr). Returns once it printed where it listens.
pub fn spawn(configure: impl FnOnce(&mut Command)) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessiond"));
    cmd.arg("serve")
        .env("SESSIOND_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    configure(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("sessiond exited before listening")
            .unwrap();
        if let Some(url) = line.strip_prefix("sessiond listening on ") {
            break url.to_owned();
        }
    };
    // Keep reading what it prints later, so its stdout never meets a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, base }
}
