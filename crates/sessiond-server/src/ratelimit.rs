//! Per-client-IP rate limits on the endpoints that take credentials: GCRA in memory on one
//! node; with a shared store, a fixed one-minute window counted there, so every node draws
//! on the same budget. A client is its IPv4 address, or its IPv6 network (a /64 unless
//! configured otherwise): one host usually holds a whole /64.

use crate::error::ApiError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sessiond_store::{Counters, UnixTime};
use std::net::IpAddr;
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
    ipv6_prefix: u8,
}

/// IPv6 clients are limited per network of this many bits unless configured otherwise.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// The key a client is limited by: its IPv4 address, or its IPv6 address's network of
/// `ipv6_prefix` bits (`2001:db8:1:2::/64`); `unknown` without an address.
pub fn client_key(ip: Option<&str>, ipv6_prefix: u8) -> String {
    let Some(ip) = ip else {
        return "unknown".to_owned();
    };
    match ip.parse::<IpAddr>().map(|a| a.to_canonical()) {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => {
            let prefix = ipv6_prefix.clamp(1, 128);
            let mask = u128::MAX << (128 - u32::from(prefix));
            let net = std::net::Ipv6Addr::from(u128::from(v6) & mask);
            format!("{net}/{prefix}")
        }
        Err(_) => ip.to_owned(),
    }
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
    client: &str,
    now: UnixTime,
) -> Result<(), ApiError> {
    if per_minute == 0 {
        return Ok(());
    }
    let minute = now.div_euclid(60);
    let key = format!("ip:{what}:{client}:{minute}");
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

fn check(l: &Option<DefaultKeyedRateLimiter<String>>, client: String) -> Result<(), ApiError> {
    let Some(l) = l else { return Ok(()) };
    l.check_key(&client).map_err(|not_until| {
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
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }

    /// IPv6 clients are limited per network of `prefix` bits (1–128).
    pub fn with_ipv6_prefix(self, prefix: u8) -> Self {
        Self {
            ipv6_prefix: prefix.clamp(1, 128),
            ..self
        }
    }

    /// Limits counted in `counters`, shared by every node.
    pub fn shared(limits: RateLimits, counters: Arc<dyn Counters>) -> Self {
        Self {
            shared: Some(counters),
            ..Self::new(limits)
        }
    }

    /// One login, SSO or refresh request from `ip` (the full client address).
    pub async fn auth(&self, ip: Option<&str>, now: UnixTime) -> Result<(), ApiError> {
        let client = client_key(ip, self.ipv6_prefix);
        match &self.shared {
            Some(c) => shared_check(&**c, "auth", self.limits.auth_per_minute, &client, now).await,
            None => check(&self.auth, client),
        }
    }

    /// One partner backend request from `ip` (the full client address).
    pub async fn partner(&self, ip: Option<&str>, now: UnixTime) -> Result<(), ApiError> {
        let client = client_key(ip, self.ipv6_prefix);
        match &self.shared {
            Some(c) => {
                shared_check(
                    &**c,
                    "partner",
                    self.limits.partner_per_minute,
                    &client,
                    now,
                )
                .await
            }
            None => check(&self.partner, client),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_keyed_by_network() {
        assert_eq!(client_key(Some("203.0.113.7"), 64), "203.0.113.7");
        assert_eq!(client_key(Some("::ffff:203.0.113.7"), 64), "203.0.113.7");
        assert_eq!(
            client_key(Some("2001:db8:1:2:aaaa::1"), 64),
            "2001:db8:1:2::/64"
        );
        assert_eq!(client_key(Some("2001:db8:1:2::1"), 48), "2001:db8:1::/48");
        assert_eq!(client_key(Some("2001:db8::1"), 128), "2001:db8::1/128");
        assert_eq!(client_key(None, 64), "unknown");
    }

    #[tokio::test]
    async fn one_ipv6_network_shares_a_limit() {
        let limits = RateLimits {
            auth_per_minute: 2,
            partner_per_minute: 0,
        };
        let store = Arc::new(sessiond_store::memory::MemoryStore::new());
        for l in [Limiters::new(limits), Limiters::shared(limits, store)] {
            let now = 1_700_000_000;
            assert!(l.auth(Some("2001:db8:0:1::a"), now).await.is_ok());
            assert!(l.auth(Some("2001:db8:0:1::b"), now).await.is_ok());
            assert!(l.auth(Some("2001:db8:0:1:ffff::c"), now).await.is_err());
            assert!(l.auth(Some("2001:db8:0:2::a"), now).await.is_ok());
        }
        let per_host = Limiters::new(limits).with_ipv6_prefix(128);
        for host in ["2001:db8::a", "2001:db8::b", "2001:db8::c"] {
            assert!(per_host.auth(Some(host), 0).await.is_ok(), "{host}");
        }
    }

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
