//! The verifier: cached keys, the revocation copy the feed keeps current, and the one
//! `verify` every request goes through.

use crate::config::Config;
use crate::error::Error;
use crate::inner::Inner;
use crate::keys::KeySet;
use crate::token::Claims;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

/// Verifies session tokens offline. Cheap to clone; the feed follower stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Verifier {
    pub(crate) inner: Arc<Inner>,
    _follower: Arc<AbortOnDrop>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.inner.cfg)
            .field("status", &self.status())
            .finish()
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the feed follower has done so far (for readiness probes, metrics and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedStatus {
    /// A feed connection is open.
    pub connected: bool,
    /// Everything in force has been received since the last reset.
    pub synced: bool,
    /// Tokens are checked offline now (synced, keys fetched, feed heard within its bound).
    pub current: bool,
    /// The cursor a reconnection resumes from.
    pub cursor: Option<String>,
    /// Feed connections opened.
    pub connects: u64,
    /// `reset` events received (a resumed connection sends none).
    pub resets: u64,
    /// Events received, heartbeats included.
    pub events: u64,
    /// Revocation entries held.
    pub entries: usize,
    /// Keys held.
    pub keys: usize,
    /// JWKS fetches attempted.
    pub key_fetches: u64,
}

impl Verifier {
    /// Validates `cfg`, fetches the JWKS (a failure is logged: tokens then get the stale
    /// policy until a fetch succeeds) and starts following the revocation feed.
    pub async fn start(cfg: Config) -> Result<Self, Error> {
        cfg.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.request_timeout)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        let inner = Arc::new(Inner::new(cfg, http, KeySet::default(), false));
        if let Err(e) = inner.refetch_keys_now().await {
            tracing::warn!(error = %e, "cannot fetch the JWKS yet");
        }
        let follower = tokio::spawn(crate::feed::follow(Arc::clone(&inner)));
        Ok(Self {
            inner,
            _follower: Arc::new(AbortOnDrop(follower)),
        })
    }

    /// Verifies `token`: signature, claims, then the revocation state (or, when that is not
    /// current, the stale policy).
    pub async fn verify(&self, token: &str) -> Result<Claims, Error> {
        self.inner.verify(token).await
    }

    /// Are tokens checked offline right now?
    pub fn is_current(&self) -> bool {
        self.inner.is_current()
    }

    /// Waits until the verifier is current, at most `within`; returns whether it is.
    pub async fn wait_current(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.is_current() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    pub fn status(&self) -> FeedStatus {
        let i = &self.inner;
        let (synced, entries) = {
            let r = i.revocations.read().unwrap_or_else(PoisonError::into_inner);
            (r.synced, r.len())
        };
        FeedStatus {
            connected: i.connected.load(Ordering::SeqCst),
            synced,
            current: i.is_current(),
            cursor: i
                .cursor
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            connects: i.connects.load(Ordering::SeqCst),
            resets: i.resets.load(Ordering::SeqCst),
            events: i.events.load(Ordering::SeqCst),
            entries,
            keys: i.current_keys().len(),
            key_fetches: i.key_fetches.load(Ordering::SeqCst),
        }
    }
}

#[cfg(test)]
impl Verifier {
    /// A verifier over a test core, following nothing.
    pub(crate) fn for_tests(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
            _follower: Arc::new(AbortOnDrop(tokio::spawn(async {}))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::{ClientCredentials, StalePolicy};
    use crate::testing::*;
    use serde_json::{Value, json};
    use sessiond_proto::Jwks;
    use sessiond_proto::{FeedEvent, SessionRevoked};
    use std::sync::atomic::AtomicI64;

    const NOW: i64 = 1_800_000_000;

    struct TestClock(AtomicI64);
    impl Clock for TestClock {
        fn now(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    struct Kit {
        inner: Inner,
        clock: Arc<TestClock>,
        ed: ed25519_dalek::SigningKey,
        es: p256::ecdsa::SigningKey,
    }

    fn kit(policy: StalePolicy) -> Kit {
        let clock = Arc::new(TestClock(AtomicI64::new(NOW)));
        let ed = ed_key(7);
        let es = es_key(9);
        let cfg = Config::new(
            "http://127.0.0.1:9",
            "http://sessiond.test",
            "sessiond",
            "t1",
            ClientCredentials {
                id: "c".into(),
                secret: "s".into(),
            },
        )
        .with_clock(clock.clone())
        .with_stale_policy(policy)
        .with_max_silence(Duration::from_millis(200));
        let jwks = Jwks {
            keys: vec![ed_jwk("ed1", &ed), es_jwk("es1", &es)],
        };
        let inner = Inner::for_tests(cfg, &jwks);
        inner
            .revocations
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply("t1", &FeedEvent::Synced);
        inner.touch();
        Kit {
            inner,
            clock,
            ed,
            es,
        }
    }

    fn claims() -> Value {
        json!({
            "iss": "http://sessiond.test", "aud": "sessiond",
            "sub": "7f0c8c52-5f4b-4d0c-9a43-55d1e0f5b8a1", "sid": "sess-1", "tid": "t1",
            "cid": "0e8e0a52-3a2f-4b8e-8a5e-2f3c1d9b7e11", "scope": "session", "jti": "j1",
            "iat": NOW, "nbf": NOW, "exp": NOW + 600, "auth_time": NOW, "amr": ["pwd"]
        })
    }

    fn ed_header() -> Value {
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "ed1"})
    }

    impl Kit {
        fn ed_token(&self, claims: &Value) -> String {
            token(&ed_header(), claims, ed_sign(&self.ed))
        }

        async fn verify(&self, token: &str) -> Result<Claims, Error> {
            self.inner.verify(token).await
        }
    }

    fn with(mut v: Value, key: &str, value: Value) -> Value {
        v[key] = value;
        v
    }

    #[tokio::test]
    async fn a_live_token_is_accepted_with_its_claims() {
        let k = kit(StalePolicy::FailClosed);
        let c = k.verify(&k.ed_token(&claims())).await;
        let c = c.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.sid, "sess-1");
        assert_eq!(c.amr, vec!["pwd".to_owned()]);
        let es = token(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": "es1"}),
            &claims(),
            es_sign(&k.es),
        );
        assert!(k.verify(&es).await.is_ok(), "ES256 keys verify too");
    }

    #[tokio::test]
    async fn a_tampered_token_is_refused() {
        let k = kit(StalePolicy::FailClosed);
        let t = k.ed_token(&claims());
        let forged = k.ed_token(&with(claims(), "sub", json!(uuid::Uuid::new_v4())));
        let mut parts: Vec<&str> = t.split('.').collect();
        let other: Vec<&str> = forged.split('.').collect();
        parts[1] = other[1];
        assert_eq!(k.verify(&parts.join(".")).await, Err(Error::TokenInvalid));
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap_or_default();
        assert_eq!(k.verify(&flipped).await, Err(Error::TokenInvalid));
        assert_eq!(k.verify("a.b").await, Err(Error::TokenInvalid));
        assert_eq!(k.verify(&format!("{t}.x")).await, Err(Error::TokenInvalid));
    }

    #[tokio::test]
    async fn expiry_and_not_before_follow_the_injected_clock() {
        let k = kit(StalePolicy::FailClosed);
        let t = k.ed_token(&claims());
        k.clock.0.store(NOW + 599, Ordering::SeqCst);
        assert!(k.verify(&t).await.is_ok());
        k.clock.0.store(NOW + 600, Ordering::SeqCst);
        assert_eq!(k.verify(&t).await, Err(Error::TokenExpired));
        k.clock.0.store(NOW, Ordering::SeqCst);
        let early = k.ed_token(&with(claims(), "nbf", json!(NOW + 30)));
        assert!(k.verify(&early).await.is_ok(), "nbf within the leeway");
        let early = k.ed_token(&with(claims(), "nbf", json!(NOW + 31)));
        assert_eq!(k.verify(&early).await, Err(Error::TokenInvalid));
        let early = k.ed_token(&with(claims(), "iat", json!(NOW + 31)));
        assert_eq!(k.verify(&early).await, Err(Error::TokenInvalid));
    }

    #[tokio::test]
    async fn issuer_audience_tenant_and_shape_must_match() {
        let k = kit(StalePolicy::FailClosed);
        for (key, value) in [
            ("iss", json!("http://evil.test")),
            ("aud", json!("other")),
            ("tid", json!("t2")),
            ("sub", json!("not-a-uuid")),
            ("extra", json!(1)),
        ] {
            let t = k.ed_token(&with(claims(), key, value));
            assert_eq!(k.verify(&t).await, Err(Error::TokenInvalid), "{key}");
        }
    }

    #[tokio::test]
    async fn the_algorithm_is_pinned_to_the_key_and_the_header_is_closed() {
        let k = kit(StalePolicy::FailClosed);
        let sign = ed_sign(&k.ed);
        for header in [
            json!({"alg": "ES256", "typ": "at+jwt", "kid": "ed1"}),
            json!({"alg": "none", "typ": "at+jwt", "kid": "ed1"}),
            json!({"alg": "HS256", "typ": "at+jwt", "kid": "ed1"}),
            json!({"alg": "EdDSA", "typ": "JWT", "kid": "ed1"}),
            json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "ed1", "jku": "http://evil"}),
            json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "ed1",
                   "jwk": ed_jwk("ed1", &ed_key(1))}),
            json!({"alg": "EdDSA", "typ": "at+jwt"}),
        ] {
            let t = token(&header, &claims(), &sign);
            assert_eq!(k.verify(&t).await, Err(Error::TokenInvalid), "{header}");
        }
        let es_as_ed = token(
            &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "es1"}),
            &claims(),
            &sign,
        );
        assert_eq!(k.verify(&es_as_ed).await, Err(Error::TokenInvalid));
    }

    #[tokio::test]
    async fn a_foreign_kid_is_refused_without_a_fetch_storm() {
        let k = kit(StalePolicy::FailClosed);
        let foreign = ed_key(3);
        let t = token(
            &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "elsewhere"}),
            &claims(),
            ed_sign(&foreign),
        );
        // The last fetch was just now: no refetch within the interval.
        assert_eq!(k.verify(&t).await, Err(Error::TokenInvalid));
        let t = token(
            &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "ed1"}),
            &claims(),
            ed_sign(&foreign),
        );
        assert_eq!(k.verify(&t).await, Err(Error::TokenInvalid));
    }

    #[tokio::test]
    async fn revoked_sessions_and_cut_off_users_are_refused() {
        let k = kit(StalePolicy::FailClosed);
        let t = k.ed_token(&claims());
        k.inner
            .revocations
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(
                "t1",
                &FeedEvent::Session(SessionRevoked {
                    tid: "t1".into(),
                    sid: "sess-1".into(),
                    sub: uuid::Uuid::nil(),
                    at: NOW,
                    until: NOW + 600,
                }),
            );
        assert_eq!(k.verify(&t).await, Err(Error::SessionRevoked));
        let other = k.ed_token(&with(claims(), "sid", json!("sess-2")));
        assert!(k.verify(&other).await.is_ok());
    }

    #[tokio::test]
    async fn a_silent_or_unsynced_feed_fails_closed() {
        let k = kit(StalePolicy::FailClosed);
        let t = k.ed_token(&claims());
        assert!(k.verify(&t).await.is_ok());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(k.verify(&t).await, Err(Error::Unavailable), "silent");
        k.inner.touch();
        assert!(k.verify(&t).await.is_ok());
        k.inner
            .revocations
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply("t1", &FeedEvent::Reset);
        assert_eq!(k.verify(&t).await, Err(Error::Unavailable), "not synced");
        // An invalid token stays a 401, not a 503.
        assert_eq!(k.verify("x.y.z").await, Err(Error::TokenInvalid));
    }

    #[tokio::test]
    async fn a_stale_copy_with_introspection_asks_the_server() {
        // Nothing listens on the configured port: introspection fails, so the answer is 503,
        // never an unchecked accept.
        let k = kit(StalePolicy::Introspect);
        let t = k.ed_token(&claims());
        k.inner
            .revocations
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply("t1", &FeedEvent::Reset);
        assert_eq!(k.verify(&t).await, Err(Error::Unavailable));
    }
}
