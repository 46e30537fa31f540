//! What a verifier is told: where sessiond is, what a token must say, how stale is too stale.

use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use std::sync::Arc;
use std::time::Duration;

/// The largest leeway the contract allows on `exp`/`nbf` (DESIGN §3).
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// A service client of the tenant (`POST /admin/v1/tenants/{tenant}/clients`): it
/// authenticates the feed and introspection. `Debug` hides the secret.
#[derive(Clone)]
pub struct ClientCredentials {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl ClientCredentials {
    /// The `Authorization: Basic` value, each half form-encoded first (RFC 6749 §2.3.1).
    pub(crate) fn authorization(&self) -> String {
        use base64::Engine as _;
        let pair = format!("{}:{}", form_encode(&self.id), form_encode(&self.secret));
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What to do when the revocation state is not current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StalePolicy {
    /// Refuse every token (503 `store_unavailable`, `Retry-After: 1`).
    #[default]
    FailClosed,
    /// Ask sessiond (`POST /oauth2/introspect`) about each token and trust its `active`.
    Introspect,
}

/// The verifier's settings. [`Config::new`] takes what has no default; the `with_*` methods
/// change the rest.
#[derive(Clone)]
pub struct Config {
    /// sessiond's base URL, e.g. `https://auth.example.com` (JWKS, feed and introspection
    /// paths are appended).
    pub base_url: String,
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry.
    pub audience: String,
    /// The tenant whose tokens are accepted — the service client's, whose feed is followed.
    pub tenant: String,
    pub client: ClientCredentials,
    /// Tolerance after `exp` (default none; at most 60 s).
    pub exp_leeway: Duration,
    /// Tolerance before `nbf`/`iat` for clock skew (default 30 s; at most 60 s).
    pub nbf_leeway: Duration,
    /// How long the feed may be silent (heartbeats included) before its copy is stale.
    pub max_silence: Duration,
    pub on_stale: StalePolicy,
    /// An unknown `kid` refetches the JWKS at most once per this interval.
    pub key_refetch_interval: Duration,
    /// Timeout of each JWKS, introspection or feed-connect request.
    pub request_timeout: Duration,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("base_url", &self.base_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("tenant", &self.tenant)
            .field("client", &self.client)
            .field("exp_leeway", &self.exp_leeway)
            .field("nbf_leeway", &self.nbf_leeway)
            .field("max_silence", &self.max_silence)
            .field("on_stale", &self.on_stale)
            .field("key_refetch_interval", &self.key_refetch_interval)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn new(
        base_url: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        tenant: impl Into<String>,
        client: ClientCredentials,
    ) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            issuer: issuer.into(),
            audience: audience.into(),
            tenant: tenant.into(),
            client,
            exp_leeway: Duration::ZERO,
            nbf_leeway: Duration::from_secs(30),
            max_silence: Duration::from_secs(1),
            on_stale: StalePolicy::FailClosed,
            key_refetch_interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            clock: Arc::new(SystemClock),
        }
    }

    pub fn with_stale_policy(mut self, policy: StalePolicy) -> Self {
        self.on_stale = policy;
        self
    }

    pub fn with_max_silence(mut self, bound: Duration) -> Self {
        self.max_silence = bound;
        self
    }

    pub fn with_leeway(mut self, exp: Duration, nbf: Duration) -> Self {
        self.exp_leeway = exp;
        self.nbf_leeway = nbf;
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_key_refetch_interval(mut self, every: Duration) -> Self {
        self.key_refetch_interval = every;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.exp_leeway > MAX_LEEWAY || self.nbf_leeway > MAX_LEEWAY {
            return Err(Error::Config("leeway above 60 s".into()));
        }
        if self.max_silence.is_zero() {
            return Err(Error::Config("max_silence must be positive".into()));
        }
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return Err(Error::Config("base_url must be an http(s) URL".into()));
        }
        if self.issuer.is_empty() || self.audience.is_empty() || self.tenant.is_empty() {
            return Err(Error::Config(
                "issuer, audience and tenant are required".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> ClientCredentials {
        ClientCredentials {
            id: "rs".into(),
            secret: "very-secret-value".into(),
        }
    }

    #[test]
    fn debug_hides_the_client_secret() {
        let c = Config::new("http://x/", "i", "a", "t", creds());
        let shown = format!("{c:?} {:?}", c.client);
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert_eq!(c.base_url, "http://x");
    }

    #[test]
    fn basic_credentials_are_form_encoded() {
        let c = ClientCredentials {
            id: "a b".into(),
            secret: "x:y".into(),
        };
        // base64("a%20b:x%3Ay")
        assert_eq!(c.authorization(), "Basic YSUyMGI6eCUzQXk=");
    }

    #[test]
    fn leeway_is_capped_at_sixty_seconds() {
        let c = Config::new("http://x", "i", "a", "t", creds());
        assert!(c.validate().is_ok());
        let c = c.with_leeway(Duration::from_secs(61), Duration::ZERO);
        assert!(matches!(c.validate(), Err(Error::Config(_))));
    }
}
