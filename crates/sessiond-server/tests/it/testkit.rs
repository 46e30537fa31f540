//! Boots a real sessiond (SQLite in a temp dir, a hand-moved clock) on 127.0.0.1:0.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use sessiond_core::ManualClock;
use sessiond_core::token::Alg;
use sessiond_server::AppState;
use sessiond_store_sqlite::SqliteStore;
use sessiond_testkit::Server;
use std::sync::Arc;
use tempfile::TempDir;

pub use sessiond_testkit::{ISSUER, PASSWORD, START};

pub struct TestServer {
    pub base: String,
    pub clock: Arc<ManualClock>,
    /// The node's engine (for what the binary's background tasks do, such as the janitor).
    pub engine: Arc<sessiond_core::Engine>,
    pub http: reqwest::Client,
    pub store: Arc<SqliteStore>,
    dir: Arc<TempDir>,
    node: Server,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts a problem+json error with this status and contract code.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["code"], code, "body: {}", self.body);
        assert_eq!(self.body["status"], status);
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "problem responses are RFC 9457"
        );
        assert!(
            self.body["activityId"].is_string()
                && self.body["title"].is_string()
                && self.body["type"].is_string()
        );
    }

    pub fn str(&self, key: &str) -> String {
        self.body[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {}", self.body))
            .to_owned()
    }
}

impl From<sessiond_testkit::Answer> for Reply {
    fn from(a: sessiond_testkit::Answer) -> Self {
        Self {
            status: a.status,
            headers: a.headers,
            body: a.body,
        }
    }
}

pub fn activity() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut AppState)) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        Self::start_node(
            dir,
            Arc::new(ManualClock::new(START)),
            Alg::EdDSA,
            tune,
            None,
        )
        .await
    }

    /// A server that delivers session events (back-channel logout, CAEP) with `opts`.
    pub async fn start_with_events(opts: sessiond_core::dispatch::Options) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let clock = Arc::new(ManualClock::new(START));
        Self::start_node(dir, clock, Alg::EdDSA, |_| {}, Some(opts)).await
    }

    /// A server whose new signing keys use `alg`.
    pub async fn start_signing_with(alg: Alg) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        Self::start_node(dir, Arc::new(ManualClock::new(START)), alg, |_| {}, None).await
    }

    /// The same data dir, restarted as a new node signing with `alg`.
    pub async fn restart_signing_with(&self, alg: Alg) -> Self {
        Self::start_node(self.dir.clone(), self.clock.clone(), alg, |_| {}, None).await
    }

    /// Another sessiond node on the same database (its own caches and clock handle).
    pub async fn second_node(&self) -> Self {
        Self::start_node(
            self.dir.clone(),
            self.clock.clone(),
            Alg::EdDSA,
            |_| {},
            None,
        )
        .await
    }

    async fn start_node(
        dir: Arc<TempDir>,
        clock: Arc<ManualClock>,
        alg: Alg,
        tune: impl FnOnce(&mut AppState),
        events: Option<sessiond_core::dispatch::Options>,
    ) -> Self {
        let (store, mut state) = sessiond_testkit::sqlite(dir.path(), clock.clone(), alg).await;
        let log: Arc<dyn sessiond_store::ChangeLog> = store.clone();
        state.engine.start_feed(vec![log.clone()], false);
        if let Some(opts) = events {
            state.start_session_events(&[log], opts);
        }
        tune(&mut state);
        let engine = Arc::clone(&state.engine);
        let node = Server::serve(state).await;
        Self {
            base: node.base.clone(),
            clock,
            engine,
            http: node.http.clone(),
            store,
            dir,
            node,
        }
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// An end-user request with the integration profile's required headers.
    pub fn api(&self, method: Method, path: &str, tenant: &str) -> RequestBuilder {
        self.req(method, path)
            .header("X-Tenant-ID", tenant)
            .header("X-Activity-ID", activity())
    }

    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.node.admin(method, path)
    }

    pub async fn send(rb: RequestBuilder) -> Reply {
        sessiond_testkit::send(rb).await.into()
    }

    pub async fn tenant(&self, id: &str, profile: &str, policy: Value) -> Reply {
        self.node.tenant(id, profile, policy).await.into()
    }

    pub async fn user(&self, tenant: &str, username: &str) -> String {
        self.node.user(tenant, username).await
    }

    /// A tenant with the given profile and one user `alice`; returns alice's user id.
    pub async fn tenant_with_user(&self, id: &str, profile: &str, policy: Value) -> String {
        self.node.tenant_with_user(id, profile, policy).await
    }

    /// A service client of `tenant`: (client id, client secret).
    pub async fn service_client(&self, tenant: &str) -> (String, String) {
        self.node.service_client(tenant).await
    }

    pub async fn login(&self, tenant: &str, username: &str) -> Reply {
        Self::send(
            self.api(Method::POST, "/api/v2/auth/login", tenant)
                .json(&json!({"username": username, "password": PASSWORD})),
        )
        .await
    }

    pub async fn login_ok(&self, tenant: &str, username: &str) -> Reply {
        let r = self.login(tenant, username).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r
    }

    pub async fn whoami(&self, tenant: &str, token: &str) -> Reply {
        Self::send(
            self.api(Method::GET, "/api/v2/session", tenant)
                .bearer_auth(token),
        )
        .await
    }

    pub async fn refresh(&self, tenant: &str, refresh_token: &str) -> Reply {
        Self::send(
            self.api(Method::POST, "/api/v2/auth/refresh", tenant)
                .json(&json!({"refreshToken": refresh_token})),
        )
        .await
    }

    pub async fn logout(&self, tenant: &str, token: &str) -> Reply {
        Self::send(
            self.api(Method::POST, "/api/v2/auth/logout", tenant)
                .bearer_auth(token),
        )
        .await
    }

    pub async fn audit(&self, tenant: &str, query: &str) -> Vec<Value> {
        let r = Self::send(self.admin(
            Method::GET,
            &format!("/admin/v1/tenants/{tenant}/audit?{query}"),
        ))
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["events"].as_array().unwrap().clone()
    }

    /// A tenant's sessions as the admin API lists them (one page).
    pub async fn admin_sessions(&self, tenant: &str, query: &str) -> Vec<Value> {
        let r = Self::send(self.admin(
            Method::GET,
            &format!("/admin/v1/tenants/{tenant}/sessions?{query}"),
        ))
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["sessions"].as_array().unwrap().clone()
    }
}
