//! Abuse signals kept in memory on each node: failed logins per account (exponential
//! backoff) and the addresses an account logs in from. Approximate by design — concurrent
//! updates may lose a count — and node-local; the per-IP rate limits sit in front of it.

use sessiond_store::{TenantId, UnixTime, UserId};

/// The longest an account is held back after failures (seconds).
pub const MAX_BACKOFF: i64 = 900;
/// Failures older than this are forgotten (seconds).
pub const FAILURE_WINDOW: i64 = 900;
/// Distinct client addresses of one account within [`IP_WINDOW`] that count as suspicious.
pub const MANY_IPS: usize = 5;
pub const IP_WINDOW: i64 = 3600;

#[derive(Clone, Copy, Default)]
struct Failures {
    count: u32,
    last: UnixTime,
    locked_until: UnixTime,
}

type AccountLimiter = governor::DefaultKeyedRateLimiter<String>;

pub struct Guard {
    failures: quick_cache::sync::Cache<(TenantId, String), Failures>,
    /// Per tenant: its quota and the keyed GCRA limiter of its accounts.
    rates: std::sync::Mutex<
        std::collections::HashMap<TenantId, (u32, std::sync::Arc<AccountLimiter>)>,
    >,
    addresses: quick_cache::sync::Cache<(TenantId, UserId), Vec<(String, UnixTime)>>,
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            failures: quick_cache::sync::Cache::new(100_000),
            addresses: quick_cache::sync::Cache::new(100_000),
            rates: std::sync::Mutex::default(),
        }
    }
}

impl Guard {
    /// GCRA per account at the tenant's `per_minute` (0: unlimited); `Err(seconds to wait)`.
    pub fn rate(&self, tenant: &TenantId, account: &str, per_minute: u32) -> Result<(), u64> {
        let Some(quota) = std::num::NonZeroU32::new(per_minute).map(governor::Quota::per_minute)
        else {
            return Ok(());
        };
        let limiter = {
            let Ok(mut rates) = self.rates.lock() else {
                return Ok(());
            };
            let entry = rates.entry(tenant.clone()).or_insert_with(|| {
                (
                    per_minute,
                    std::sync::Arc::new(governor::RateLimiter::keyed(quota)),
                )
            });
            if entry.0 != per_minute {
                *entry = (
                    per_minute,
                    std::sync::Arc::new(governor::RateLimiter::keyed(quota)),
                );
            }
            entry.1.retain_recent();
            std::sync::Arc::clone(&entry.1)
        };
        limiter.check_key(&account.to_owned()).map_err(|not_until| {
            use governor::clock::{Clock, DefaultClock};
            not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                + 1
        })
    }

    /// `Err(seconds to wait)` while the account is held back.
    pub fn check(&self, tenant: &TenantId, account: &str, now: UnixTime) -> Result<(), u64> {
        match self.failures.get(&(tenant.clone(), account.to_owned())) {
            Some(f) if f.locked_until > now => Err((f.locked_until - now) as u64),
            _ => Ok(()),
        }
    }

    /// Records a failure; past `free` failures the account waits 1, 2, 4, … seconds (at most
    /// [`MAX_BACKOFF`]). Returns the number of recent failures.
    pub fn failed(&self, tenant: &TenantId, account: &str, free: u32, now: UnixTime) -> u32 {
        let key = (tenant.clone(), account.to_owned());
        let mut f = self
            .failures
            .get(&key)
            .filter(|f| now - f.last < FAILURE_WINDOW)
            .unwrap_or_default();
        f.count = f.count.saturating_add(1);
        f.last = now;
        if free > 0 && f.count >= free {
            let exp = (f.count - free).min(20);
            f.locked_until = now + (1i64 << exp).min(MAX_BACKOFF);
        }
        self.failures.insert(key, f);
        f.count
    }

    pub fn succeeded(&self, tenant: &TenantId, account: &str) {
        self.failures.remove(&(tenant.clone(), account.to_owned()));
    }

    /// Records a login from `ip`; returns how many distinct addresses the account used
    /// within the last hour.
    pub fn login_from(&self, tenant: &TenantId, user: UserId, ip: &str, now: UnixTime) -> usize {
        let key = (tenant.clone(), user);
        let mut seen = self.addresses.get(&key).unwrap_or_default();
        seen.retain(|(a, at)| now - at < IP_WINDOW && a != ip);
        seen.push((ip.to_owned(), now));
        if seen.len() > 4 * MANY_IPS {
            seen.remove(0);
        }
        let n = seen.len();
        self.addresses.insert(key, seen);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_after_the_free_failures_and_resets_on_success() {
        let g = Guard::default();
        let t = TenantId::parse("t").unwrap_or_else(|e| panic!("{e}"));
        for i in 1..5 {
            assert_eq!(g.failed(&t, "a", 5, 100), i);
            assert_eq!(g.check(&t, "a", 100), Ok(()));
        }
        g.failed(&t, "a", 5, 100);
        assert_eq!(g.check(&t, "a", 100), Err(1));
        g.failed(&t, "a", 5, 101);
        assert_eq!(g.check(&t, "a", 101), Err(2));
        assert_eq!(g.check(&t, "b", 101), Ok(()), "per account");
        g.succeeded(&t, "a");
        assert_eq!(g.check(&t, "a", 101), Ok(()));
        for _ in 0..40 {
            g.failed(&t, "c", 5, 200);
        }
        assert_eq!(g.check(&t, "c", 200), Err(MAX_BACKOFF as u64));
        assert_eq!(
            g.failed(&t, "c", 5, 200 + FAILURE_WINDOW),
            1,
            "old failures are forgotten"
        );
    }

    #[test]
    fn distinct_addresses_are_counted_within_the_window() {
        let g = Guard::default();
        let t = TenantId::parse("t").unwrap_or_else(|e| panic!("{e}"));
        let u = uuid::Uuid::new_v4();
        assert_eq!(g.login_from(&t, u, "1.1.1.1", 0), 1);
        assert_eq!(g.login_from(&t, u, "1.1.1.1", 1), 1);
        assert_eq!(g.login_from(&t, u, "2.2.2.2", 2), 2);
        assert_eq!(
            g.login_from(&t, u, "3.3.3.3", IP_WINDOW + 1),
            2,
            "the first address aged out"
        );
    }
}
