//! `GET /oauth2/revocations`: the revocation feed as Server-Sent Events (see
//! [`sessiond_proto::feed`] for the protocol and [`sessiond_core::feed`] for the view).

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use sessiond_core::feed::{Cursor, Subscription};
use sessiond_proto::feed::{FeedEvent, HEARTBEAT_MS};
use std::collections::VecDeque;
use std::time::Duration;

/// A stream ends after this (the client resumes from its last cursor), well before the
/// listener's response deadline.
const STREAM_FOR: Duration = Duration::from_secs(30);

pub(crate) fn router() -> Router<AppState> {
    Router::new().route(sessiond_proto::paths::REVOCATION_FEED, get(feed))
}

#[derive(Deserialize)]
pub(crate) struct FeedQuery {
    /// Where to resume (the `id` of the last event received); `Last-Event-ID` wins.
    cursor: Option<String>,
}

/// The revocation feed.
///
/// What an offline verifier must refuse besides what a token says: revoked sessions of the
/// client's tenant, user cut-offs (every session of a user before an instant) and key changes,
/// as Server-Sent Events. Every event has an `id` (the cursor after it), an `event` name and
/// a JSON `data` line (a `FeedEvent`). Resume with `Last-Event-ID` (or `?cursor=`): any node
/// resumes any node's cursor; one it cannot resume gets `reset` and everything in force. Then
/// `synced`, then live events, and a `heartbeat` at least every 250 ms while this node reads
/// the change logs — a stream that falls silent must not be trusted. A stream ends after 30 s:
/// reconnect with the last id.
#[utoipa::path(
    get,
    path = "/oauth2/revocations",
    tag = "oauth2",
    operation_id = "revocationFeed",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "The cursor to resume from."),
        ("cursor" = Option<String>, Query, description = "The cursor to resume from, when the \
            client cannot send `Last-Event-ID`."),
    ),
    security(("clientBasic" = [])),
    responses(
        (status = 200, description = "The event stream (`text/event-stream`): events whose \
            `data` is a FeedEvent.", body = sessiond_proto::FeedMessage,
            content_type = "text/event-stream"),
        (status = 401, description = "`forbidden`: missing or wrong client credentials.",
            body = sessiond_proto::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store_unavailable` (with `Retry-After`): this node keeps \
            no feed, or has not read the change log as far as the cursor within 2 s.",
            body = sessiond_proto::Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn feed(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FeedQuery>,
) -> ApiResult<Response> {
    let client = crate::partner::client(&st, &headers, None, None).await?;
    let Some(feed) = st.engine.feed() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            sessiond_proto::ErrorCode::StoreUnavailable,
            "this node keeps no revocation feed",
        ));
    };
    let cursor = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(q.cursor)
        .and_then(|c| Cursor::parse(&c));
    let Ok(sub) = feed
        .subscribe(client.tenant_id.as_str().to_owned(), cursor)
        .await
    else {
        // Starting the client over from this node's older state would make it forget
        // revocations it has: let it retry with its cursor, here or elsewhere.
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            sessiond_proto::ErrorCode::StoreUnavailable,
            "this node has not read the change log as far as the cursor: retry",
        );
        e.retry_after = Some(1);
        return Err(e);
    };
    let end = tokio::time::Instant::now() + STREAM_FOR;
    let stream = futures_util::stream::unfold(
        (sub, VecDeque::new()),
        move |(mut sub, mut queue): (Subscription, VecDeque<(String, FeedEvent)>)| async move {
            loop {
                if let Some((id, e)) = queue.pop_front() {
                    let event = Event::default()
                        .id(id)
                        .event(e.name())
                        .json_data(&e)
                        .unwrap_or_else(|_| Event::default().comment("unencodable"));
                    return Some((Ok::<_, std::convert::Infallible>(event), (sub, queue)));
                }
                if sub.is_closed() || tokio::time::Instant::now() >= end {
                    return None;
                }
                queue.extend(sub.next(Duration::from_millis(HEARTBEAT_MS)).await);
            }
        },
    );
    let mut res = Sse::new(stream).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}
