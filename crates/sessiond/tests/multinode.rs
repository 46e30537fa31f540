//! Several real `sessiond` processes sharing one deployment's stores (DESIGN §11): PostgreSQL
//! for everything; PostgreSQL for identity with sessions on Redis; and the same on a
//! three-master Redis Cluster. Every scenario runs on every backend, each deployment in its
//! own PostgreSQL schema and Redis key prefix. The servers are real: PostgreSQL at
//! 127.0.0.1:5432 (`SESSIOND_TEST_POSTGRES` overrides), Redis at 127.0.0.1:6379
//! (`SESSIOND_TEST_REDIS`), and a Redis Cluster this test process starts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;
use reqwest::Method as M;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ADMIN: &str = "multinode-admin-token-0123456789";
const MASTER: &str = "d9104e1dc6d49a9188a984d394f77241957fff02714fc9fc76ebb5cb7aa14887";
const PASSWORD: &str = "correct horse battery staple";
const TENANT: &str = "t1";
const SSO_SECRET: &str = "multinode-sso-shared-secret-of-at-least-32-bytes";

#[derive(Clone, Copy, Debug)]
enum Backend {
    Postgres,
    Redis,
    RedisCluster,
}

fn postgres_url() -> String {
    std::env::var("SESSIOND_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn redis_url() -> String {
    std::env::var("SESSIOND_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// One Redis Cluster for the whole test process.
fn cluster_url() -> String {
    static CLUSTER: std::sync::OnceLock<sessiond_store_redis::testing::RedisCluster> =
        std::sync::OnceLock::new();
    CLUSTER
        .get_or_init(|| sessiond_store_redis::testing::RedisCluster::start(3))
        .url()
}

static N: AtomicUsize = AtomicUsize::new(0);

/// A deployment: its nodes, the environment they share, and an HTTP client.
struct Deployment {
    nodes: Vec<Option<Server>>,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    schema: String,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::process::Command::new("psql")
            .args([
                &postgres_url(),
                "-qc",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn deployment_env(backend: Backend, schema: &str, prefix: &str) -> Vec<(String, String)> {
    let sessions = match backend {
        Backend::Postgres => postgres_url(),
        Backend::Redis => redis_url(),
        Backend::RedisCluster => cluster_url(),
    };
    [
        ("SESSIOND_STORE_IDENTITY", postgres_url()),
        ("SESSIOND_STORE_SESSIONS", sessions),
        ("SESSIOND_STORE_POSTGRES_SCHEMA", schema.to_owned()),
        ("SESSIOND_STORE_POSTGRES_POOL", "4".to_owned()),
        ("SESSIOND_STORE_REDIS_PREFIX", prefix.to_owned()),
        ("SESSIOND_ADMIN_TOKEN", ADMIN.to_owned()),
        ("SESSIOND_MASTER_KEY", MASTER.to_owned()),
        ("SESSIOND_ISSUER", "http://sessiond.test".to_owned()),
        ("SESSIOND_LIMITS_AUTH_PER_MINUTE", "0".to_owned()),
        ("SESSIOND_LOG_FORMAT", "text".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl Deployment {
    /// `n` nodes on `backend`, with tenant `t1` (integration profile) and user `alice`.
    async fn start(backend: Backend, n: usize) -> Self {
        Self::start_with(backend, n, |_| {}).await
    }

    async fn start_with(
        backend: Backend,
        n: usize,
        tweak: impl Fn(&mut Vec<(String, String)>),
    ) -> Self {
        let id = N.fetch_add(1, Ordering::Relaxed);
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let pid = std::process::id();
        let schema = format!("sessiond_t_{secs}_{pid}_mn{id}");
        let prefix = format!("mn:{pid}:{id}:");
        let mut env = deployment_env(backend, &schema, &prefix);
        tweak(&mut env);
        let mut d = Self {
            nodes: Vec::new(),
            env,
            dir: tempfile::tempdir().unwrap(),
            http: reqwest::Client::new(),
            schema,
        };
        // The first node migrates the schema; the others then start side by side.
        d.nodes.push(Some(d.spawn(0)));
        for i in 1..n {
            let node = d.spawn(i);
            d.nodes.push(Some(node));
        }
        let (st, body) = d
            .admin(
                M::POST,
                "/admin/v1/tenants",
                Some(json!({"id": TENANT, "profile": "integration"})),
            )
            .await;
        assert_eq!(st, 201, "{body}");
        d.create_user("alice").await;
        d
    }

    fn spawn(&self, i: usize) -> Server {
        let data = self.dir.path().join(format!("node{i}"));
        let env = self.env.clone();
        common::spawn(move |cmd| {
            cmd.env("SESSIOND_DATA_DIR", &data);
            for (k, v) in &env {
                cmd.env(k, v);
            }
        })
    }

    fn base(&self, i: usize) -> &str {
        &self.nodes[i].as_ref().expect("node is running").base
    }

    fn stop(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    fn restart(&mut self, i: usize) {
        self.nodes[i] = None;
        self.nodes[i] = Some(self.spawn(i));
    }

    async fn call(
        &self,
        i: usize,
        method: M,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base(i)))
            .header("X-Tenant-ID", TENANT)
            .header("X-Activity-ID", uuid::Uuid::new_v4().to_string());
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res = rb.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    }

    async fn admin(&self, method: M, path: &str, body: Option<Value>) -> (u16, Value) {
        self.admin_on(0, method, path, body).await
    }

    async fn admin_on(&self, i: usize, method: M, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = format!("Bearer {ADMIN}");
        let (st, v, _) = self
            .call(i, method, path, &[("Authorization", &auth)], body)
            .await;
        (st, v)
    }

    async fn create_user(&self, name: &str) -> String {
        let (st, body) = self
            .admin(
                M::POST,
                &format!("/admin/v1/tenants/{TENANT}/users"),
                Some(json!({"username": name, "password": PASSWORD})),
            )
            .await;
        assert_eq!(st, 201, "{body}");
        s(&body, "userId")
    }

    /// Logs `user` in on node `i`: (session token, refresh token, session id).
    async fn login(&self, i: usize, user: &str) -> (String, String, String) {
        let (st, body, _) = self
            .call(
                i,
                M::POST,
                "/api/v2/auth/login",
                &[],
                Some(json!({"username": user, "password": PASSWORD})),
            )
            .await;
        assert_eq!(st, 200, "login on node {i}: {body}");
        (
            s(&body, "userSessionToken"),
            s(&body, "refreshToken"),
            s(&body, "sessionId"),
        )
    }

    /// Logs the token's session out on node `i`: the status and the body.
    async fn logout(&self, i: usize, token: &str) -> (u16, Value) {
        let auth = format!("Bearer {token}");
        let (st, body, _) = self
            .call(
                i,
                M::POST,
                "/api/v2/auth/logout",
                &[("Authorization", &auth)],
                None,
            )
            .await;
        (st, body)
    }

    /// whoami on node `i`: the status and the problem code, if any.
    async fn whoami(&self, i: usize, token: &str) -> (u16, String) {
        let auth = format!("Bearer {token}");
        let (st, body, _) = self
            .call(
                i,
                M::GET,
                "/api/v2/session",
                &[("Authorization", &auth)],
                None,
            )
            .await;
        (st, body["code"].as_str().unwrap_or_default().to_owned())
    }

    async fn refresh(&self, i: usize, refresh: &str) -> (u16, Value) {
        let (st, body, _) = self
            .call(
                i,
                M::POST,
                "/api/v2/auth/refresh",
                &[],
                Some(json!({"refreshToken": refresh})),
            )
            .await;
        (st, body)
    }

    /// Waits until node `i` refuses `token` (bounded, so a bug fails instead of hanging);
    /// returns how long that took and the code.
    async fn until_refused(&self, i: usize, token: &str, since: Instant) -> (Duration, String) {
        loop {
            let (st, code) = self.whoami(i, token).await;
            if st == 401 {
                return (since.elapsed(), code);
            }
            assert_eq!(st, 200, "node {i}: {code}");
            assert!(
                since.elapsed() < Duration::from_secs(10),
                "node {i} still accepts a revoked session after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Every node other than `origin` accepts `token` (and so has its session cached).
    async fn cached_everywhere(&self, token: &str) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                assert_eq!(
                    self.whoami(i, token).await,
                    (200, String::new()),
                    "node {i}"
                );
            }
        }
    }

    /// After a revocation made on one node, every node refuses `token` with `code`.
    async fn refused_everywhere(&self, token: &str, code: &str) {
        let since = Instant::now();
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                let (_, got) = self.until_refused(i, token, since).await;
                assert_eq!(got, code, "node {i}");
            }
        }
    }
}

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .to_owned()
}

// ---- scenarios ---------------------------------------------------------------------------

async fn logout_on_one_node_is_refused_by_the_others(backend: Backend) {
    let d = Deployment::start(backend, 3).await;
    let (token, _, _) = d.login(0, "alice").await;
    d.cached_everywhere(&token).await;
    let (st, body) = d.logout(1, &token).await;
    assert_eq!(st, 204, "{body}");
    d.refused_everywhere(&token, "session_revoked").await;
}

async fn logout_all_partner_logout_and_admin_revoke_reach_every_node(backend: Backend) {
    let d = Deployment::start(backend, 3).await;

    // logout-all on node 2 ends the sessions made on nodes 0 and 1.
    let (a, _, _) = d.login(0, "alice").await;
    let (b, _, _) = d.login(1, "alice").await;
    d.cached_everywhere(&a).await;
    d.cached_everywhere(&b).await;
    let auth = format!("Bearer {b}");
    let (st, body, _) = d
        .call(
            2,
            M::POST,
            "/api/v2/auth/logout-all",
            &[("Authorization", &auth)],
            None,
        )
        .await;
    assert_eq!((st, body["revoked"].as_u64()), (200, Some(2)), "{body}");
    d.refused_everywhere(&a, "session_revoked").await;
    d.refused_everywhere(&b, "session_revoked").await;

    // A partner's logout-user through node 1.
    let (st, secret) = d
        .admin(
            M::POST,
            &format!("/admin/v1/tenants/{TENANT}/partner-secrets"),
            None,
        )
        .await;
    assert_eq!(st, 201, "{secret}");
    let (c, _, _) = d.login(2, "alice").await;
    d.cached_everywhere(&c).await;
    let user_id = {
        let auth = format!("Bearer {c}");
        let (_, me, _) = d
            .call(
                0,
                M::GET,
                "/api/v2/session",
                &[("Authorization", &auth)],
                None,
            )
            .await;
        s(&me, "userId")
    };
    let (st, body, _) = d
        .call(
            1,
            M::POST,
            "/v1/auth/partner/logout-user",
            &[("X-PARTNER-SECRET", &s(&secret, "secret"))],
            Some(json!({"userId": user_id})),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    d.refused_everywhere(&c, "session_revoked").await;

    // An operator's revoke through node 2's admin API.
    let (e, _, sid) = d.login(0, "alice").await;
    d.cached_everywhere(&e).await;
    let (st, body) = d
        .admin_on(
            2,
            M::DELETE,
            &format!("/admin/v1/tenants/{TENANT}/sessions/{sid}"),
            None,
        )
        .await;
    assert_eq!(st, 204, "{body}");
    d.refused_everywhere(&e, "session_revoked").await;
}

async fn rotation_and_reuse_detection_span_nodes(backend: Backend) {
    let d = Deployment::start(backend, 3).await;
    let (token, r0, _) = d.login(0, "alice").await;
    d.cached_everywhere(&token).await;
    // Rotated on node 1, its successor used on node 2.
    let (st, body) = d.refresh(1, &r0).await;
    assert_eq!(st, 200, "{body}");
    let r1 = s(&body, "refreshToken");
    let (st, body) = d.refresh(2, &r1).await;
    assert_eq!(st, 200, "{body}");
    let t2 = s(&body, "userSessionToken");
    d.cached_everywhere(&t2).await;
    // The first token again on node 0 (its successor was rotated too, so no grace): reuse,
    // and the session ends everywhere.
    let (st, body) = d.refresh(0, &r0).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (401, Some("refresh_token_reused")),
        "{body}"
    );
    d.refused_everywhere(&t2, "session_revoked").await;
    d.refused_everywhere(&token, "session_revoked").await;
}

async fn one_session_per_user_holds_under_concurrent_logins_on_every_node(backend: Backend) {
    let d = std::sync::Arc::new(Deployment::start(backend, 3).await);
    // Every node has the old policy cached before the change.
    d.login(0, "alice").await;
    d.login(1, "alice").await;
    d.login(2, "alice").await;
    let (st, body) = d
        .admin_on(
            1,
            M::PATCH,
            &format!("/admin/v1/tenants/{TENANT}/policy"),
            Some(json!({"maxSessionsPerUser": 1, "onLimit": "evict_oldest"})),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    // The policy reaches every node within the bound.
    let since = Instant::now();
    for i in 0..3 {
        loop {
            let (_, t) = d
                .admin_on(i, M::GET, &format!("/admin/v1/tenants/{TENANT}"), None)
                .await;
            if t["policy"]["maxSessionsPerUser"] == 1 {
                break;
            }
            assert!(since.elapsed() < Duration::from_secs(10), "node {i}: {t}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut tasks = Vec::new();
    for k in 0..12 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move { d.login(k % 3, "alice").await }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap().0);
    }
    let (st, list) = d
        .admin(
            M::GET,
            &format!("/admin/v1/tenants/{TENANT}/sessions?state=active"),
            None,
        )
        .await;
    assert_eq!(st, 200, "{list}");
    let active = list["sessions"].as_array().unwrap();
    assert_eq!(active.len(), 1, "exactly one session survives: {list}");
    let mut live = 0;
    for token in &tokens {
        for i in 0..3 {
            let (st, code) = d.whoami(i, token).await;
            if st == 200 {
                live += 1;
            } else {
                assert_eq!((st, code.as_str()), (401, "session_displaced"));
            }
        }
    }
    assert_eq!(live, 3, "one token, accepted by all three nodes");
}

async fn a_key_rotation_is_seen_by_every_node(backend: Backend) {
    let d = Deployment::start(backend, 3).await;
    // Two rotations on node 0: the second signing key was never published to the others
    // before the change log (or the unknown-kid reload) told them.
    for _ in 0..2 {
        let (st, body) = d.admin(M::POST, "/admin/v1/keys/rotate", None).await;
        assert_eq!(st, 200, "{body}");
    }
    let (token, _, _) = d.login(0, "alice").await;
    for i in 0..3 {
        assert_eq!(d.whoami(i, &token).await, (200, String::new()), "node {i}");
    }
    let (_, keys) = d.admin(M::GET, "/admin/v1/keys", None).await;
    let signing = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "signing")
        .map(|k| s(k, "kid"))
        .unwrap();
    // Node 2 signs with the same key within the bound.
    let since = Instant::now();
    loop {
        let (_, keys) = d.admin_on(2, M::GET, "/admin/v1/keys", None).await;
        let now_signing = keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["state"] == "signing")
            .map(|k| s(k, "kid"));
        if now_signing.as_deref() == Some(signing.as_str()) {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "node 2 never saw the rotation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (token2, _, _) = d.login(2, "alice").await;
    for i in 0..3 {
        assert_eq!(d.whoami(i, &token2).await, (200, String::new()), "node {i}");
    }
}

async fn an_sso_token_is_usable_once_across_nodes(backend: Backend) {
    let d = Deployment::start(backend, 3).await;
    let (st, body) = d
        .admin(
            M::PUT,
            &format!("/admin/v1/tenants/{TENANT}/sso"),
            Some(json!({"audience": "sessiond-sso", "hs256Secret": SSO_SECRET})),
        )
        .await;
    assert_eq!(st, 204, "{body}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sso = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "partner-user", "jti": "once", "aud": "sessiond-sso", "exp": now + 300}),
        &jsonwebtoken::EncodingKey::from_secret(SSO_SECRET.as_bytes()),
    )
    .unwrap();
    let mut statuses = Vec::new();
    for i in 0..3 {
        let (st, body, _) = d
            .call(
                i,
                M::POST,
                "/api/v2/auth/sso",
                &[],
                Some(json!({"ssoToken": sso})),
            )
            .await;
        statuses.push((st, body["code"].as_str().unwrap_or_default().to_owned()));
    }
    assert_eq!(
        statuses,
        vec![
            (200, String::new()),
            (401, "sso_token_invalid".into()),
            (401, "sso_token_invalid".into())
        ]
    );
}

async fn a_restarted_node_honours_a_logout_made_while_it_was_down(backend: Backend) {
    let mut d = Deployment::start(backend, 3).await;
    let (token, _, _) = d.login(0, "alice").await;
    d.cached_everywhere(&token).await;
    d.stop(2);
    let (st, _) = d.logout(0, &token).await;
    assert_eq!(st, 204);
    d.restart(2);
    assert_eq!(d.whoami(2, &token).await, (401, "session_revoked".into()));
}

/// The revocation delay over many trials: logout on one node, then how long until each of
/// the other two refuses the token. A figure for the docs, printed; the test only fails if a
/// node never refuses.
async fn propagation_delay(backend: Backend) {
    let d = Deployment::start(backend, 3).await;
    // Many logins of one account: no per-account rate for this measurement.
    let (st, body) = d
        .admin(
            M::PATCH,
            &format!("/admin/v1/tenants/{TENANT}/policy"),
            Some(json!({"loginRatePerMinute": 0})),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let mut delays = Vec::new();
    for trial in 0..40 {
        let (token, _, _) = d.login(trial % 3, "alice").await;
        d.cached_everywhere(&token).await;
        let origin = trial % 3;
        let since = Instant::now();
        let (st, _) = d.logout(origin, &token).await;
        assert_eq!(st, 204);
        for i in (0..3).filter(|&i| i != origin) {
            let (took, code) = d.until_refused(i, &token, since).await;
            assert_eq!(code, "session_revoked");
            delays.push(took);
        }
    }
    delays.sort();
    let pick = |q: f64| delays[((delays.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "propagation {backend:?}: n={} p50={:?} p99={:?} max={:?}",
        delays.len(),
        pick(0.5),
        pick(0.99),
        delays[delays.len() - 1]
    );
}

/// Reads the SSE stream `res` until an event named `name` (heartbeats and other events are
/// skipped); its JSON data.
async fn next_event(res: &mut reqwest::Response, buf: &mut String, name: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let event = block.lines().find_map(|l| l.strip_prefix("event: "));
            let data = block.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(e), Some(d)) = (event, data)
                && e == name
            {
                return serde_json::from_str(d).unwrap();
            }
        }
        let chunk = tokio::time::timeout_at(deadline, res.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {name} event within 5 s"))
            .unwrap()
            .expect("the feed ended");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

/// The revocation feed followed on one node shows a logout made on another within a second,
/// and a logout of every session of a user as one cut-off.
async fn the_feed_on_one_node_shows_a_logout_on_another(backend: Backend) {
    let d = Deployment::start(backend, 3).await;
    let (st, c) = d
        .admin(
            M::POST,
            &format!("/admin/v1/tenants/{TENANT}/clients"),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, 201, "{c}");
    let mut res = d
        .http
        .get(format!("{}/oauth2/revocations", d.base(2)))
        .basic_auth(s(&c, "clientId"), Some(s(&c, "clientSecret")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut buf = String::new();
    next_event(&mut res, &mut buf, "synced").await;
    let (token, _, sid) = d.login(0, "alice").await;
    let since = Instant::now();
    assert_eq!(d.logout(1, &token).await.0, 204);
    let e = next_event(&mut res, &mut buf, "session").await;
    let took = since.elapsed();
    assert_eq!(e["sid"], sid.as_str());
    assert!(took < Duration::from_secs(1), "{took:?}");
    println!("feed delay {backend:?}: {took:?}");
    let (a, _, _) = d.login(0, "alice").await;
    d.login(1, "alice").await;
    // The next second: both sessions are older than the cut-off.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let auth = format!("Bearer {a}");
    let (st, body, _) = d
        .call(
            1,
            M::POST,
            "/api/v2/auth/logout-all",
            &[("Authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let cut = next_event(&mut res, &mut buf, "cutoff").await;
    assert_eq!(cut["tid"], TENANT);
}

/// One logout, three nodes: its back-channel logout token is delivered once — by whichever
/// node holds the change log's dispatch lease — and a second logout-all's events too.
async fn a_logout_is_announced_once_by_one_node(backend: Backend) {
    use std::sync::{Arc, Mutex};
    let got = Arc::new(Mutex::new(Vec::<String>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rp = format!("http://{}/bcl", listener.local_addr().unwrap());
    let app = {
        let got = got.clone();
        axum::Router::new().fallback(axum::routing::post(move |body: String| async move {
            got.lock().unwrap().push(body);
            axum::http::StatusCode::OK
        }))
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    let d = Deployment::start(backend, 3).await;
    let (st, body) = d
        .admin(
            M::POST,
            &format!("/admin/v1/tenants/{TENANT}/clients"),
            Some(json!({"clientId": "rp", "backchannelLogoutUri": rp})),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let until = |n: usize| {
        let got = got.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while got.lock().unwrap().len() < n {
                assert!(Instant::now() < deadline, "{n} deliveries expected");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Time for a duplicate to show up, if a second node were delivering.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            got.lock().unwrap().clone()
        }
    };
    let (token, _, sid) = d.login(0, "alice").await;
    let (st, body) = d.logout(1, &token).await;
    assert_eq!(st, 204, "{body}");
    let first = until(1).await;
    assert_eq!(first.len(), 1, "one delivery: {first:?}");
    let sids: Vec<String> = [d.login(1, "alice").await, d.login(2, "alice").await]
        .into_iter()
        .map(|(_, _, sid)| sid)
        .collect();
    let (token, ..) = d.login(2, "alice").await;
    let auth = format!("Bearer {token}");
    let (st, body, _) = d
        .call(
            0,
            M::POST,
            "/api/v2/auth/logout-all",
            &[("Authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let all = until(4).await;
    assert_eq!(all.len(), 4, "one per session: {all:?}");
    use base64::Engine as _;
    let mut announced: Vec<String> = all
        .iter()
        .map(|b| {
            let jwt = b.strip_prefix("logout_token=").unwrap();
            let claims: Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(jwt.split('.').nth(1).unwrap())
                    .unwrap(),
            )
            .unwrap();
            claims["sid"].as_str().unwrap().to_owned()
        })
        .collect();
    announced.sort();
    announced.dedup();
    assert_eq!(announced.len(), 4, "four distinct sessions");
    assert!(announced.contains(&sid));
    assert!(sids.iter().all(|s| announced.contains(s)));
}

macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$scenario(Backend::Postgres).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis() {
                    super::$scenario(Backend::Redis).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis_cluster() {
                    super::$scenario(Backend::RedisCluster).await;
                }
            }
        )*
    };
}

on_every_backend!(
    logout_on_one_node_is_refused_by_the_others,
    logout_all_partner_logout_and_admin_revoke_reach_every_node,
    rotation_and_reuse_detection_span_nodes,
    one_session_per_user_holds_under_concurrent_logins_on_every_node,
    a_key_rotation_is_seen_by_every_node,
    an_sso_token_is_usable_once_across_nodes,
    a_restarted_node_honours_a_logout_made_while_it_was_down,
    propagation_delay,
    the_feed_on_one_node_shows_a_logout_on_another,
    a_logout_is_announced_once_by_one_node,
);

/// Sessions on a Redis that goes away: every node answers 503 `store_unavailable` with
/// `Retry-After` (once its cached state is older than the bound), never hangs, and recovers
/// by itself when Redis is back, with everything it acknowledged still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_gives_503_and_loses_nothing_acknowledged() {
    let mut redis = sessiond_store_redis::testing::RedisServer::start_durable();
    let url = redis.url();
    let d = Deployment::start_with(Backend::Redis, 3, |env| {
        for (k, v) in env.iter_mut() {
            if k == "SESSIOND_STORE_SESSIONS" {
                *v = url.clone();
            }
        }
    })
    .await;
    let (token, refresh, _) = d.login(0, "alice").await;
    d.cached_everywhere(&token).await;

    redis.stop();
    let since = Instant::now();
    for i in 0..3 {
        loop {
            let auth = format!("Bearer {token}");
            let (st, body, headers) = d
                .call(
                    i,
                    M::GET,
                    "/api/v2/session",
                    &[("Authorization", &auth)],
                    None,
                )
                .await;
            if st == 503 {
                assert_eq!(body["code"], "store_unavailable", "{body}");
                assert!(
                    headers.contains_key("retry-after"),
                    "node {i}: no Retry-After"
                );
                break;
            }
            assert_eq!(st, 200, "node {i} while Redis is down: {body}");
            assert!(
                since.elapsed() < Duration::from_secs(15),
                "node {i} never noticed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (st, body, _) = d
        .call(
            1,
            M::POST,
            "/api/v2/auth/login",
            &[],
            Some(json!({"username": "alice", "password": PASSWORD})),
        )
        .await;
    assert_eq!(
        (st, body["code"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );

    // The metrics still answer, and say the node is not using its caches.
    let metrics = d
        .http
        .get(format!("{}/metrics", d.base(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("sessiond_caches_trusted 0"), "{text}");

    redis.start_again();
    let since = Instant::now();
    for i in 0..3 {
        loop {
            let (st, _) = d.whoami(i, &token).await;
            if st == 200 {
                break;
            }
            assert!(
                since.elapsed() < Duration::from_secs(20),
                "node {i} never recovered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The refresh token acknowledged before the outage still rotates.
    let (st, body) = d.refresh(2, &refresh).await;
    assert_eq!(st, 200, "{body}");
}

/// A node on shared stores that would generate its own issuer, master key or admin token
/// refuses to start, naming what is missing (it would refuse the other nodes' tokens).
#[test]
fn a_shared_node_without_the_shared_settings_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .arg("serve")
        .env("SESSIOND_LISTEN", "127.0.0.1:0")
        .env("SESSIOND_DATA_DIR", dir.path())
        .env("SESSIOND_STORE_IDENTITY", postgres_url())
        .env("SESSIOND_STORE_SESSIONS", postgres_url())
        .env("SESSIOND_ADMIN_TOKEN", ADMIN)
        .env_remove("SESSIOND_ISSUER")
        .env_remove("SESSIOND_MASTER_KEY")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SESSIOND_ISSUER") && err.contains("SESSIOND_MASTER_KEY"),
        "{err}"
    );
    assert!(!err.contains("SESSIOND_ADMIN_TOKEN"), "{err}");
}
