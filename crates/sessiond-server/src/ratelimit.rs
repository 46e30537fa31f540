//! Per-client-IP rate limits (GCRA) on the endpoints that take credentials.

use crate::error::ApiError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

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
}

fn limiter(per_minute: u32) -> Option<DefaultKeyedRateLimiter<String>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

fn check(l: &Option<DefaultKeyedRateLimiter<String>>, ip: Option<&str>) -> Result<(), ApiError> {
    let Some(l) = l else { return Ok(()) };
    l.check_key(&ip.unwrap_or("unknown").to_owned())
        .map_err(|not_until| {
            let wait = not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                + 1;
            let mut e = ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; retry in {wait} s"),
            );
            e.retry_after = Some(wait);
            e
        })
}

impl Limiters {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            auth: limiter(limits.auth_per_minute),
            partner: limiter(limits.partner_per_minute),
        }
    }

    pub fn auth(&self, ip: Option<&str>) -> Result<(), ApiError> {
        check(&self.auth, ip)
    }

    pub fn partner(&self, ip: Option<&str>) -> Result<(), ApiError> {
        check(&self.partner, ip)
    }
}
