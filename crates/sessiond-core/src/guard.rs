//! Abuse signals for logins. An attacker must not be able to lock a user out, so failures are
//! counted per (account, client address): past the tenant's free failures *that address*
//! waits 1, 2, 4, … s (at most [`MAX_BACKOFF`]) before its next try at that account. Failures
//! of one account from every address are counted too, in fixed windows of
//! [`FAILURE_WINDOW`], against a ceiling ([`ACCOUNT_CEILING_FACTOR`] × the free failures):
//! past it, until the window ends, every address that has failed on the account is held —
//! unless the account has logged in from that address within [`KNOWN_FOR`]. So a botnet gets
//! one guess per address, while the user, from an address she has used before, gets in with
//! the right password even after a typo. The per-account login rate is counted per
//! (account, address) for the same reason.
//!
//! Everything is counted in [`Counters`]: this node's memory, or with a shared store, the
//! store, so every node sees the same numbers. A client address is its IPv4 address or its
//! IPv6 network ([`client_key`]). The addresses an account logs in from stay per node.

use sessiond_store::memory::MemoryCounters;
use sessiond_store::{Counters, StoreResult, TenantId, UnixTime, UserId};
use std::net::IpAddr;
use std::sync::Arc;

/// The longest an address is held back after failures (seconds).
pub const MAX_BACKOFF: i64 = 900;
/// A client's failures on an account are forgotten this long after the last one; an
/// account's failures from all addresses are counted in fixed windows this long (seconds).
pub const FAILURE_WINDOW: i64 = 900;
/// An account's failures from all addresses within one [`FAILURE_WINDOW`] are capped at this
/// many times the tenant's free failures (`loginBackoffAfter`): 50 by default.
pub const ACCOUNT_CEILING_FACTOR: u32 = 10;
/// An address the account logged in from within this long is known: the account's ceiling
/// does not hold it (seconds; 30 days).
pub const KNOWN_FOR: u32 = 30 * 86_400;
/// Distinct client addresses of one account within [`IP_WINDOW`] that count as suspicious.
pub const MANY_IPS: usize = 5;
pub const IP_WINDOW: i64 = 3600;
/// IPv6 clients are counted per network of this many bits unless configured otherwise.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// The key a client is counted by: its IPv4 address, or its IPv6 address's network of
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

/// How long the address must wait after `count` failures, the last at `last`.
fn locked_until(count: u64, last: UnixTime, free: u32) -> UnixTime {
    if free == 0 || count < u64::from(free) {
        return 0;
    }
    let exp = (count - u64::from(free)).min(20);
    last + (1i64 << exp).min(MAX_BACKOFF)
}

/// The account failures past which failed addresses are held (0: no ceiling).
pub fn account_ceiling(free: u32) -> u64 {
    u64::from(free) * u64::from(ACCOUNT_CEILING_FACTOR)
}

/// One login attempt: an account of a tenant, tried from a client.
pub struct Attempt {
    /// Failures of the account from this client.
    pair: String,
    /// Failures of the account from every client, without the window.
    account: String,
    /// Successful logins to the account from this client.
    known: String,
    /// The login rate of the account from this client, without the minute.
    rate: String,
}

impl Attempt {
    /// The key of the account's failures in the window of `now`.
    fn window(&self, now: UnixTime) -> String {
        format!("{}:{}", self.account, now.div_euclid(FAILURE_WINDOW))
    }
}

/// What a failure brought the counts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    /// Of the account from this client.
    pub from_client: u64,
    /// Of the account from every client.
    pub account: u64,
}

pub struct Guard {
    counters: Arc<dyn Counters>,
    ipv6_prefix: u8,
    addresses: quick_cache::sync::Cache<(TenantId, UserId), Vec<(String, UnixTime)>>,
}

impl Default for Guard {
    /// Counted in this node's memory.
    fn default() -> Self {
        Self::shared(Arc::new(MemoryCounters::new()))
    }
}

impl Guard {
    /// Counted in `counters` (shared by every node when they live in a shared store).
    pub fn shared(counters: Arc<dyn Counters>) -> Self {
        Self {
            counters,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            addresses: quick_cache::sync::Cache::new(100_000),
        }
    }

    /// Counts in `counters` from now on.
    pub fn set_counters(&mut self, counters: Arc<dyn Counters>) {
        self.counters = counters;
    }

    /// IPv6 clients are counted per network of `prefix` bits (1–128).
    pub fn set_ipv6_prefix(&mut self, prefix: u8) {
        self.ipv6_prefix = prefix.clamp(1, 128);
    }

    /// The attempt at `account` of `tenant` from `ip` (the full client address).
    pub fn attempt(&self, tenant: &TenantId, account: &str, ip: Option<&str>) -> Attempt {
        let client = client_key(ip, self.ipv6_prefix);
        Attempt {
            pair: format!("fail:{tenant}:{account}:{client}"),
            account: format!("fail:{tenant}:{account}"),
            known: format!("ok:{tenant}:{account}:{client}"),
            rate: format!("rate:{tenant}:{account}:{client}"),
        }
    }

    /// At most `per_minute` attempts at the account from the client a minute (0: unlimited);
    /// `Ok(Err(seconds to wait))` beyond. A fixed one-minute window.
    pub async fn rate(
        &self,
        a: &Attempt,
        per_minute: u32,
        now: UnixTime,
    ) -> StoreResult<Result<(), u64>> {
        if per_minute == 0 {
            return Ok(Ok(()));
        }
        let key = format!("{}:{}", a.rate, now.div_euclid(60));
        let hits = self.counters.hit(&key, 60, now).await?;
        Ok(if hits.count > u64::from(per_minute) {
            Err((60 - now.rem_euclid(60)) as u64)
        } else {
            Ok(())
        })
    }

    /// `Ok(Err(seconds to wait))` while the client is held back from the account (`free`
    /// failures are free; 0: never held).
    pub async fn check(
        &self,
        a: &Attempt,
        free: u32,
        now: UnixTime,
    ) -> StoreResult<Result<(), u64>> {
        if free == 0 {
            return Ok(Ok(()));
        }
        let window = FAILURE_WINDOW as u32;
        let pair = self.counters.peek(&a.pair, window, now).await?;
        let until = locked_until(pair.count, pair.last, free);
        if until > now {
            return Ok(Err((until - now) as u64));
        }
        if pair.count > 0 {
            let account = self.counters.peek(&a.window(now), window, now).await?;
            if account.count >= account_ceiling(free)
                && self.counters.peek(&a.known, KNOWN_FOR, now).await?.count == 0
            {
                return Ok(Err((FAILURE_WINDOW - now.rem_euclid(FAILURE_WINDOW)) as u64));
            }
        }
        Ok(Ok(()))
    }

    /// Records a failed attempt.
    pub async fn failed(&self, a: &Attempt, now: UnixTime) -> StoreResult<Failures> {
        let window = FAILURE_WINDOW as u32;
        Ok(Failures {
            from_client: self.counters.hit(&a.pair, window, now).await?.count,
            account: self.counters.hit(&a.window(now), window, now).await?.count,
        })
    }

    /// A success forgets the client's failures on the account (not the account's: an
    /// attacker's count is not wiped by the user logging in) and makes the address known.
    pub async fn succeeded(&self, a: &Attempt, now: UnixTime) -> StoreResult<()> {
        self.counters.reset(&a.pair).await?;
        self.counters.hit(&a.known, KNOWN_FOR, now).await.map(drop)
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

    fn tenant() -> TenantId {
        TenantId::parse("t").unwrap_or_else(|e| panic!("{e}"))
    }

    async fn held(g: &Guard, a: &Attempt, now: UnixTime) -> Result<(), u64> {
        g.check(a, 5, now).await.unwrap_or_else(|e| panic!("{e}"))
    }

    async fn fail(g: &Guard, a: &Attempt, now: UnixTime) -> Failures {
        g.failed(a, now).await.unwrap_or_else(|e| panic!("{e}"))
    }

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
    async fn backoff_holds_the_failing_address_and_a_success_there_resets_it() {
        let g = Guard::default();
        let t = tenant();
        let attacker = g.attempt(&t, "a", Some("198.51.100.1"));
        for i in 1..5 {
            assert_eq!(fail(&g, &attacker, 100).await.from_client, i);
            assert_eq!(held(&g, &attacker, 100).await, Ok(()));
        }
        fail(&g, &attacker, 100).await;
        assert_eq!(held(&g, &attacker, 100).await, Err(1));
        fail(&g, &attacker, 101).await;
        assert_eq!(held(&g, &attacker, 101).await, Err(2));
        let user = g.attempt(&t, "a", Some("203.0.113.9"));
        assert_eq!(held(&g, &user, 101).await, Ok(()), "another address");
        let other = g.attempt(&t, "b", Some("198.51.100.1"));
        assert_eq!(held(&g, &other, 101).await, Ok(()), "another account");
        g.succeeded(&attacker, 101)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(held(&g, &attacker, 101).await, Ok(()));
        for _ in 0..40 {
            fail(&g, &attacker, 200).await;
        }
        assert_eq!(held(&g, &attacker, 200).await, Err(MAX_BACKOFF as u64));
        assert_eq!(
            fail(&g, &attacker, 200 + FAILURE_WINDOW).await.from_client,
            1,
            "old failures are forgotten"
        );
    }

    #[tokio::test]
    async fn the_account_ceiling_holds_failed_addresses_but_not_clean_or_known_ones() {
        let g = Guard::default();
        let t = tenant();
        let ceiling = account_ceiling(5);
        // Alice logged in from home before the attack.
        let home = g.attempt(&t, "a", Some("203.0.113.9"));
        g.succeeded(&home, 50)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // A botnet: each address fails once, so none reaches its own backoff.
        for i in 0..ceiling {
            let bot = g.attempt(&t, "a", Some(&format!("10.0.{}.{}", i / 250, i % 250)));
            assert_eq!(held(&g, &bot, 100).await, Ok(()), "bot {i}");
            assert_eq!(fail(&g, &bot, 100).await.account, i + 1);
        }
        let bot = g.attempt(&t, "a", Some("10.0.0.0"));
        assert_eq!(
            held(&g, &bot, 100).await,
            Err(800),
            "past the ceiling a failed address waits for the window to end"
        );
        let fresh = g.attempt(&t, "a", Some("203.0.113.10"));
        assert_eq!(
            held(&g, &fresh, 100).await,
            Ok(()),
            "an address that never failed"
        );
        fail(&g, &fresh, 100).await;
        assert!(
            held(&g, &fresh, 100).await.is_err(),
            "a new address with a typo"
        );
        fail(&g, &home, 100).await;
        assert_eq!(
            held(&g, &home, 100).await,
            Ok(()),
            "a known address with a typo"
        );
        assert_eq!(held(&g, &bot, 100 + 800).await, Ok(()), "the next window");
        let off = g.attempt(&t, "z", Some("10.0.0.0"));
        for _ in 0..100 {
            fail(&g, &off, 100).await;
        }
        assert_eq!(g.check(&off, 0, 100).await.ok(), Some(Ok(())), "0: never");
    }

    /// The ceiling is per window: one failure now and then does not keep it up.
    #[tokio::test]
    async fn a_trickle_of_failures_does_not_keep_the_ceiling_up() {
        let g = Guard::default();
        let t = tenant();
        for i in 0..account_ceiling(5) {
            let bot = g.attempt(&t, "a", Some(&format!("10.1.0.{i}")));
            fail(&g, &bot, 0).await;
        }
        let bot = g.attempt(&t, "a", Some("10.1.0.1"));
        assert!(held(&g, &bot, 10).await.is_err());
        // The same address fails once every 899 s: its own count never ages out (3 < 5
        // free), but the account's window does.
        let mut at = 0;
        for _ in 0..3 {
            at += FAILURE_WINDOW - 1;
            fail(&g, &bot, at).await;
        }
        assert_eq!(held(&g, &bot, at).await, Ok(()));
    }

    #[tokio::test]
    async fn shared_counts_add_up_across_nodes() {
        let store = Arc::new(sessiond_store::memory::MemoryStore::new());
        let (a, b) = (Guard::shared(store.clone()), Guard::shared(store));
        let t = tenant();
        let ip = Some("198.51.100.1");
        // Failures on two nodes add up: the fifth, wherever it lands, starts the backoff.
        for i in 0..5u64 {
            let node = if i % 2 == 0 { &a } else { &b };
            let at = node.attempt(&t, "x", ip);
            assert_eq!(held(node, &at, 100).await, Ok(()));
            assert_eq!(fail(node, &at, 100).await.from_client, i + 1);
        }
        assert_eq!(held(&a, &a.attempt(&t, "x", ip), 100).await, Err(1));
        assert_eq!(held(&b, &b.attempt(&t, "x", ip), 100).await, Err(1));
        assert_eq!(held(&b, &b.attempt(&t, "x", ip), 101).await, Ok(()));
        let ok = |r: StoreResult<Result<(), u64>>| r.unwrap_or_else(|e| panic!("{e}"));
        // The login rate: 3 a minute for one account from one address, across both nodes.
        for i in 0..3 {
            let node = if i % 2 == 0 { &a } else { &b };
            let at = node.attempt(&t, "y", ip);
            assert_eq!(ok(node.rate(&at, 3, 120).await), Ok(()));
        }
        let at = a.attempt(&t, "y", ip);
        assert_eq!(ok(a.rate(&at, 3, 130).await), Err(50));
        let elsewhere = a.attempt(&t, "y", Some("203.0.113.9"));
        assert_eq!(ok(a.rate(&elsewhere, 3, 130).await), Ok(()), "per address");
        assert_eq!(ok(b.rate(&at, 3, 180).await), Ok(()), "a new minute");
    }

    #[test]
    fn distinct_addresses_are_counted_within_the_window() {
        let g = Guard::default();
        let t = tenant();
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
