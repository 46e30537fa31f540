//! Per-client limits on the endpoints that take credentials. What they count is guesses: a
//! login with wrong credentials, an unknown refresh token or a bad SSO token draws on the
//! client's failure budget (`auth_failures_per_minute`), and so does a partner call with a
//! wrong secret (`partner_failures_per_minute`); once it is spent the client gets `429` until
//! the minute ends, so credential stuffing and token guessing stop there. An expired or
//! revoked session is not a guess: a backend refreshing for its users meets those every day. Every request, good or bad,
//! also counts against a ceiling high enough for a busy proxy or a backend that refreshes
//! for all of its users (`auth_per_minute`, `partner_per_minute`).
//!
//! Fixed one-minute windows counted in [`Counters`]: this node's memory, or with a shared
//! store, the store, so every node draws on the same budget. A client is its IPv4 address or
//! its IPv6 network (a /64 unless configured otherwise): one host usually holds a whole /64.

use crate::error::{ApiError, ApiResult};
use axum::http::StatusCode;
use sessiond_proto::ErrorCode;
use sessiond_store::memory::MemoryCounters;
use sessiond_store::{Counters, UnixTime};
use std::sync::Arc;

pub use sessiond_core::guard::{DEFAULT_IPV6_PREFIX, client_key};

/// Per client and minute; 0 disables a limit.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Login, SSO and refresh requests, whatever their outcome (the ceiling).
    pub auth_per_minute: u32,
    /// Login, SSO and refresh requests answered `401`.
    pub auth_failures_per_minute: u32,
    /// Partner backend calls, whatever their outcome (the ceiling).
    pub partner_per_minute: u32,
    /// Partner backend calls refused for their secret.
    pub partner_failures_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            auth_per_minute: 6000,
            auth_failures_per_minute: 120,
            partner_per_minute: 6000,
            partner_failures_per_minute: 60,
        }
    }
}

impl RateLimits {
    /// No limits at all (tests and benchmarks).
    pub fn unlimited() -> Self {
        Self {
            auth_per_minute: 0,
            auth_failures_per_minute: 0,
            partner_per_minute: 0,
            partner_failures_per_minute: 0,
        }
    }
}

/// Which budget a request draws on.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// login, SSO and refresh.
    Auth,
    /// partner backend calls.
    Partner,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Auth => "auth",
            Kind::Partner => "partner",
        }
    }
}

/// The answers that show a guess (see the module documentation).
const GUESSES: [ErrorCode; 4] = [
    ErrorCode::InvalidCredentials,
    ErrorCode::RefreshTokenInvalid,
    ErrorCode::SsoTokenInvalid,
    ErrorCode::InvalidPartnerSecret,
];

/// Is `e` the answer to a guess, to be charged to the client's failure budget?
pub fn is_guess(e: &ApiError) -> bool {
    GUESSES.contains(&e.code)
}

/// A request let through; [`Limiters::failed`] charges its failure to the client.
pub struct Admitted {
    failures_key: Option<String>,
    now: UnixTime,
}

pub struct Limiters {
    counters: Arc<dyn Counters>,
    limits: RateLimits,
    ipv6_prefix: u8,
}

fn limited(now: UnixTime) -> ApiError {
    let wait = (60 - now.rem_euclid(60)) as u64;
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RateLimited,
        format!("too many requests; retry in {wait} s"),
    );
    e.retry_after = Some(wait);
    e
}

fn store(e: sessiond_store::StoreError) -> ApiError {
    ApiError::from(sessiond_core::CoreError::Store(e))
}

impl Limiters {
    /// Counted in this node's memory.
    pub fn new(limits: RateLimits) -> Self {
        Self::shared(limits, Arc::new(MemoryCounters::new()))
    }

    /// Counted in `counters`, shared by every node.
    pub fn shared(limits: RateLimits, counters: Arc<dyn Counters>) -> Self {
        Self {
            counters,
            limits,
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

    fn budgets(&self, kind: Kind) -> (u32, u32) {
        match kind {
            Kind::Auth => (
                self.limits.auth_per_minute,
                self.limits.auth_failures_per_minute,
            ),
            Kind::Partner => (
                self.limits.partner_per_minute,
                self.limits.partner_failures_per_minute,
            ),
        }
    }

    /// Lets a request from `ip` (the full client address) through, or refuses it with `429
    /// rate_limited` while the client's failure budget is spent or it is past the ceiling.
    pub async fn admit(
        &self,
        kind: Kind,
        ip: Option<&str>,
        now: UnixTime,
    ) -> Result<Admitted, ApiError> {
        let client = client_key(ip, self.ipv6_prefix);
        let minute = now.div_euclid(60);
        let (ceiling, budget) = self.budgets(kind);
        let failures_key =
            (budget > 0).then(|| format!("ip:{}-fail:{client}:{minute}", kind.name()));
        if let Some(key) = &failures_key {
            let spent = self.counters.peek(key, 60, now).await.map_err(store)?;
            if spent.count >= u64::from(budget) {
                return Err(limited(now));
            }
        }
        if ceiling > 0 {
            let key = format!("ip:{}:{client}:{minute}", kind.name());
            let hits = self.counters.hit(&key, 60, now).await.map_err(store)?;
            if hits.count > u64::from(ceiling) {
                return Err(limited(now));
            }
        }
        Ok(Admitted { failures_key, now })
    }

    /// Charges a failed request to its client's budget. A store that cannot count leaves the
    /// failure uncounted (logged): the request has its answer already.
    pub async fn failed(&self, admitted: &Admitted) {
        let Some(key) = &admitted.failures_key else {
            return;
        };
        if let Err(e) = self.counters.hit(key, 60, admitted.now).await {
            tracing::warn!(error = %e, "a failed request could not be counted");
        }
    }

    /// Runs one login, SSO or refresh request from `ip`: admitted as [`Limiters::admit`]
    /// says, and charged to the client's failure budget when its answer shows a guess.
    pub async fn auth<T>(
        &self,
        ip: Option<&str>,
        now: UnixTime,
        request: impl Future<Output = ApiResult<T>>,
    ) -> ApiResult<T> {
        let admitted = self.admit(Kind::Auth, ip, now).await?;
        let answer = request.await;
        if matches!(&answer, Err(e) if is_guess(e)) {
            self.failed(&admitted).await;
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = 1_700_000_040; // 0 s into a minute

    fn limits(ceiling: u32, failures: u32) -> RateLimits {
        RateLimits {
            auth_per_minute: ceiling,
            auth_failures_per_minute: failures,
            partner_per_minute: 1,
            partner_failures_per_minute: 0,
        }
    }

    const OK: Option<ErrorCode> = None;
    const GUESS: Option<ErrorCode> = Some(ErrorCode::InvalidCredentials);

    /// Runs a request answered `code` (None: 200); `Some(retry after)` when it was limited.
    async fn answer(l: &Limiters, ip: &str, now: UnixTime, code: Option<ErrorCode>) -> Option<u64> {
        let r = l
            .auth(Some(ip), now, async {
                match code {
                    None => Ok(()),
                    Some(code) => {
                        let status = match code {
                            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
                            _ => StatusCode::UNAUTHORIZED,
                        };
                        Err(ApiError::new(status, code, ""))
                    }
                }
            })
            .await;
        match r {
            Err(e) if e.code == ErrorCode::RateLimited => Some(e.retry_after.unwrap_or_default()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn successes_count_only_against_the_ceiling() {
        let l = Limiters::new(limits(1000, 3));
        for i in 0..1000 {
            assert_eq!(answer(&l, "10.0.0.1", NOW, OK).await, None, "{i}");
        }
        assert_eq!(answer(&l, "10.0.0.1", NOW, OK).await, Some(60));
        assert_eq!(answer(&l, "10.0.0.2", NOW, OK).await, None);
    }

    #[tokio::test]
    async fn only_guesses_spend_the_failure_budget() {
        let l = Limiters::new(limits(0, 3));
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::SessionExpired,
            ErrorCode::SessionRevoked,
        ] {
            for _ in 0..10 {
                assert_eq!(
                    answer(&l, "10.0.0.1", NOW, Some(code)).await,
                    None,
                    "{code}"
                );
            }
        }
        for code in [
            ErrorCode::InvalidCredentials,
            ErrorCode::RefreshTokenInvalid,
            ErrorCode::SsoTokenInvalid,
        ] {
            assert_eq!(answer(&l, "10.0.0.1", NOW, Some(code)).await, None);
        }
        let at = NOW + 20;
        assert_eq!(answer(&l, "10.0.0.1", at, OK).await, Some(40));
        assert_eq!(answer(&l, "10.0.0.2", at, OK).await, None);
        assert_eq!(answer(&l, "10.0.0.1", NOW + 60, OK).await, None);
    }

    #[tokio::test]
    async fn one_ipv6_network_shares_a_budget() {
        let store = Arc::new(sessiond_store::memory::MemoryStore::new());
        for l in [
            Limiters::new(limits(2, 0)),
            Limiters::shared(limits(2, 0), store),
        ] {
            assert_eq!(answer(&l, "2001:db8:0:1::a", NOW, OK).await, None);
            assert_eq!(answer(&l, "2001:db8:0:1::b", NOW, OK).await, None);
            let third = answer(&l, "2001:db8:0:1:ffff::c", NOW, OK).await;
            assert!(third.is_some());
            assert_eq!(answer(&l, "2001:db8:0:2::a", NOW, OK).await, None);
        }
        let per_host = Limiters::new(limits(2, 0)).with_ipv6_prefix(128);
        for host in ["2001:db8::a", "2001:db8::b", "2001:db8::c"] {
            assert_eq!(answer(&per_host, host, NOW, OK).await, None, "{host}");
        }
    }

    #[tokio::test]
    async fn shared_budgets_add_up_across_nodes() {
        let store = Arc::new(sessiond_store::memory::MemoryStore::new());
        let nodes = [
            Limiters::shared(limits(0, 3), store.clone()),
            Limiters::shared(limits(0, 3), store),
        ];
        let now = NOW + 40;
        for i in 0..3 {
            assert_eq!(answer(&nodes[i % 2], "10.0.0.1", now, GUESS).await, None);
        }
        assert_eq!(answer(&nodes[1], "10.0.0.1", now, OK).await, Some(20));
        assert_eq!(answer(&nodes[0], "10.0.0.2", now, OK).await, None);
        assert_eq!(answer(&nodes[0], "10.0.0.1", now + 20, OK).await, None);
        let ip = Some("10.0.0.1");
        assert!(nodes[0].admit(Kind::Partner, ip, now).await.is_ok());
        let second = nodes[1].admit(Kind::Partner, ip, now).await;
        assert!(second.is_err(), "the partner ceiling is shared");
    }
}
