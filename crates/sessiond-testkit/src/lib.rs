//! Test support, not for production: starts a real sessiond in-process (an [`Engine`] with a
//! fixed master key and issuer on a hand-moved [`ManualClock`], served over real HTTP on
//! 127.0.0.1:0) and makes the admin calls tests begin with (a tenant with user `alice`, a
//! service client). It panics on any failure, as a test should.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use sessiond_core::token::Alg;
use sessiond_core::{Engine, EngineConfig, ManualClock, secret::MasterKey};
use sessiond_server::AppState;
use sessiond_server::ratelimit::RateLimits;
use sessiond_store::{IdentityStore, SessionStore};
use sessiond_store_sqlite::SqliteStore;
use std::path::Path;
use std::sync::Arc;

/// The operator's bearer token on every test server.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// The clock's start, in Unix seconds.
pub const START: i64 = 1_800_000_000;
/// Every test node shares one issuer, as the nodes of one deployment do.
pub const ISSUER: &str = "http://sessiond.test";
/// The password of every user the admin calls create.
pub const PASSWORD: &str = "correct horse battery";

/// An engine over these stores: a fixed master key, [`ISSUER`], a hash concurrency of 2 and
/// new signing keys of `alg`.
pub async fn engine(
    sessions: Arc<dyn SessionStore>,
    identity: Arc<dyn IdentityStore>,
    clock: Arc<ManualClock>,
    alg: Alg,
) -> Engine {
    Engine::start(
        sessions,
        identity,
        clock,
        MasterKey::parse(&"42".repeat(32)).unwrap(),
        EngineConfig {
            issuer: ISSUER.into(),
            hash_concurrency: 2,
            signing_alg: alg,
            ..EngineConfig::default()
        },
    )
    .await
    .unwrap()
}

/// The server's state over `engine`: [`ADMIN_TOKEN`], no trusted proxies, no rate limits.
pub fn state(engine: Engine) -> AppState {
    AppState::new(engine, ADMIN_TOKEN, Vec::new(), RateLimits::unlimited())
}

/// A node's state on the SQLite database `sessiond.db` in `dir` (opened, or created), and
/// its store. The revocation feed is not started: that is the caller's choice.
pub async fn sqlite(dir: &Path, clock: Arc<ManualClock>, alg: Alg) -> (Arc<SqliteStore>, AppState) {
    let store = Arc::new(SqliteStore::open(&dir.join("sessiond.db")).unwrap());
    let engine = engine(store.clone(), store.clone(), clock, alg).await;
    (store, state(engine))
}

/// An HTTP answer: status, headers and body (JSON; the text as a string if it is not JSON;
/// null if empty).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// Sends the request and reads the whole answer.
pub async fn send(rb: RequestBuilder) -> Answer {
    let res = rb.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// A server listening on 127.0.0.1:0 until [`Server::stop`] or drop.
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// Serves sessiond's routes over `state`.
    pub async fn serve(state: AppState) -> Self {
        Self::serve_router(sessiond_server::router(state)).await
    }

    /// Serves `app` (sessiond's router, perhaps with more layers) as sessiond serves it.
    pub async fn serve_router(app: axum::Router) -> Self {
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
            http: reqwest::Client::new(),
            shutdown: Some(tx),
        }
    }

    /// Stops accepting requests (as a server that went away).
    pub fn stop(&mut self) {
        self.shutdown.take();
    }

    /// An operator's request (bearer [`ADMIN_TOKEN`]) to `path`.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// An operator's call with an optional JSON body.
    pub async fn admin_call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut rb = self.admin(method, path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        send(rb).await
    }

    /// Creates a tenant with `profile` and `policy` overrides; asserts 201.
    pub async fn tenant(&self, id: &str, profile: &str, policy: Value) -> Answer {
        let body = json!({"id": id, "profile": profile, "policy": policy});
        let r = self
            .admin_call(Method::POST, "/admin/v1/tenants", Some(body))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r
    }

    /// Creates a user with [`PASSWORD`]; asserts 201 and returns the user id.
    pub async fn user(&self, tenant: &str, username: &str) -> String {
        let body = json!({"username": username, "password": PASSWORD});
        let path = format!("/admin/v1/tenants/{tenant}/users");
        let r = self.admin_call(Method::POST, &path, Some(body)).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["userId"].as_str().unwrap().to_owned()
    }

    /// A tenant with one user `alice`; returns alice's user id.
    pub async fn tenant_with_user(&self, id: &str, profile: &str, policy: Value) -> String {
        self.tenant(id, profile, policy).await;
        self.user(id, "alice").await
    }

    /// A service client of `tenant`: (client id, client secret).
    pub async fn service_client(&self, tenant: &str) -> (String, String) {
        let path = format!("/admin/v1/tenants/{tenant}/clients");
        let r = self.admin_call(Method::POST, &path, Some(json!({}))).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let field = |k: &str| r.body[k].as_str().unwrap().to_owned();
        (field("clientId"), field("clientSecret"))
    }
}
