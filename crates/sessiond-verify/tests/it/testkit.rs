//! Boots real sessiond nodes in-process (SQLite for one node, PostgreSQL for several, a
//! hand-moved clock), a service client for the feed, and a resource server behind the layer.

use axum::Json;
use axum::routing::get;
use reqwest::Method;
use serde_json::{Value, json};
use sessiond_core::ManualClock;
use sessiond_core::token::Alg;
use sessiond_server::AppState;
use sessiond_store::ChangeLog;
use sessiond_testkit::Server;
use sessiond_verify::{
    ClientCredentials, Config, StalePolicy, VerifiedClaims, Verifier, VerifyLayer,
};
use std::sync::Arc;
use std::time::Duration;

pub use sessiond_testkit::{ADMIN_TOKEN, ISSUER, PASSWORD, START};
pub const AUDIENCE: &str = "sessiond";
pub const TENANT: &str = "t1";

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
    node: Server,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

impl Node {
    /// A node on its own SQLite file.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let (store, state) = sessiond_testkit::sqlite(dir.path(), clock.clone(), Alg::EdDSA).await;
        let log: Arc<dyn ChangeLog> = store.clone();
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
        let engine =
            sessiond_testkit::engine(store.clone(), store.clone(), clock.clone(), Alg::EdDSA)
                .await
                .with_change_logs(1, Duration::from_secs(1));
        let state = sessiond_testkit::state(engine);
        state.engine.spawn_follower(0, log.clone());
        state.engine.start_feed(vec![log], true);
        Self::serve(state, clock, Box::new(store)).await
    }

    async fn serve(
        state: AppState,
        clock: Arc<ManualClock>,
        keep: Box<dyn std::any::Any + Send + Sync>,
    ) -> Self {
        let node = Server::serve(state).await;
        Self {
            base: node.base.clone(),
            clock,
            http: node.http.clone(),
            node,
            _keep: keep,
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
        let r = sessiond_testkit::send(rb).await;
        (r.status.as_u16(), r.body)
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, ADMIN_TOKEN, body).await
    }

    /// Tenant `t1` (integration profile) with user `alice`, and a service client for the feed.
    pub async fn provision(&self) -> ClientCredentials {
        self.node
            .tenant_with_user(TENANT, "integration", json!({}))
            .await;
        let (id, secret) = self.node.service_client(TENANT).await;
        ClientCredentials { id, secret }
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
