//! The verifier's shared state: keys, revocations, the feed's position; and the checks.

use crate::config::{Config, StalePolicy};
use crate::error::Error;
use crate::keys::KeySet;
use crate::revocations::Revocations;
use crate::token::{Claims, Parts, Rules};
use sessiond_proto::{Introspection, Jwks, paths};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

pub(crate) struct Inner {
    pub(crate) cfg: Config,
    rules: Rules,
    pub(crate) http: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    keys_generation: AtomicU64,
    /// A key change was announced (or no JWKS was ever fetched) and not yet fetched.
    keys_stale: AtomicBool,
    /// Serialises JWKS fetches; holds the instant of the last one.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    pub(crate) revocations: RwLock<Revocations>,
    epoch: Instant,
    /// Milliseconds since `epoch` when the feed was last heard, plus one (0: never).
    last_heard: AtomicU64,
    pub(crate) cursor: Mutex<Option<String>>,
    pub(crate) connected: AtomicBool,
    pub(crate) connects: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) key_fetches: AtomicU64,
    /// When to fetch the JWKS again after a key change: the node answering the JWKS may
    /// install the new keyring a moment after the change reached the feed.
    pub(crate) key_rechecks: Mutex<Vec<Instant>>,
}

impl Inner {
    /// A core holding `keys` (`fetched`: whether they came from a JWKS fetch).
    pub(crate) fn new(cfg: Config, http: reqwest::Client, keys: KeySet, fetched: bool) -> Self {
        Inner {
            rules: Rules {
                issuer: cfg.issuer.clone(),
                audience: cfg.audience.clone(),
                tenant: cfg.tenant.clone(),
                exp_leeway: secs(cfg.exp_leeway),
                nbf_leeway: secs(cfg.nbf_leeway),
            },
            cfg,
            http,
            keys: RwLock::new(Arc::new(keys)),
            keys_generation: AtomicU64::new(u64::from(fetched)),
            keys_stale: AtomicBool::new(!fetched),
            fetching: tokio::sync::Mutex::new(fetched.then(Instant::now)),
            revocations: RwLock::new(Revocations::default()),
            epoch: Instant::now(),
            last_heard: AtomicU64::new(0),
            cursor: Mutex::new(None),
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            events: AtomicU64::new(0),
            key_fetches: AtomicU64::new(0),
            key_rechecks: Mutex::new(Vec::new()),
        }
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl Inner {
    pub(crate) async fn verify(&self, token: &str) -> Result<Claims, Error> {
        let claims = self.verify_signed(token).await?;
        self.rules.check(&claims, self.cfg.clock.now())?;
        self.check_revocation(token, &claims).await?;
        Ok(claims)
    }

    pub(crate) fn current_keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Checks the header and signature (refetching the JWKS once for an unknown `kid`) and
    /// returns the claims, not yet checked.
    async fn verify_signed(&self, token: &str) -> Result<Claims, Error> {
        let parts = Parts::parse(token)?;
        let kid = parts.header.kid.as_str();
        let mut keys = self.current_keys();
        if keys.get(kid).is_none() {
            if self.refetch_for_unknown_kid().await {
                keys = self.current_keys();
            }
            if keys.get(kid).is_none() && self.keys_stale.load(Ordering::SeqCst) {
                return Err(Error::Unavailable);
            }
        }
        let key = keys.get(kid).ok_or(Error::TokenInvalid)?;
        key.verify(parts.header.alg, parts.signing_input, &parts.signature)?;
        parts.claims()
    }

    async fn check_revocation(&self, token: &str, claims: &Claims) -> Result<(), Error> {
        let current = {
            let r = self
                .revocations
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            // What the copy refuses is refused even when the copy is stale.
            r.check(claims)?;
            r.synced
        } && self.is_fresh();
        if current {
            return Ok(());
        }
        match self.cfg.on_stale {
            StalePolicy::FailClosed => Err(Error::Unavailable),
            StalePolicy::Introspect => self.introspect(token).await,
        }
    }

    pub(crate) fn is_current(&self) -> bool {
        self.is_fresh()
            && self
                .revocations
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .synced
    }

    /// The feed was heard within its bound and no key change is pending.
    fn is_fresh(&self) -> bool {
        let heard = self.last_heard.load(Ordering::SeqCst);
        heard != 0
            && !self.keys_stale.load(Ordering::SeqCst)
            && self.millis().saturating_sub(heard - 1)
                <= u64::try_from(self.cfg.max_silence.as_millis()).unwrap_or(u64::MAX)
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn touch(&self) {
        self.last_heard.store(self.millis() + 1, Ordering::SeqCst);
    }

    pub(crate) fn keys_stale(&self) -> bool {
        self.keys_stale.load(Ordering::SeqCst)
    }

    pub(crate) fn mark_keys_stale(&self) {
        self.keys_stale.store(true, Ordering::SeqCst);
    }

    /// Single-flight, at most once per `key_refetch_interval`: true when the keys may have
    /// changed since the caller looked.
    async fn refetch_for_unknown_kid(&self) -> bool {
        let seen = self.keys_generation.load(Ordering::SeqCst);
        let mut last = self.fetching.lock().await;
        if self.keys_generation.load(Ordering::SeqCst) != seen {
            return true;
        }
        if last.is_some_and(|t| t.elapsed() < self.cfg.key_refetch_interval) {
            return false;
        }
        *last = Some(Instant::now());
        self.fetch_keys().await.is_ok()
    }

    /// Fetches the JWKS now (a key change was announced).
    pub(crate) async fn refetch_keys_now(&self) -> Result<(), Error> {
        let mut last = self.fetching.lock().await;
        *last = Some(Instant::now());
        self.fetch_keys().await
    }

    async fn fetch_keys(&self) -> Result<(), Error> {
        self.key_fetches.fetch_add(1, Ordering::SeqCst);
        let url = format!("{}{}", self.cfg.base_url, paths::JWKS);
        let res = self
            .http
            .get(url)
            .timeout(self.cfg.request_timeout)
            .send()
            .await
            .map_err(|e| Error::Upstream(e.to_string()))?;
        if !res.status().is_success() {
            return Err(Error::Upstream(format!("JWKS answered {}", res.status())));
        }
        let jwks: Jwks = res
            .json()
            .await
            .map_err(|e| Error::Upstream(e.to_string()))?;
        let set = Arc::new(KeySet::from_jwks(&jwks));
        tracing::debug!(keys = set.len(), "JWKS fetched");
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = set;
        self.keys_generation.fetch_add(1, Ordering::SeqCst);
        self.keys_stale.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// RFC 7662: the server's word on a token the offline copy cannot vouch for.
    async fn introspect(&self, token: &str) -> Result<(), Error> {
        let url = format!("{}{}", self.cfg.base_url, paths::INTROSPECT);
        let res = self
            .http
            .post(url)
            .header(
                reqwest::header::AUTHORIZATION,
                self.cfg.client.authorization(),
            )
            .form(&[("token", token)])
            .timeout(self.cfg.request_timeout)
            .send()
            .await
            .map_err(|_| Error::Unavailable)?;
        if !res.status().is_success() {
            tracing::warn!(status = %res.status(), "introspection refused");
            return Err(Error::Unavailable);
        }
        let answer: Introspection = res.json().await.map_err(|_| Error::Unavailable)?;
        if answer.active {
            Ok(())
        } else {
            Err(Error::SessionRevoked)
        }
    }
}

#[cfg(test)]
impl Inner {
    /// A verifier core with fixed keys and no network, for the unit tests.
    pub(crate) fn for_tests(cfg: Config, jwks: &Jwks) -> Self {
        Self::new(cfg, reqwest::Client::new(), KeySet::from_jwks(jwks), true)
    }
}
