//! Per-client-IP rate limits on the endpoints that take credentials: GCRA in memory on one
//! node; with a shared store, a fixed one-minute window counted there, so every node draws
//! on the same budget.

use crate::error::ApiError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sessiond_store::{Counters, UnixTime};
use std::num::NonZeroU32;
use std::sync::Arc;

/// Requests per minute per client IP; 0 disables a limit.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// login, SSO and refresh.
    pub auth_per_minute: u32,
    /// partner backend calls.
    pub partner_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            auth_per_minute: 120,
            partner_per_minute: 60,
        }
    }
}

pub struct Limiters {
    auth: Option<DefaultKeyedRateLimiter<String>>,
    partner: Option<DefaultKeyedRateLimiter<String>>,
    limits: RateLimits,
    shared: Option<Arc<dyn Counters>>,
}

fn limited(wait: u64) -> ApiError {
    let mut e = ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests; retry in {wait} s"),
    );
    e.retry_after = Some(wait);
    e
}

/// One hit on the shared per-minute counter of `(what, ip)`.
async fn shared_check(
    c: &dyn Counters,
    what: &str,
    per_minute: u32,
    ip: Option<&str>,
    now: UnixTime,
) -> Result<(), ApiError> {
    if per_minute == 0 {
        return Ok(());
    }
    let minute = now.div_euclid(60);
    let key = format!("ip:{what}:{}:{minute}", ip.unwrap_or("unknown"));
    let hits = c
        .hit(&key, 60, now)
        .await
        .map_err(|e| ApiError::from(sessiond_core::CoreError::Store(e)))?;
    if hits.count > u64::from(per_minute) {
        return Err(limited((60 - now.rem_euclid(60)) as u64));
    }
    Ok(())
}

fn limiter(per_minute: u32) -> Option<DefaultKeyedRateLimiter<String>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

fn check(l: &Option<DefaultKeyedRateLimiter<String>>, ip: Option<&str>) -> Result<(), ApiError> {
    let Some(l) = l else { return Ok(()) };
    l.check_key(&ip.unwrap_or("unknown").to_owned())
        .map_err(|not_until| {
            limited(
                not_until
                    .wait_time_from(DefaultClock::default().now())
                    .as_secs()
                    + 1,
            )
        })
}

impl Limiters {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            auth: limiter(limits.auth_per_minute),
            partner: limiter(limits.partner_per_minute),
            limits,
            shared: None,
        }
    }

    /// Limits counted in `counters`, shared by every node.
    pub fn shared(limits: RateLimits, counters: Arc<dyn Counters>) -> Self {
        Self {
            shared: Some(counters),
            ..Self::new(limits)
        }
    }

    pub async fn auth(&self, ip: Option<&str>, now: UnixTime) -> Result<(), ApiError> {
        match &self.shared {
            Some(c) => shared_check(&**c, "auth", self.limits.auth_per_minute, ip, now).await,
            None => check(&self.auth, ip),
        }
    }

    pub async fn partner(&self, ip: Option<&str>, now: UnixTime) -> Result<(), ApiError> {
        match &self.shared {
            Some(c) => shared_check(&**c, "partner", self.limits.partner_per_minute, ip, now).await,
            None => check(&self.partner, ip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shared_limits_add_up_across_nodes() {
        let store = Arc::new(sessiond_store::memory::MemoryStore::new());
        let limits = RateLimits {
            auth_per_minute: 3,
            partner_per_minute: 1,
        };
        let nodes = [
            Limiters::shared(limits, store.clone()),
            Limiters::shared(limits, store),
        ];
        let now = 1_700_000_080; // 40 s into a minute
        for i in 0..3 {
            assert!(nodes[i % 2].auth(Some("10.0.0.1"), now).await.is_ok());
        }
        let refused = nodes[1].auth(Some("10.0.0.1"), now).await.err();
        assert_eq!(
            refused.map(|e| (e.code, e.retry_after)),
            Some(("rate_limited", Some(20)))
        );
        assert!(
            nodes[0].auth(Some("10.0.0.2"), now).await.is_ok(),
            "per address"
        );
        assert!(
            nodes[0].auth(Some("10.0.0.1"), now + 20).await.is_ok(),
            "a new minute"
        );
        assert!(nodes[0].partner(Some("10.0.0.1"), now).await.is_ok());
        assert!(nodes[1].partner(Some("10.0.0.1"), now).await.is_err());
    }
}
