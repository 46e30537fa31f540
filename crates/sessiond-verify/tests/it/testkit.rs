//! Boots real sessiond nodes in-process (SQLite for one node, PostgreSQL for several, a
//! hand-moved clock), a service client for the feed, and a resource server behind the layer.

use axum::Json;
use axum::routing::get;
use reqwest::Method;
use serde_json::{Value, json};
use sessiond_core::token::Alg;
use sessiond_core::{Engine, EngineConfig, ManualClock, secret::MasterKey};
use sessiond_server::AppState;
use sessiond_server::ratelimit::RateLimits;
use sessiond_store::ChangeLog;
use sessiond_verify::{
    ClientCredentials, Config, StalePolicy, VerifiedClaims, Verifier, VerifyLayer,
};
use std::sync::Arc;
use std::time::Duration;

pub const ADMIN_TOKEN: &str = "verify-admin-token-0123456789";
pub const START: i64 = 1_800_000_000;
pub const ISSUER: &str = "http://sessiond.test";
pub const AUDIENCE: &str = "sessiond";
pub const TENANT: &str = "t1";
pub const PASSWORD: &str = "correct horse battery";
const MASTER: &str = "d9104e1dc6d49a9188a984d394f77241957fff02714fc9fc76ebb5cb7aa14887";

/// The nodes' clock as the verifier's.
pub struct SharedClock(pub Arc<ManualClock>);

impl sessiond_verify::Clock for SharedClock {
    fn now(&self) -> i64 {
        sessiond_core::Clock::now(&*self.0)
    }
}

/// One sessiond node.
pub struct Node {
    pub base: String,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    _keep: Box<dyn std::any::Any + Send + Sync>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Node {
    /// A node on its own SQLite file.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(sessiond_store_sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let log: Arc<dyn ChangeLog> = store.clone();
        let clock = Arc::new(ManualClock::new(START));
        let engine = engine(store.clone(), store.clone(), clock.clone()).await;
        let state = AppState::new(engine, ADMIN_TOKEN, Vec::new(), RateLimits::unlimited());
        state.engine.start_feed(vec![log], false);
        Self::serve(state, clock, Box::new((dir, store))).await
    }

    /// A node of a deployment sharing one PostgreSQL schema (its own pool, caches and
    /// change-log follower, as `sessiond serve` wires them).
    pub async fn postgres(schema: &str, clock: Arc<ManualClock>) -> Self {
        let store = Arc::new(
            sessiond_store_postgres::PgStore::connect(
                &postgres_url(),
                sessiond_store_postgres::PgOptions {
                    schema: Some(schema.to_owned()),
                    max_connections: 4,
                    migrate: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap(),
        );
        let log: Arc<dyn ChangeLog> = store.clone();
        let engine = engine(store.clone(), store.clone(), clock.clone())
            .await
            .with_change_logs(1, Duration::from_secs(1));
        let state = AppState::new(engine, ADMIN_TOKEN, Vec::new(), RateLimits::unlimited());
        state.engine.spawn_follower(0, log.clone());
        state.engine.start_feed(vec![log], true);
        Self::serve(state, clock, Box::new(store)).await
    }

    async fn serve(
        state: AppState,
        clock: Arc<ManualClock>,
        keep: Box<dyn std::any::Any + Send + Sync>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(sessiond_server::serve(
            listener,
            state,
            Default::default(),
            async {
                let _ = rx.await;
            },
        ));
        Self {
            base,
            clock,
            http: reqwest::Client::new(),
            _keep: keep,
            _shutdown: tx,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Tenant-ID", TENANT)
            .header("X-Activity-ID", uuid::Uuid::new_v4().to_string())
            .bearer_auth(bearer);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res = rb.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, ADMIN_TOKEN, body).await
    }

    /// Tenant `t1` (integration profile) with user `alice`, and a service client for the feed.
    pub async fn provision(&self) -> ClientCredentials {
        let (st, b) = self
            .admin(
                Method::POST,
                "/admin/v1/tenants",
                Some(json!({"id": TENANT, "profile": "integration"})),
            )
            .await;
        assert_eq!(st, 201, "{b}");
        let (st, b) = self
            .admin(
                Method::POST,
                &format!("/admin/v1/tenants/{TENANT}/users"),
                Some(json!({"username": "alice", "password": PASSWORD})),
            )
            .await;
        assert_eq!(st, 201, "{b}");
        let (st, b) = self
            .admin(
                Method::POST,
                &format!("/admin/v1/tenants/{TENANT}/clients"),
                Some(json!({})),
            )
            .await;
        assert_eq!(st, 201, "{b}");
        ClientCredentials {
            id: b["clientId"].as_str().unwrap().to_owned(),
            secret: b["clientSecret"].as_str().unwrap().to_owned(),
        }
    }

    /// Alice logs in; returns her session token.
    pub async fn login(&self) -> String {
        let (st, b) = self
            .call(
                Method::POST,
                "/api/v2/auth/login",
                "unused",
                Some(json!({"username": "alice", "password": PASSWORD})),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        b["userSessionToken"].as_str().unwrap().to_owned()
    }

    pub async fn logout(&self, token: &str) {
        let (st, b) = self
            .call(Method::POST, "/api/v2/auth/logout", token, None)
            .await;
        assert_eq!(st, 204, "{b}");
    }

    /// A verifier of tenant `t1` following this node (or `base`, e.g. a proxy in front of it).
    pub async fn verifier(
        &self,
        base: &str,
        client: &ClientCredentials,
        policy: StalePolicy,
    ) -> Verifier {
        let cfg = Config::new(base, ISSUER, AUDIENCE, TENANT, client.clone())
            .with_clock(Arc::new(SharedClock(self.clock.clone())))
            .with_stale_policy(policy);
        let v = Verifier::start(cfg).await.unwrap();
        assert!(
            v.wait_current(Duration::from_secs(5)).await,
            "the verifier syncs: {:?}",
            v.status()
        );
        v
    }
}

async fn engine(
    sessions: Arc<dyn sessiond_store::SessionStore>,
    identity: Arc<dyn sessiond_store::IdentityStore>,
    clock: Arc<ManualClock>,
) -> Engine {
    Engine::start(
        sessions,
        identity,
        clock,
        MasterKey::parse(MASTER).unwrap(),
        EngineConfig {
            issuer: ISSUER.into(),
            hash_concurrency: 2,
            signing_alg: Alg::EdDSA,
            ..EngineConfig::default()
        },
    )
    .await
    .unwrap()
}

pub fn postgres_url() -> String {
    std::env::var("SESSIOND_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A resource server protected by the layer: `GET /me` answers the verified claims.
pub async fn resource_server(verifier: Verifier) -> String {
    let app = axum::Router::new()
        .route(
            "/me",
            get(|VerifiedClaims(c): VerifiedClaims| async move {
                Json(json!({"sub": c.sub, "sid": c.sid, "tid": c.tid}))
            }),
        )
        .layer(VerifyLayer::new(verifier));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// `GET /me` on a resource server with the token in `header`: (status, body, headers).
pub async fn me(rs: &str, header: (&str, String)) -> (u16, Value, reqwest::header::HeaderMap) {
    let res = reqwest::Client::new()
        .get(format!("{rs}/me"))
        .header(header.0, header.1)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

pub fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

/// Asserts a problem+json refusal.
#[track_caller]
pub fn assert_problem(reply: &(u16, Value, reqwest::header::HeaderMap), status: u16, code: &str) {
    assert_eq!(reply.0, status, "{}", reply.1);
    assert_eq!(reply.1["code"], code, "{}", reply.1);
    assert_eq!(reply.1["status"], status);
    assert_eq!(reply.2["content-type"], "application/problem+json");
}
