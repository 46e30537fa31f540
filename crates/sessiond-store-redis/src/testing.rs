//! Throwaway `redis-server` processes for tests (feature `testing`): a standalone server
//! ([`RedisServer`]) and a Cluster of masters ([`RedisCluster`]), on free loopback ports.
//! `redis-server` and `redis-cli` must be on the `PATH`.
//!
//! Each server runs under a small shell watchdog that kills it once the test process is gone,
//! so servers never outlive a killed test binary (a `static` harness is never dropped).
//! Failing to start panics: these are test helpers.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A standalone server on a free loopback port, killed on drop.
pub struct RedisServer {
    node: Node,
    dir: PathBuf,
}

/// A Cluster of masters (no replicas) on free loopback ports, killed on drop.
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

struct Node {
    port: u16,
    extra: Vec<String>,
    watchdog: Option<Child>,
}

fn temp_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "sessiond-redis-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    dir
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port that is free, and whose Cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919)
        ^ SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..2_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(7)) % 25_000) as u16;
        if port_free(port) && port_free(port + 10_000) {
            return port;
        }
    }
    panic!("no free loopback port for redis-server");
}

fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("redis harness: gave up waiting for {what}");
    false
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Node {
    fn new(port: u16, extra: Vec<String>) -> Self {
        Self {
            port,
            extra,
            watchdog: None,
        }
    }

    fn answers(&self) -> bool {
        redis_cli(self.port, &["PING"]).is_some_and(|s| s.trim() == "PONG")
    }

    /// Starts the server under a watchdog and waits until it answers.
    fn start(&mut self, dir: &Path) {
        assert!(self.watchdog.is_none(), "node {} already runs", self.port);
        let mut args = vec![
            "redis-server".to_owned(),
            "--port".into(),
            self.port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            quote(&dir.to_string_lossy()),
            "--save".into(),
            "''".into(),
            "--appendonly".into(),
            "no".into(),
        ];
        args.extend(self.extra.iter().cloned());
        let script = format!(
            "{} & r=$!; while kill -0 {} 2>/dev/null; do sleep 1; done; kill -9 $r 2>/dev/null; rm -rf {}",
            args.join(" "),
            std::process::id(),
            quote(&dir.to_string_lossy()),
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(c) => self.watchdog = Some(c),
            Err(e) => panic!("cannot start redis-server: {e}"),
        }
        if !wait_for("redis-server to answer", Duration::from_secs(10), || {
            self.answers()
        }) {
            self.stop();
            panic!("redis-server on port {} did not start", self.port);
        }
    }

    /// Stops the server (no save) and its watchdog; waits until the port is closed.
    fn stop(&mut self) {
        let _ = redis_cli(self.port, &["SHUTDOWN", "NOSAVE"]);
        wait_for("redis-server to stop", Duration::from_secs(5), || {
            port_free(self.port)
        });
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.watchdog.is_some() {
            self.stop();
        }
    }
}

impl RedisServer {
    /// Starts a standalone server on a free port.
    pub fn start() -> RedisServer {
        let dir = temp_dir();
        let mut node = Node::new(free_port(), Vec::new());
        node.start(&dir);
        RedisServer { node, dir }
    }

    /// Starts a standalone server that fsyncs every write to its append-only file before it
    /// answers (`appendfsync always`, the setting sessiond's durability guarantee needs), so
    /// what it acknowledged survives [`RedisServer::stop`] and [`RedisServer::start_again`].
    pub fn start_durable() -> RedisServer {
        let dir = temp_dir();
        let extra = ["--appendonly", "yes", "--appendfsync", "always"];
        let mut node = Node::new(free_port(), extra.map(str::to_owned).to_vec());
        node.start(&dir);
        RedisServer { node, dir }
    }

    pub fn port(&self) -> u16 {
        self.node.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.node.port)
    }

    /// Stops the server (its data is lost).
    pub fn stop(&mut self) {
        self.node.stop();
    }

    /// Starts the server again on the same port, empty.
    pub fn start_again(&mut self) {
        self.node.start(&self.dir);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.node.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisCluster {
    /// Starts `masters` (at least 3) masters, creates the Cluster and waits until every node
    /// reports `cluster_state:ok`.
    pub fn start(masters: usize) -> RedisCluster {
        assert!(masters >= 3, "a Redis Cluster needs at least 3 masters");
        let dir = temp_dir();
        let mut nodes = Vec::new();
        for _ in 0..masters {
            let port = free_port();
            let extra = vec![
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                format!("nodes-{port}.conf"),
                "--cluster-node-timeout".into(),
                "2000".into(),
            ];
            let mut node = Node::new(port, extra);
            node.start(&dir);
            nodes.push(node);
        }
        let cluster = RedisCluster { nodes, dir };
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(created, Ok(s) if s.success()) {
            panic!("redis-cli --cluster create failed: {created:?}");
        }
        cluster.wait_ok();
        cluster
    }

    fn wait_ok(&self) {
        for n in &self.nodes {
            let ok = wait_for("cluster_state:ok", Duration::from_secs(30), || {
                redis_cli(n.port, &["CLUSTER", "INFO"])
                    .is_some_and(|s| s.contains("cluster_state:ok"))
            });
            assert!(ok, "the cluster did not become ready on port {}", n.port);
        }
    }

    /// `redis-cluster://127.0.0.1:<port>,…`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis-cluster://{}", nodes.join(","))
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Stops node `i` (its data is lost; the Cluster goes down once the others notice).
    pub fn stop_node(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Starts node `i` again (it rejoins with its slots, empty) and waits for the Cluster.
    pub fn start_node(&mut self, i: usize) {
        let dir = self.dir.clone();
        self.nodes[i].start(&dir);
        self.wait_ok();
    }
}

/// Deletes the keys of test processes that are gone from a shared server: keys named
/// `<root>:<pid>:…` whose process no longer runs (Linux: checked in `/proc`). Best effort; for
/// test binaries that give each store the prefix `<root>:<own pid>:<n>:`.
pub fn remove_keys_of_dead_processes(url: &str, root: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_connection() else {
        return;
    };
    let pattern = format!("{root}:*");
    let Ok(keys) = redis::cmd("KEYS")
        .arg(&pattern)
        .query::<Vec<String>>(&mut conn)
    else {
        return;
    };
    let dead: Vec<&String> = keys
        .iter()
        .filter(|k| {
            k.strip_prefix(root)
                .and_then(|k| k.split(':').nth(1))
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect();
    for chunk in dead.chunks(500) {
        let _ = redis::cmd("UNLINK").arg(chunk).query::<i64>(&mut conn);
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
