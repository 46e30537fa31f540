//! Cross-cutting request work: the activity id, echoed headers, problem+json rendering.

use crate::error::ApiError;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sessiond_proto::ErrorCode;

pub const X_ACTIVITY_ID: &str = "x-activity-id";
pub const X_CORRELATION_ID: &str = "x-correlation-id";
pub const X_SESSION_ID: &str = "x-session-id";

/// The request's activity id; `generated` when the client sent none.
#[derive(Debug, Clone)]
pub struct ActivityId {
    pub value: String,
    pub generated: bool,
}

/// Echo headers the client may send for tracing (length-checked, visible ASCII).
fn echo_value(headers: &HeaderMap, name: &str) -> Result<Option<HeaderValue>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => {
            let ok = !v.is_empty()
                && v.len() <= 128
                && v.as_bytes().iter().all(|b| b.is_ascii_graphic());
            if ok {
                Ok(Some(v.clone()))
            } else {
                Err(ApiError::invalid_header(
                    name,
                    "must be 1 to 128 visible ASCII characters",
                ))
            }
        }
    }
}

fn activity_id(headers: &HeaderMap) -> Result<ActivityId, ApiError> {
    match headers.get(X_ACTIVITY_ID) {
        None => Ok(ActivityId {
            value: uuid::Uuid::new_v4().to_string(),
            generated: true,
        }),
        Some(v) => {
            let parsed = v
                .to_str()
                .ok()
                .and_then(|s| uuid::Uuid::try_parse(s).ok())
                .filter(|u| u.get_version_num() == 4);
            match parsed {
                Some(u) => Ok(ActivityId {
                    value: u.to_string(),
                    generated: false,
                }),
                None => Err(ApiError::invalid_header(
                    "X-Activity-ID",
                    "must be a UUID v4",
                )),
            }
        }
    }
}

/// Assigns the activity id, runs the request, then echoes the tracing headers, renders any
/// [`ApiError`] as problem+json and sets the headers every response carries. Logs one line
/// per request with its activity id: at `info` when it was refused (4xx, 5xx, with the
/// problem's code), at `debug` otherwise. The path is logged without its query string.
pub async fn echo_headers(mut req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let headers = req.headers();
    let echoed = (|| {
        Ok::<_, ApiError>((
            echo_value(headers, X_CORRELATION_ID)?,
            echo_value(headers, X_SESSION_ID)?,
        ))
    })();
    let activity = activity_id(headers);
    let (activity, mut res) = match (activity, echoed) {
        (Ok(a), Ok(echo)) => {
            req.extensions_mut().insert(a.clone());
            let mut res = next.run(req).await;
            let h = res.headers_mut();
            for (name, value) in [(X_CORRELATION_ID, echo.0), (X_SESSION_ID, echo.1)] {
                if let Some(v) = value {
                    h.insert(HeaderName::from_static(name), v);
                }
            }
            (a.value, res)
        }
        (Err(e), _) | (_, Err(e)) => (uuid::Uuid::new_v4().to_string(), e.into_response()),
    };
    let status = res.status().as_u16();
    let code = res.extensions().get::<ApiError>().map(|p| p.code.as_str());
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if status >= 400 {
        tracing::info!(%method, %path, status, code = code.unwrap_or(""), activity_id = %activity, ms, "request refused");
    } else {
        tracing::debug!(%method, %path, status, activity_id = %activity, ms, "request");
    }
    if let Some(problem) = res.extensions_mut().remove::<ApiError>() {
        let body = serde_json::to_vec(&problem.problem(&activity)).unwrap_or_default();
        let (mut parts, _) = res.into_parts();
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(sessiond_proto::error::PROBLEM_JSON),
        );
        parts.headers.remove(header::CONTENT_LENGTH);
        res = Response::from_parts(parts, axum::body::Body::from(body));
    }
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&activity) {
        h.insert(HeaderName::from_static(X_ACTIVITY_ID), v);
    }
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// Panics become a 500 problem, never a dropped connection.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::InternalError,
        "the server failed; see its log",
    )
    .into_response()
}

/// Runs each request that may change something to completion in its own task. A client that
/// disconnects mid-request drops its connection's future; without this, a committed write (a
/// revocation, say) could be cut off from the cache invalidation and audit events that must
/// follow it.
///
/// A request still running after [`REQUEST_TIMEOUT`] is answered 503 at once; its work goes on
/// to its end in the background, so nothing it committed is left half done.
///
/// Requests that only read (see [`only_reads`]) run inline, without a task of their own: a
/// hang-up cancels nothing they must finish. GET and HEAD are among them only when
/// `inline_reads` (the session store keeps the audit trail: see
/// `sessiond_core::Engine::audits_in_writes`): an authenticated GET records a timeout it
/// finds, and only then does the timeout commit with its audit event in one transaction.
/// When sessions and the audit trail live in two stores (sessions on Redis, say) the event is
/// appended after the timeout is written; cut off in between, it would be lost for good (the
/// timeout is recorded once), so those GETs run in a task of their own.
///
/// Every request is also counted and timed here (see [`crate::metrics::observe`]): one layer
/// less on every request.
pub async fn run_to_completion(inline_reads: bool, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let res = if only_reads(&req, inline_reads) {
        tokio::time::timeout(REQUEST_TIMEOUT, next.run(req))
            .await
            .unwrap_or_else(|_| timed_out())
    } else {
        match tokio::time::timeout(REQUEST_TIMEOUT, tokio::spawn(next.run(req))).await {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => panic_response(Box::new(e.to_string())),
            Err(_) => timed_out(),
        }
    };
    crate::metrics::observe(
        &method,
        route.as_ref().map(MatchedPath::as_str),
        res.status().as_u16(),
        started,
    );
    res
}

/// RFC 7662 introspection — it reads the client and the session, and records nothing (a
/// timed-out session is answered `{"active": false}` without recording the timeout) — and,
/// with `inline_reads`, GET and HEAD requests.
fn only_reads(req: &Request, inline_reads: bool) -> bool {
    use axum::http::Method;
    let m = req.method();
    (inline_reads && (*m == Method::GET || *m == Method::HEAD))
        || (*m == Method::POST && req.uri().path() == "/oauth2/introspect")
}

fn timed_out() -> Response {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::InternalError,
        "the request took too long; it may still complete",
    )
    .into_response()
}

/// How long a client waits for an answer at most.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
