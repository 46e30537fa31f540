//! Boots a real sessiond (SQLite in a temp dir, a hand-moved clock) on 127.0.0.1:0 and
//! records every request it answers, so tests count refreshes on the server's side.

use axum::extract::Request;
use axum::middleware::Next;
use reqwest::Method;
use serde_json::{Value, json};
use sessiond_client::{Client, ClientBuilder, MemoryStore};
use sessiond_core::{Clock, Engine, EngineConfig, ManualClock, secret::MasterKey};
use sessiond_server::AppState;
use sessiond_server::ratelimit::RateLimits;
use sessiond_store_sqlite::SqliteStore;
use std::sync::{Arc, Mutex};
use tempfile::TempDir;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const START: i64 = 1_800_000_000;
pub const PASSWORD: &str = "correct horse battery";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub tenant: Option<String>,
    pub activity: Option<String>,
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub struct TestServer {
    pub base: String,
    pub clock: Arc<ManualClock>,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<Seen>>>,
    _dir: TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let store = Arc::new(SqliteStore::open(&dir.path().join("sessiond.db")).unwrap());
        let engine = Engine::start(
            store.clone(),
            store,
            clock.clone(),
            MasterKey::parse(&"42".repeat(32)).unwrap(),
            EngineConfig {
                issuer: "http://sessiond.test".into(),
                hash_concurrency: 2,
                ..EngineConfig::default()
            },
        )
        .await
        .unwrap();
        let state = AppState::new(engine, ADMIN_TOKEN, Vec::new(), RateLimits::unlimited());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = sessiond_server::router(state).layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let log = log.clone();
                async move {
                    let (tenant, activity) =
                        (header(&req, "x-tenant-id"), header(&req, "x-activity-id"));
                    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
                    let res = next.run(req).await;
                    log.lock().unwrap().push(Seen {
                        method,
                        path,
                        status: res.status().as_u16(),
                        tenant,
                        activity,
                    });
                    res
                }
            },
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(sessiond_server::listen::serve_router(
            listener,
            app,
            Default::default(),
            async {
                let _ = rx.await;
            },
        ));
        Self {
            base,
            clock,
            http: reqwest::Client::new(),
            seen,
            _dir: dir,
            shutdown: Some(tx),
        }
    }

    /// Stops accepting requests (as a server that went away).
    pub fn stop(&mut self) {
        self.shutdown.take();
    }

    /// A client of this server for `tenant` on the server's clock (default refresh share and
    /// jitter: a token of 3600 s is due between 2700 s and 2880 s).
    pub fn builder(&self, tenant: &str) -> ClientBuilder {
        let clock = self.clock.clone();
        Client::builder(&self.base, tenant).clock(move || clock.now())
    }

    /// A client and a handle on its store.
    pub fn client(&self, tenant: &str) -> (Client, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::new());
        let client = self.builder(tenant).store(store.clone()).build().unwrap();
        (client, store)
    }

    /// Every request the server answered so far on `path` (any method).
    pub fn seen(&self, path: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.path == path).cloned().collect()
    }

    pub fn all_seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res = rb.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A tenant with one user `alice` (password [`PASSWORD`]).
    pub async fn tenant_with_user(&self, id: &str, profile: &str, policy: Value) {
        let (status, body) = self
            .admin(
                Method::POST,
                "/admin/v1/tenants",
                Some(json!({"id": id, "profile": profile, "policy": policy})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = self
            .admin(
                Method::POST,
                &format!("/admin/v1/tenants/{id}/users"),
                Some(json!({"username": "alice", "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// The operator revokes a session.
    pub async fn revoke(&self, tenant: &str, session_id: &str) {
        let (status, body) = self
            .admin(
                Method::DELETE,
                &format!("/admin/v1/tenants/{tenant}/sessions/{session_id}"),
                None,
            )
            .await;
        assert_eq!(status, 204, "{body}");
    }

    pub async fn audit(&self, tenant: &str, query: &str) -> Vec<Value> {
        let (status, body) = self
            .admin(
                Method::GET,
                &format!("/admin/v1/tenants/{tenant}/audit?{query}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["events"].as_array().unwrap().clone()
    }
}
