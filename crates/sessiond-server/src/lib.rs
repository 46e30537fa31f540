//! sessiond's HTTP API: one `router()` per resource, merged here, behind the cross-cutting
//! layers (activity id and echoed headers, problem+json, body limit, panics).

mod admin;
mod auth;
mod console;
pub mod cookies;
mod docs;
pub mod error;
pub mod events;
pub mod extract;
mod feed;
pub mod forwarded;
mod jwks;
pub mod listen;
mod meta;
mod metrics;
pub mod middleware;
pub mod openapi;
mod outbound;
mod partner;
pub mod ratelimit;
mod schemas;
mod sessions;
mod sso_endpoint;
mod webhook;
pub mod wire;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use error::ApiError;
use sessiond_core::Engine;
use sessiond_proto::ErrorCode;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A failed webhook delivery is retried after this, then twice as long each time.
pub const WEBHOOK_FIRST_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// A partner's SSO verification endpoint is given this long to answer.
pub const SSO_ENDPOINT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Request bodies above this get `413 payload_too_large`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything a handler may reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub admin_token: Arc<str>,
    /// Peers (addresses or CIDR ranges) whose `X-Forwarded-For` / `X-Forwarded-Proto` /
    /// `Forwarded` are believed.
    pub trusted_proxies: Arc<[forwarded::TrustedProxy]>,
    pub limiters: Arc<ratelimit::Limiters>,
    /// Origins (besides this server's own) allowed to make cookie-authenticated changes.
    pub allowed_origins: Arc<[String]>,
    /// When set, `GET /metrics` needs `Authorization: Bearer <this>`.
    pub metrics_token: Option<Arc<str>>,
}

impl AppState {
    pub fn new(
        engine: Engine,
        admin_token: &str,
        trusted_proxies: Vec<forwarded::TrustedProxy>,
        limits: ratelimit::RateLimits,
    ) -> Self {
        Self {
            engine: Arc::new(
                engine
                    .with_sso_transport(
                        Arc::new(jwks::HttpJwksFetcher::new()),
                        Arc::new(sso_endpoint::HttpSsoEndpoint::new(SSO_ENDPOINT_TIMEOUT)),
                    )
                    .with_alert_sink(Arc::new(webhook::WebhookSender::start(WEBHOOK_FIRST_RETRY))),
            ),
            admin_token: admin_token.into(),
            trusted_proxies: trusted_proxies.into(),
            limiters: Arc::new(ratelimit::Limiters::new(limits)),
            allowed_origins: Vec::new().into(),
            metrics_token: None,
        }
    }
}

impl AppState {
    /// Starts delivering session events (back-channel logout, CAEP) from each of `logs`: on
    /// every node, one delivers per log at a time (see `sessiond_core::dispatch`).
    pub fn start_session_events(
        &self,
        logs: &[Arc<dyn sessiond_store::ChangeLog>],
        opts: sessiond_core::dispatch::Options,
    ) {
        let deliver: Arc<dyn sessiond_core::events::Deliver> =
            Arc::new(events::HttpDeliver::new(EVENT_TIMEOUT));
        for log in logs {
            sessiond_core::dispatch::spawn(
                Arc::clone(&self.engine),
                Arc::clone(log),
                Arc::clone(&deliver),
                opts.clone(),
            );
        }
    }
}

/// One attempt at delivering a session event gives up after this.
pub const EVENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub fn router(state: AppState) -> Router {
    let inline_reads = state.engine.audits_in_writes();
    Router::new()
        .merge(auth::router())
        .merge(sessions::router())
        .merge(admin::router(&state))
        .merge(console::router())
        .merge(meta::router())
        .merge(metrics::router())
        .merge(partner::router())
        .route("/openapi.json", get(openapi::openapi_json))
        .merge(feed::router())
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::InvalidRequest,
                "method not allowed",
            )
        })
        .layer(axum::middleware::from_fn(move |req, next| {
            middleware::run_to_completion(inline_reads, req, next)
        }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            middleware::panic_response,
        ))
        .layer(axum::middleware::from_fn(middleware::echo_headers))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves (then requests in flight finish),
/// with the timeouts, connection cap and TLS of `opts` (see [`listen`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    opts: listen::ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listen::serve_router(listener, router(state), opts, shutdown).await
}
