//! Abuse signals: failed logins per account (exponential backoff), the per-account login
//! rate, and the addresses an account logs in from. With a shared store the failures and the
//! rate are counted there ([`Counters`]), so every node sees the same budget; otherwise in
//! memory, approximately (concurrent updates may lose a count). The addresses stay per node.

use sessiond_store::{Counters, StoreResult, TenantId, UnixTime, UserId};
use std::sync::Arc;

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
    /// Counters shared by every node, when the deployment has a shared store.
    shared: Option<Arc<dyn Counters>>,
}

/// How long the account must wait after `count` failures, the last at `last`.
fn locked_until(count: u64, last: UnixTime, free: u32) -> UnixTime {
    if free == 0 || count < u64::from(free) {
        return 0;
    }
    let exp = (count - u64::from(free)).min(20);
    last + (1i64 << exp).min(MAX_BACKOFF)
}

fn failures_key(tenant: &TenantId, account: &str) -> String {
    format!("fail:{tenant}:{account}")
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            failures: quick_cache::sync::Cache::new(100_000),
            addresses: quick_cache::sync::Cache::new(100_000),
            rates: std::sync::Mutex::default(),
            shared: None,
        }
    }
}

impl Guard {
    pub fn shared(counters: Arc<dyn Counters>) -> Self {
        Self {
            shared: Some(counters),
            ..Self::default()
        }
    }

    /// At most `per_minute` login attempts per account (0: unlimited); `Ok(Err(seconds to
    /// wait))` beyond. Shared: a fixed one-minute window in the store; local: GCRA.
    pub async fn rate(
        &self,
        tenant: &TenantId,
        account: &str,
        per_minute: u32,
        now: UnixTime,
    ) -> StoreResult<Result<(), u64>> {
        match &self.shared {
            Some(c) if per_minute > 0 => {
                let minute = now.div_euclid(60);
                let key = format!("rate:{tenant}:{account}:{minute}");
                let hits = c.hit(&key, 60, now).await?;
                Ok(if hits.count > u64::from(per_minute) {
                    Err((60 - now.rem_euclid(60)) as u64)
                } else {
                    Ok(())
                })
            }
            _ => Ok(self.local_rate(tenant, account, per_minute)),
        }
    }

    fn local_rate(&self, tenant: &TenantId, account: &str, per_minute: u32) -> Result<(), u64> {
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

    /// `Ok(Err(seconds to wait))` while the account is held back after failures (`free`
    /// failures are free).
    pub async fn check(
        &self,
        tenant: &TenantId,
        account: &str,
        free: u32,
        now: UnixTime,
    ) -> StoreResult<Result<(), u64>> {
        if let Some(c) = &self.shared {
            if free == 0 {
                return Ok(Ok(()));
            }
            let key = failures_key(tenant, account);
            let h = c.peek(&key, FAILURE_WINDOW as u32, now).await?;
            let until = locked_until(h.count, h.last, free);
            return Ok(if until > now {
                Err((until - now) as u64)
            } else {
                Ok(())
            });
        }
        Ok(self.local_check(tenant, account, now))
    }

    fn local_check(&self, tenant: &TenantId, account: &str, now: UnixTime) -> Result<(), u64> {
        match self.failures.get(&(tenant.clone(), account.to_owned())) {
            Some(f) if f.locked_until > now => Err((f.locked_until - now) as u64),
            _ => Ok(()),
        }
    }

    /// Records a failure; past `free` failures the account waits 1, 2, 4, … seconds (at most
    /// [`MAX_BACKOFF`]). Returns the number of recent failures.
    pub async fn failed(
        &self,
        tenant: &TenantId,
        account: &str,
        free: u32,
        now: UnixTime,
    ) -> StoreResult<u32> {
        if let Some(c) = &self.shared {
            let key = failures_key(tenant, account);
            let h = c.hit(&key, FAILURE_WINDOW as u32, now).await?;
            return Ok(u32::try_from(h.count).unwrap_or(u32::MAX));
        }
        Ok(self.local_failed(tenant, account, free, now))
    }

    fn local_failed(&self, tenant: &TenantId, account: &str, free: u32, now: UnixTime) -> u32 {
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

    pub async fn succeeded(&self, tenant: &TenantId, account: &str) -> StoreResult<()> {
        if let Some(c) = &self.shared {
            return c.reset(&failures_key(tenant, account)).await;
        }
        self.failures.remove(&(tenant.clone(), account.to_owned()));
        Ok(())
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
            assert_eq!(g.local_failed(&t, "a", 5, 100), i);
            assert_eq!(g.local_check(&t, "a", 100), Ok(()));
        }
        g.local_failed(&t, "a", 5, 100);
        assert_eq!(g.local_check(&t, "a", 100), Err(1));
        g.local_failed(&t, "a", 5, 101);
        assert_eq!(g.local_check(&t, "a", 101), Err(2));
        assert_eq!(g.local_check(&t, "b", 101), Ok(()), "per account");
        g.failures.remove(&(t.clone(), "a".to_owned()));
        assert_eq!(g.local_check(&t, "a", 101), Ok(()));
        for _ in 0..40 {
            g.local_failed(&t, "c", 5, 200);
        }
        assert_eq!(g.local_check(&t, "c", 200), Err(MAX_BACKOFF as u64));
        assert_eq!(
            g.local_failed(&t, "c", 5, 200 + FAILURE_WINDOW),
            1,
            "old failures are forgotten"
        );
    }

    #[tokio::test]
    async fn shared_backoff_and_rate_follow_the_store() {
        let store = Arc::new(sessiond_store::memory::MemoryStore::new());
        let (a, b) = (Guard::shared(store.clone()), Guard::shared(store));
        let t = TenantId::parse("t").unwrap_or_else(|e| panic!("{e}"));
        let ok = |r: StoreResult<Result<(), u64>>| r.unwrap_or_else(|e| panic!("{e}"));
        // Failures on two nodes add up: the fifth, wherever it lands, starts the backoff.
        for i in 0..5u32 {
            let node = if i % 2 == 0 { &a } else { &b };
            assert_eq!(ok(node.check(&t, "x", 5, 100).await), Ok(()));
            assert_eq!(
                node.failed(&t, "x", 5, 100).await.unwrap_or_default(),
                i + 1
            );
        }
        assert_eq!(ok(a.check(&t, "x", 5, 100).await), Err(1));
        assert_eq!(ok(b.check(&t, "x", 5, 100).await), Err(1));
        assert_eq!(ok(b.check(&t, "x", 5, 101).await), Ok(()));
        a.succeeded(&t, "x").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.failed(&t, "x", 5, 102).await.unwrap_or_default(), 1);
        // The per-account rate: 3 a minute across both nodes.
        for i in 0..3 {
            let node = if i % 2 == 0 { &a } else { &b };
            assert_eq!(ok(node.rate(&t, "y", 3, 120).await), Ok(()));
        }
        assert_eq!(ok(a.rate(&t, "y", 3, 130).await), Err(50));
        assert_eq!(ok(b.rate(&t, "y", 3, 180).await), Ok(()), "a new minute");
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
