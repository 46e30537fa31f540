//! `/metrics` in Prometheus' text format: requests by route and status with latency
//! histograms (here), lifecycle events by type and reason (`sessiond_events_total`, from the
//! engine), store latency (`sessiond_store_seconds`, from the store), active sessions and
//! Argon2 password verifications (`sessiond_password_verifications_total`, from the engine's
//! hasher: one per login with a password, unknown users included).

use crate::AppState;
use crate::error::ApiResult;
use axum::Router;
use axum::extract::State;
use axum::http::Method;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sessiond_proto::ErrorCode;
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Instant;

const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The process-wide recorder (installed once; every server in the process shares it).
fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

pub fn router() -> Router<AppState> {
    handle();
    metrics::describe_counter!(
        "sessiond_password_verifications_total",
        "Full Argon2 password verifications (a login as an unknown user verifies a dummy hash)"
    );
    metrics::describe_counter!(
        "sessiond_session_events_total",
        "Session-event attempts by channel (backchannel_logout, caep) and outcome (delivered, retried, refused, given_up)"
    );
    metrics::describe_counter!(
        "sessiond_session_event_entries_lost_total",
        "Change-log entries purged before the session-event dispatcher read them"
    );
    Router::new().route("/metrics", get(render))
}

/// Prometheus metrics.
///
/// Requests by route and status with latency histograms, lifecycle events by type and reason,
/// store latency and active sessions, in Prometheus' text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    operation_id = "metrics",
    responses(
        (status = 200, description = "The metrics (Prometheus text format 0.0.4).",
            body = String, content_type = "text/plain; version=0.0.4"),
        (status = 400, description = crate::docs::D_400_TRACE, body = sessiond_proto::Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "`forbidden`: a metrics token is configured \
            (`metrics_token`) and the request does not carry it as `Authorization: Bearer`.",
            body = sessiond_proto::Problem, content_type = "application/problem+json"),
    ),
)]
async fn render(State(st): State<AppState>, headers: axum::http::HeaderMap) -> ApiResult<Response> {
    if let Some(expected) = &st.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !sessiond_core::secret::constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Err(crate::error::ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                ErrorCode::Forbidden,
                "the metrics need the metrics token",
            ));
        }
    }
    // With shared stores: is this node using its caches, and how old is its view of the
    // change log (the stalest log's last complete sweep)?
    metrics::gauge!("sessiond_caches_trusted").set(f64::from(u8::from(st.engine.caches_trusted())));
    if let Some(age) = st.engine.change_log_age() {
        metrics::gauge!("sessiond_change_log_age_seconds").set(age.as_secs_f64());
    }
    // A store that is down must not take the metrics with it: the gauge keeps its last value.
    match st.engine.count_active_sessions().await {
        Ok(n) => metrics::gauge!("sessiond_sessions_active").set(n as f64),
        Err(e) => tracing::warn!(error = %e, "cannot count the active sessions"),
    }
    let body = handle().map(PrometheusHandle::render).unwrap_or_default();
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(res)
}

/// The metric handles of one (method, route, status), made once: the hot path then costs a
/// read-locked map lookup (with no allocation), not a registry lookup with freshly allocated
/// labels.
type Handles = (metrics::Counter, metrics::Histogram);
/// By route template (`""`: unmatched), then by method and status.
type HandleMap = HashMap<Box<str>, HashMap<(Method, u16), Handles>>;

fn handles(method: &Method, route: Option<&str>, status: u16) -> Option<Handles> {
    static CACHE: OnceLock<RwLock<HandleMap>> = OnceLock::new();
    let cache = CACHE.get_or_init(RwLock::default);
    // Label values are bounded: known methods only, route templates (not paths), statuses.
    let method = if KNOWN_METHODS.contains(method) {
        method.clone()
    } else {
        Method::from_bytes(b"OTHER").ok()?
    };
    let route_key = route.unwrap_or("");
    let key = (method, status);
    if let Some(h) = cache.read().ok()?.get(route_key).and_then(|m| m.get(&key)) {
        return Some(h.clone());
    }
    let (m, r) = (
        key.0.as_str().to_owned(),
        route.unwrap_or("unmatched").to_owned(),
    );
    let h = (
        metrics::counter!("sessiond_http_requests_total", "method" => m.clone(), "route" => r.clone(), "status" => status.to_string()),
        metrics::histogram!("sessiond_http_request_duration_seconds", "method" => m, "route" => r),
    );
    cache
        .write()
        .ok()?
        .entry(route_key.into())
        .or_default()
        .insert(key, h.clone());
    Some(h)
}

const KNOWN_METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
];

/// Counts a request by method, route template and status, and times it from `started`.
pub fn observe(method: &Method, route: Option<&str>, status: u16, started: Instant) {
    if let Some((count, time)) = handles(method, route, status) {
        count.increment(1);
        time.record(started.elapsed().as_secs_f64());
    }
}
