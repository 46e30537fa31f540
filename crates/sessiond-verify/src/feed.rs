//! Following the revocation feed: connect, apply events, reconnect at once from the last
//! cursor whenever the stream ends.

use crate::error::Error;
use crate::inner::Inner;
use crate::revocations::Then;
use crate::sse::{SseEvent, SseParser};
use sessiond_proto::feed::EVENT_STREAM;
use sessiond_proto::{FeedEvent, paths};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// After a key change the JWKS is fetched at once and again this long after: a node may serve
/// its JWKS from a keyring it installs a moment after the change reached its feed.
const KEY_RECHECKS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(400),
    Duration::from_millis(1000),
];

/// Runs until aborted (when the last [`crate::Verifier`] clone is dropped).
pub(crate) async fn follow(inner: Arc<Inner>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let heard = inner.events.load(Ordering::SeqCst);
        match stream_once(&inner).await {
            Ok(()) => tracing::debug!("revocation feed ended; resuming"),
            Err(e) => tracing::warn!(error = %e, "revocation feed interrupted"),
        }
        inner.connected.store(false, Ordering::SeqCst);
        if inner.events.load(Ordering::SeqCst) > heard {
            // The connection was useful: reconnect at once.
            backoff = FIRST_BACKOFF;
            continue;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection, until it ends, fails, or falls silent for longer than the bound.
async fn stream_once(inner: &Inner) -> Result<(), Error> {
    let cfg = &inner.cfg;
    let mut req = inner
        .http
        .get(format!("{}{}", cfg.base_url, paths::REVOCATION_FEED))
        .header(reqwest::header::AUTHORIZATION, cfg.client.authorization())
        .header(reqwest::header::ACCEPT, EVENT_STREAM);
    let cursor = inner
        .cursor
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(c) = cursor {
        req = req.header("last-event-id", c);
    }
    let mut res = tokio::time::timeout(cfg.request_timeout, req.send())
        .await
        .map_err(|_| Error::Upstream("feed connect timed out".into()))?
        .map_err(|e| Error::Upstream(e.to_string()))?;
    if !res.status().is_success() {
        return Err(Error::Upstream(format!("feed answered {}", res.status())));
    }
    inner.connected.store(true, Ordering::SeqCst);
    inner.connects.fetch_add(1, Ordering::SeqCst);
    // Heartbeats come at least every 250 ms: a connection silent past the bound is dead.
    let silence = cfg.max_silence.max(Duration::from_millis(500));
    let mut parser = SseParser::default();
    loop {
        let chunk = tokio::time::timeout(silence, res.chunk())
            .await
            .map_err(|_| Error::Upstream("feed silent past its bound".into()))?
            .map_err(|e| Error::Upstream(e.to_string()))?;
        let Some(chunk) = chunk else {
            return Ok(());
        };
        for event in parser.push(&chunk)? {
            apply(inner, event).await;
        }
    }
}

async fn apply(inner: &Inner, sse: SseEvent) {
    inner.events.fetch_add(1, Ordering::SeqCst);
    match serde_json::from_str(&sse.data) {
        Ok(event) => act(inner, event).await,
        // A newer server's event type: nothing this version can act on.
        Err(e) => tracing::warn!(event = %sse.event, error = %e, "feed event not understood"),
    }
    if let Some(id) = sse.id {
        *inner.cursor.lock().unwrap_or_else(PoisonError::into_inner) = Some(id);
    }
    inner.touch();
}

async fn act(inner: &Inner, event: FeedEvent) {
    if event == FeedEvent::Reset {
        inner.resets.fetch_add(1, Ordering::SeqCst);
    }
    let then = {
        let mut r = inner
            .revocations
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let then = r.apply(&inner.cfg.tenant, &event);
        if matches!(event, FeedEvent::Heartbeat { .. }) {
            r.prune(inner.cfg.clock.now());
        }
        then
    };
    let recheck_due = {
        let mut due = inner
            .key_rechecks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if then == Then::RefetchKeys {
            *due = KEY_RECHECKS.iter().map(|d| now + *d).collect();
        }
        let before = due.len();
        due.retain(|t| *t > now);
        due.len() < before
    };
    if then == Then::RefetchKeys {
        inner.mark_keys_stale();
    }
    if inner.keys_stale() || recheck_due {
        // Until the new JWKS is in, a revoked key could still be accepted: the copy is not
        // current (keys_stale), and each later event retries.
        if let Err(e) = inner.refetch_keys_now().await {
            tracing::warn!(error = %e, "cannot fetch the JWKS after a key change");
        }
    }
}
