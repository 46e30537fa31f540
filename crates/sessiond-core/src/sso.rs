//! Partner-issued SSO tokens (the Hubble seed): verified with the tenant's configured trust —
//! an HS256 secret, a PEM public key (RS256, ES256, EdDSA) or a JWKS URL, and only with the
//! algorithm that trust implies — or, for opaque tokens, by the partner's own verification
//! endpoint (an RFC 7662-style introspection behind a circuit breaker). Time comes from the
//! engine's clock, not the library's.

use crate::CoreError;
use crate::outbound::Outbound;
use async_trait::async_trait;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sessiond_store::{SsoSettings, UnixTime};
use sha2::Digest as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Fetches a JWKS document (the server supplies one over HTTP), reaching only the
/// destinations `outbound` allows (the tenant's profile decides).
#[async_trait]
pub trait JwksFetcher: Send + Sync + 'static {
    async fn fetch(&self, url: &str, outbound: Outbound) -> Result<String, String>;
}

/// Asks a partner's verification endpoint about an opaque SSO token (the server supplies one
/// over HTTP), authenticated with the tenant's shared secret, reaching only the destinations
/// `outbound` allows.
#[async_trait]
pub trait SsoEndpoint: Send + Sync + 'static {
    async fn verify(&self, url: &str, secret: &str, token: &str, outbound: Outbound) -> Endpoint;
}

/// What a partner's verification endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The partner vouches for the token: the user's external id (`sub`), and what else it
    /// stated (`exp`; `aud`, empty when it stated none; `iss`).
    Active {
        sub: String,
        exp: Option<UnixTime>,
        aud: Vec<String>,
        iss: Option<String>,
    },
    /// The partner does not know the token or says it is not active.
    Inactive,
    /// The partner could not be asked or gave no usable answer (a timeout, a refused
    /// connection, a 5xx).
    Unavailable(String),
    /// The partner refused sessiond's own credentials (401/403): a misconfiguration.
    Refused(String),
}

/// Consecutive failures of a partner endpoint after which it is not asked for a while.
pub const BREAKER_THRESHOLD: u32 = 5;
/// How long (seconds) an open breaker answers `sso_unavailable` without asking the partner;
/// then one request tries again.
pub const BREAKER_OPEN_FOR: i64 = 30;

/// A partner endpoint's recent failures.
#[derive(Debug, Default, Clone, Copy)]
struct Breaker {
    failures: u32,
    open_until: UnixTime,
}

/// A JWKS URL is fetched again for an unknown `kid` at most this often (seconds).
pub const JWKS_REFETCH_INTERVAL: i64 = 30;
/// A cached JWKS is used at most this long before it is fetched again (seconds).
pub const JWKS_MAX_AGE: i64 = 3600;
const SKEW: i64 = 30;

/// The claims sessiond needs from an SSO token (`iss`/`aud` are checked by the validation).
#[derive(Debug, Clone, Deserialize)]
pub struct SsoClaims {
    pub sub: String,
    pub jti: String,
    pub exp: UnixTime,
    pub nbf: Option<UnixTime>,
    pub iat: Option<UnixTime>,
}

/// The trust a PEM key implies: its algorithm and key.
pub fn pem_key(pem: &str) -> Option<(Algorithm, DecodingKey)> {
    let b = pem.as_bytes();
    DecodingKey::from_rsa_pem(b)
        .map(|k| (Algorithm::RS256, k))
        .or_else(|_| DecodingKey::from_ec_pem(b).map(|k| (Algorithm::ES256, k)))
        .or_else(|_| DecodingKey::from_ed_pem(b).map(|k| (Algorithm::EdDSA, k)))
        .ok()
}

struct CachedJwks {
    set: JwkSet,
    fetched_at: UnixTime,
}

/// JWKS documents are cached per URL and per destination policy: a set fetched for a
/// playground or integration tenant never serves a production tenant naming the same URL.
type JwksKey = (Outbound, String);

#[derive(Default)]
pub struct SsoVerifier {
    fetcher: Option<Arc<dyn JwksFetcher>>,
    endpoint: Option<Arc<dyn SsoEndpoint>>,
    /// Per verification URL and destination policy.
    breakers: Mutex<HashMap<JwksKey, Breaker>>,
    jwks: Mutex<HashMap<JwksKey, Arc<CachedJwks>>>,
    /// One fetch per key at a time: concurrent tokens with unknown `kid`s wait for it and
    /// share its result instead of each fetching.
    fetching: Mutex<HashMap<JwksKey, Arc<tokio::sync::Mutex<()>>>>,
}

fn invalid(why: &str) -> CoreError {
    tracing::debug!(why, "sso token refused");
    CoreError::SsoTokenInvalid
}

impl SsoVerifier {
    pub fn new(
        fetcher: Option<Arc<dyn JwksFetcher>>,
        endpoint: Option<Arc<dyn SsoEndpoint>>,
    ) -> Self {
        Self {
            fetcher,
            endpoint,
            breakers: Mutex::default(),
            jwks: Mutex::default(),
            fetching: Mutex::default(),
        }
    }

    /// Asks the partner's endpoint about an opaque token: its claims as sessiond uses them
    /// (`jti` names the token by its SHA-256, so it is single use like a JWT's `jti`, until
    /// the `exp` the partner must state; the partner's `aud` must include the trust's
    /// audience, and its `iss` be the trust's issuer when one is set). An endpoint (and
    /// secret) that failed [`BREAKER_THRESHOLD`] times in a row is not asked for
    /// [`BREAKER_OPEN_FOR`] seconds; then one request probes it.
    async fn verify_opaque(
        &self,
        settings: &SsoSettings,
        url: &str,
        secret: &str,
        token: &str,
        now: UnixTime,
        outbound: Outbound,
    ) -> Result<SsoClaims, CoreError> {
        if token.is_empty() || token.chars().any(char::is_control) {
            return Err(invalid("opaque token empty or with control characters"));
        }
        let endpoint = self
            .endpoint
            .as_ref()
            .ok_or(CoreError::SsoUnavailable { retry_after: 1 })?;
        // Per endpoint and credential: a tenant with a stale secret or its own failing
        // partner trips no other tenant's breaker.
        let fingerprint = crate::secret::b64(&sha2::Sha256::digest(secret.as_bytes())[..12]);
        let key = (outbound, format!("{url} {fingerprint}"));
        let poisoned = || CoreError::Internal("sso breaker poisoned".into());
        {
            let mut breakers = self.breakers.lock().map_err(|_| poisoned())?;
            let b = breakers.entry(key.clone()).or_default();
            if b.open_until > now {
                return Err(CoreError::SsoUnavailable {
                    retry_after: u64::try_from(b.open_until - now).unwrap_or(1),
                });
            }
            if b.failures >= BREAKER_THRESHOLD {
                // Half open: this request is the one probe; the others still wait.
                b.open_until = now + BREAKER_OPEN_FOR;
            }
        }
        let answer = endpoint.verify(url, secret, token, outbound).await;
        {
            let mut breakers = self.breakers.lock().map_err(|_| poisoned())?;
            let b = breakers.entry(key).or_default();
            match &answer {
                Endpoint::Unavailable(why) => {
                    b.failures = b.failures.saturating_add(1);
                    tracing::warn!(
                        url,
                        why,
                        failures = b.failures,
                        "SSO verification endpoint failed"
                    );
                    if b.failures >= BREAKER_THRESHOLD {
                        b.open_until = now + BREAKER_OPEN_FOR;
                        tracing::error!(
                            url,
                            "SSO verification endpoint: circuit open for {BREAKER_OPEN_FOR} s"
                        );
                    }
                }
                // A refusal of sessiond's own secret is this tenant's misconfiguration (logged
                // by the transport), not a sign that the partner is down.
                Endpoint::Refused(_) => {}
                Endpoint::Active { .. } | Endpoint::Inactive => *b = Breaker::default(),
            }
        }
        let (sub, exp, aud, iss) = match answer {
            Endpoint::Active { sub, exp, aud, iss } => (sub, exp, aud, iss),
            Endpoint::Inactive => return Err(invalid("the partner says inactive")),
            Endpoint::Unavailable(_) => return Err(CoreError::SsoUnavailable { retry_after: 1 }),
            // A misconfiguration an operator must fix: no point retrying at once.
            Endpoint::Refused(_) => {
                return Err(CoreError::SsoUnavailable {
                    retry_after: u64::try_from(BREAKER_OPEN_FOR).unwrap_or(30),
                });
            }
        };
        // The token must have been meant for this trust: an introspection endpoint vouches
        // for every active token of its server, whichever client it was issued to.
        if !aud.contains(&settings.audience) {
            return Err(invalid(
                "the partner's answer does not name this trust's audience",
            ));
        }
        if settings
            .issuer
            .as_ref()
            .is_some_and(|expected| iss.as_ref() != Some(expected))
        {
            return Err(invalid(
                "the partner's answer does not name this trust's issuer",
            ));
        }
        // Without an `exp` a token could not be remembered for as long as it is good.
        let exp = exp.ok_or_else(|| invalid("the partner's answer has no exp"))?;
        if now >= exp {
            return Err(invalid("time"));
        }
        if sub.is_empty() || sub.len() > 256 || sub.chars().any(char::is_control) {
            return Err(invalid("sub"));
        }
        Ok(SsoClaims {
            sub,
            jti: format!(
                "opaque:{}",
                crate::secret::b64(&sha2::Sha256::digest(token.as_bytes()))
            ),
            exp,
            nbf: None,
            iat: None,
        })
    }

    /// Verifies an SSO token against a tenant's settings at `now`. `hs256_secret` is the
    /// opened secret when the settings use one (for a verification endpoint: the secret
    /// sessiond authenticates with); a JWKS URL or verification endpoint is reached only at
    /// the destinations `outbound` allows.
    pub async fn verify(
        &self,
        settings: &SsoSettings,
        hs256_secret: Option<&[u8]>,
        token: &str,
        now: UnixTime,
        outbound: Outbound,
    ) -> Result<SsoClaims, CoreError> {
        if token.len() > crate::token::MAX_TOKEN_LEN {
            return Err(invalid("too long"));
        }
        if let Some(url) = &settings.verify_url {
            let secret = hs256_secret
                .and_then(|s| std::str::from_utf8(s).ok())
                .ok_or_else(|| CoreError::Internal("no verification secret".into()))?;
            return self
                .verify_opaque(settings, url, secret, token, now, outbound)
                .await;
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("header"))?;
        if header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
        {
            return Err(invalid("embedded key reference"));
        }
        let (alg, key) = if let Some(secret) = hs256_secret {
            (Algorithm::HS256, DecodingKey::from_secret(secret))
        } else if let Some(pem) = &settings.public_key_pem {
            pem_key(pem).ok_or_else(|| invalid("configured PEM unusable"))?
        } else if let Some(url) = &settings.jwks_url {
            let kid = header.kid.as_deref().ok_or_else(|| invalid("no kid"))?;
            self.jwks_key(&(outbound, url.clone()), kid, now).await?
        } else {
            return Err(invalid("no trust configured"));
        };
        if header.alg != alg {
            return Err(invalid("algorithm differs from the configured key's"));
        }
        let mut v = Validation::new(alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.required_spec_claims.clear();
        v.set_audience(&[&settings.audience]);
        if let Some(iss) = &settings.issuer {
            v.set_issuer(&[iss]);
        }
        let claims = jsonwebtoken::decode::<SsoClaims>(token, &key, &v)
            .map_err(|_| invalid("signature or claims"))?
            .claims;
        if now >= claims.exp
            || claims.nbf.is_some_and(|n| n > now + SKEW)
            || claims.iat.is_some_and(|i| i > now + SKEW)
        {
            return Err(invalid("time"));
        }
        let ok_text = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
        if !ok_text(&claims.sub) || !ok_text(&claims.jti) {
            return Err(invalid("sub or jti"));
        }
        Ok(claims)
    }

    async fn jwks_key(
        &self,
        key: &JwksKey,
        kid: &str,
        now: UnixTime,
    ) -> Result<(Algorithm, DecodingKey), CoreError> {
        let poisoned = || CoreError::Internal("jwks cache poisoned".into());
        let cached = || -> Result<Option<Arc<CachedJwks>>, CoreError> {
            Ok(self.jwks.lock().map_err(|_| poisoned())?.get(key).cloned())
        };
        let known = |c: &Option<Arc<CachedJwks>>| {
            c.as_ref()
                .filter(|c| now - c.fetched_at < JWKS_MAX_AGE)
                .and_then(|c| key_of(&c.set, kid))
        };
        // Unknown kid or stale set: fetch again, but not more often than the interval.
        let throttled = |c: &Option<Arc<CachedJwks>>| {
            c.as_ref()
                .is_some_and(|c| now - c.fetched_at < JWKS_REFETCH_INTERVAL)
        };
        let before = cached()?;
        if let Some(k) = known(&before) {
            return Ok(k);
        }
        if throttled(&before) {
            return Err(invalid("unknown kid (refetch rate-limited)"));
        }
        let fetcher = self
            .fetcher
            .as_ref()
            .ok_or_else(|| invalid("no JWKS fetcher"))?;
        let gate = Arc::clone(
            self.fetching
                .lock()
                .map_err(|_| poisoned())?
                .entry(key.clone())
                .or_default(),
        );
        let _fetching = gate.lock().await;
        // A fetch that finished while this one waited counts: use its set, or stay throttled.
        let latest = cached()?;
        if let Some(k) = known(&latest) {
            return Ok(k);
        }
        if throttled(&latest) {
            return Err(invalid("unknown kid (refetch rate-limited)"));
        }
        let (outbound, url) = key;
        let set: Option<JwkSet> = match fetcher.fetch(url, *outbound).await {
            Ok(body) => serde_json::from_str(&body).ok(),
            Err(e) => {
                tracing::warn!(url, error = %e, "JWKS fetch failed");
                None
            }
        };
        let entry = Arc::new(CachedJwks {
            set: set.unwrap_or(JwkSet { keys: Vec::new() }),
            fetched_at: now,
        });
        self.jwks
            .lock()
            .map_err(|_| poisoned())?
            .insert(key.clone(), Arc::clone(&entry));
        key_of(&entry.set, kid).ok_or_else(|| invalid("unknown kid"))
    }
}

/// The key named `kid` in a JWKS, with the one algorithm its type allows.
fn key_of(set: &JwkSet, kid: &str) -> Option<(Algorithm, DecodingKey)> {
    let jwk = set.find(kid)?;
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    // A declared `alg` must be the one the key type allows (the enums share variant names).
    if let Some(declared) = jwk.common.key_algorithm
        && format!("{declared:?}") != format!("{alg:?}")
    {
        return None;
    }
    DecodingKey::from_jwk(jwk).ok().map(|k| (alg, k))
}
