//! The session lifecycle: login, refresh, validation, logout and the administrative steps,
//! over the store traits, with the hot-path caches of DESIGN §10.

use crate::cache::FreshCache;
use crate::clock::Clock;
use crate::error::{CoreError, CoreResult};
use crate::password;
use crate::policy::Policy;
use crate::secret::{self, MasterKey};
use crate::token::{Claims, Keyring, TokenError};
use sessiond_store::*;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Semaphore;

mod accounts;
mod audit;
mod keys;
mod login;
pub mod operators;
mod revoke;
mod stepup;
mod validate;

use audit::{WriteAudit, about};

pub use stepup::Proof;

pub const SCOPE: &str = "session";
/// Password hashes waiting for a core, per core, before logins are refused with 429.
pub const HASH_QUEUE_PER_CORE: usize = 64;
/// How long the active-session count of the metrics is reused.
pub const ACTIVE_COUNT_MAX_AGE: Duration = Duration::from_secs(10);
/// No cached session or tenant is older than this, even if an invalidation was missed.
pub const CACHE_MAX_AGE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub issuer: String,
    pub audience: String,
    pub token_cache_size: usize,
    pub session_cache_size: usize,
    /// How many Argon2id computations may run at once (the number of cores).
    pub hash_concurrency: usize,
    /// The algorithm of newly generated signing keys.
    pub signing_alg: crate::token::Alg,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            audience: "sessiond".into(),
            token_cache_size: 100_000,
            session_cache_size: 100_000,
            hash_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            signing_alg: crate::token::Alg::EdDSA,
        }
    }
}

/// Who is making a request, for the audit trail.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub tenant_id: TenantId,
    pub activity_id: String,
    pub correlation_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The operator acting, on the admin API (`operator:<username>` or `admin-token`); it
    /// goes into the audit events of the request.
    pub actor: Option<String>,
}

/// A tenant and the policy in force for it.
#[derive(Debug, Clone)]
pub struct TenantPolicy {
    pub tenant: Tenant,
    pub policy: Policy,
}

/// A token whose signature, issuer and (for session tokens) audience were verified once;
/// its time claims are checked on every use.
#[derive(Clone)]
pub(crate) enum Verified {
    Session(Arc<Claims>),
    Internal(Arc<crate::token::InternalClaims>),
}

impl Verified {
    pub(crate) fn sid(&self) -> &SessionId {
        match self {
            Verified::Session(c) => &c.sid,
            Verified::Internal(c) => &c.sid,
        }
    }

    pub(crate) fn sub(&self) -> UserId {
        match self {
            Verified::Session(c) => c.sub,
            Verified::Internal(c) => c.sub,
        }
    }
}

/// `nbf`/`iat` may lie at most the leeway in the future, and `exp` must not have passed.
pub(crate) fn time_ok(nbf: UnixTime, iat: UnixTime, now: UnixTime) -> bool {
    nbf <= now + crate::token::NBF_LEEWAY && iat <= now + crate::token::NBF_LEEWAY
}

/// A verified token whose session is active.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: Arc<Claims>,
    /// Shared with the session cache: a cache hit copies nothing.
    pub session: Arc<Session>,
}

/// What login and refresh hand back (no `Debug`: it holds tokens).
#[derive(Clone)]
pub struct Issued {
    pub session: Session,
    pub session_token: String,
    pub expires_in: i64,
    pub refresh_token: Option<String>,
    pub refresh_expires_in: Option<i64>,
}

pub struct Engine {
    pub(crate) sessions: Arc<dyn SessionStore>,
    pub(crate) identity: Arc<dyn IdentityStore>,
    clock: Arc<dyn Clock>,
    pub(crate) master: MasterKey,
    cfg: EngineConfig,
    keyring: RwLock<Arc<Keyring>>,
    pub(crate) sso: crate::sso::SsoVerifier,
    guard: crate::guard::Guard,
    alerts: Option<Arc<dyn crate::alert::AlertSink>>,
    /// Verified claims by SHA-256 of the token: a token pays one signature check.
    pub(crate) verified: quick_cache::sync::Cache<[u8; 32], Verified>,
    /// Session records; every revocation removes its entry before it is acknowledged.
    session_cache: FreshCache<SessionId, Arc<Session>>,
    tenants: FreshCache<TenantId, Arc<TenantPolicy>>,
    /// Service clients by id (introspection authenticates one per request).
    pub(crate) clients: FreshCache<String, ServiceClient>,
    hashing: Semaphore,
    hashing_queued: std::sync::atomic::AtomicUsize,
    /// Argon2 with pooled memory: at most `hash_concurrency` buffers (the semaphore's permits).
    hasher: Arc<password::Hasher>,
    /// Serializes key rotations.
    rotation: tokio::sync::Mutex<()>,
    /// With shared stores: how fresh the caches are (see [`crate::changes`]).
    freshness: Option<crate::freshness::Freshness>,
    /// When the keyring was last reloaded for a token with an unknown `kid`.
    kid_reload: std::sync::Mutex<Option<std::time::Instant>>,
    active_count: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
    /// The revocation feed, once started (see [`Engine::start_feed`]).
    feed: std::sync::OnceLock<Arc<crate::feed::Feed>>,
    /// The session store is the identity store too (one object): session writes commit
    /// their audit events in their own transaction (see [`sessiond_store::AuditWith`]).
    audit_in_writes: bool,
}

impl Engine {
    /// Opens the keyring (creating it on first start) and builds the engine.
    pub async fn start(
        sessions: Arc<dyn SessionStore>,
        identity: Arc<dyn IdentityStore>,
        clock: Arc<dyn Clock>,
        master: MasterKey,
        cfg: EngineConfig,
    ) -> CoreResult<Self> {
        let mut stored = identity.load_keys().await?;
        if stored.is_empty() {
            // Several nodes may start at once on a new store: one keyring wins.
            let mine = Keyring::generate(&master, cfg.signing_alg, clock.now())?;
            stored = identity.init_keys(mine).await?;
        }
        let mut keyring = Keyring::load(&master, stored)?;
        // A changed algorithm: the next key (never used yet) becomes one of the new
        // algorithm, published now, signing from the next rotation on.
        if let Some(keys) = keyring.with_next_alg(&master, cfg.signing_alg, clock.now())? {
            identity.replace_keys(keys.clone()).await?;
            keyring = Keyring::load(&master, keys)?;
        }
        Ok(Self {
            audit_in_writes: std::ptr::addr_eq(Arc::as_ptr(&sessions), Arc::as_ptr(&identity)),
            verified: quick_cache::sync::Cache::new(cfg.token_cache_size.max(1)),
            session_cache: FreshCache::new(cfg.session_cache_size, CACHE_MAX_AGE),
            tenants: FreshCache::new(10_000, CACHE_MAX_AGE),
            clients: FreshCache::new(10_000, CACHE_MAX_AGE),
            hashing: Semaphore::new(cfg.hash_concurrency.max(1)),
            hashing_queued: std::sync::atomic::AtomicUsize::new(0),
            hasher: password::Hasher::new(cfg.hash_concurrency.max(1))?,
            rotation: tokio::sync::Mutex::new(()),
            freshness: None,
            kid_reload: std::sync::Mutex::new(None),
            active_count: std::sync::Mutex::new(None),
            feed: std::sync::OnceLock::new(),
            keyring: RwLock::new(Arc::new(keyring)),
            sso: crate::sso::SsoVerifier::default(),
            guard: crate::guard::Guard::default(),
            alerts: None,
            sessions,
            identity,
            clock,
            master,
            cfg,
        })
    }

    /// Starts the revocation feed over `logs` (once; later calls keep the first feed).
    /// `followed`: the same logs are followed by [`Engine::spawn_follower`] on this node,
    /// which then wakes the feed; otherwise the feed waits on the logs' hints itself.
    pub fn start_feed(
        self: &Arc<Self>,
        logs: Vec<Arc<dyn sessiond_store::ChangeLog>>,
        followed: bool,
    ) -> Arc<crate::feed::Feed> {
        let keys: Arc<dyn crate::feed::KeyringSource> = Arc::new(FeedKeys(Arc::downgrade(self)));
        Arc::clone(self.feed.get_or_init(|| {
            crate::feed::Feed::spawn(logs, Arc::clone(&self.clock), !followed, Some(keys))
        }))
    }

    /// The revocation feed, if [`Engine::start_feed`] started one.
    pub fn feed(&self) -> Option<&Arc<crate::feed::Feed>> {
        self.feed.get()
    }

    /// Shares the stores with other nodes: caches are trusted only while each of the `logs`
    /// change logs (followed by [`Engine::spawn_follower`]) was swept within `bound`.
    pub fn with_change_logs(mut self, logs: usize, bound: Duration) -> Self {
        if logs > 0 {
            self.freshness = Some(crate::freshness::Freshness::new(logs, bound));
        }
        self
    }

    pub(crate) fn freshness(&self) -> Option<&crate::freshness::Freshness> {
        self.freshness.as_ref()
    }

    /// False while a followed change log has not been read within the bound: every cached
    /// session, tenant and client is then read from the store instead.
    pub fn caches_trusted(&self) -> bool {
        self.freshness.as_ref().is_none_or(|f| f.trusted())
    }

    /// With shared stores: how long ago the stalest change log's last complete sweep started
    /// (`None` before the first one); on one node, `Some(0)`.
    pub fn change_log_age(&self) -> Option<Duration> {
        match &self.freshness {
            Some(f) => f.age(),
            None => Some(Duration::ZERO),
        }
    }

    /// Counts login failures and per-account rates in `counters`, shared by every node,
    /// instead of in this node's memory.
    pub fn with_counters(mut self, counters: Arc<dyn Counters>) -> Self {
        self.guard.set_counters(counters);
        self
    }

    /// IPv6 clients' login failures and rates are counted per network of `prefix` bits
    /// (1–128; 64 unless set).
    pub fn with_ipv6_prefix(mut self, prefix: u8) -> Self {
        self.guard.set_ipv6_prefix(prefix);
        self
    }

    /// Where `suspicious_activity` events of tenants with a `webhookUrl` go.
    pub fn with_alert_sink(mut self, sink: Arc<dyn crate::alert::AlertSink>) -> Self {
        self.alerts = Some(sink);
        self
    }

    /// Lets SSO settings name a JWKS URL, fetched with `fetcher`.
    /// How SSO trusts reach partners: JWKS URLs and verification endpoints.
    pub fn with_sso_transport(
        mut self,
        fetcher: Arc<dyn crate::sso::JwksFetcher>,
        endpoint: Arc<dyn crate::sso::SsoEndpoint>,
    ) -> Self {
        self.sso = crate::sso::SsoVerifier::new(Some(fetcher), Some(endpoint));
        self
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Cookie mode's CSRF token of a session (DESIGN §6): derived from the master key and the
    /// session id, so it stays the same across refreshes and is worthless for any other session.
    pub fn csrf_token(&self, sid: &SessionId) -> String {
        self.master
            .derive_hex(&[b"sessiond/csrf/v1\0", sid.as_str().as_bytes()])
    }

    pub(crate) fn keyring(&self) -> CoreResult<Arc<Keyring>> {
        self.keyring
            .read()
            .map(|k| Arc::clone(&k))
            .map_err(|_| CoreError::Internal("keyring lock poisoned".into()))
    }

    /// Sessions active now across all tenants, for metrics scrapes: a store query at most
    /// every [`ACTIVE_COUNT_MAX_AGE`] per node, however often its metrics are scraped.
    pub async fn count_active_sessions(&self) -> CoreResult<u64> {
        let cached = self
            .active_count
            .lock()
            .ok()
            .and_then(|c| *c)
            .filter(|(at, _)| at.elapsed() < ACTIVE_COUNT_MAX_AGE);
        if let Some((_, n)) = cached {
            return Ok(n);
        }
        let n = self.sessions.count_active_sessions(self.now()).await?;
        if let Ok(mut c) = self.active_count.lock() {
            *c = Some((std::time::Instant::now(), n));
        }
        Ok(n)
    }

    /// Are both stores reachable? (Identity is pinged through a keyring read.)
    pub async fn ping(&self) -> CoreResult<()> {
        self.sessions.ping().await?;
        self.identity.load_keys().await?;
        Ok(())
    }
}

impl Engine {
    /// Hands `suspicious_activity` events to the alert sink for tenants with a webhook.
    async fn alert(&self, events: &[AuditEvent]) {
        let Some(sink) = &self.alerts else { return };
        for e in events
            .iter()
            .filter(|e| e.kind == AuditKind::SuspiciousActivity)
        {
            if let Ok(Some((url, secret))) = self.webhook(&e.tenant_id).await
                && let Ok(tp) = self.tenant(&e.tenant_id).await
            {
                let outbound = crate::outbound::Outbound::for_profile(tp.tenant.profile);
                sink.deliver(&url, &secret, e, outbound);
            }
        }
    }
}

/// Usernames are compared exactly (case-sensitive) in Unicode NFC, so the same name typed
/// with precomposed or combining accents is one name. `None` for a name that is empty, over
/// 256 characters, padded with spaces, or holds control or direction-changing characters.
pub fn normalize_username(raw: &str) -> Option<String> {
    use unicode_normalization::UnicodeNormalization;
    let name: String = raw.nfc().collect();
    let invisible = |c: char| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    };
    let ok = !name.is_empty()
        && name.chars().count() <= 256
        && name.trim() == name
        && !name.chars().any(invisible);
    ok.then_some(name)
}

/// How far `last_seen` may lag before it is written: 1/20 of the idle timeout, at most 60 s.
fn touch_interval(idle_ttl: Option<u32>) -> i64 {
    idle_ttl.map_or(60, |t| i64::from(t / 20).clamp(1, 60))
}

/// The feed's way to the engine's keyring (weak: the engine owns the feed).
struct FeedKeys(std::sync::Weak<Engine>);

#[async_trait::async_trait]
impl crate::feed::KeyringSource for FeedKeys {
    async fn reload_keyring(&self) -> CoreResult<()> {
        match self.0.upgrade() {
            Some(engine) => engine.reload_keyring().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use sessiond_store::memory::MemoryStore;

    #[tokio::test]
    async fn audit_retention_purges_old_events_only() {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(1_000_000));
        let master = MasterKey::generate().unwrap_or_else(|e| panic!("{e}"));
        let engine = Engine::start(
            store.clone(),
            store.clone(),
            clock.clone(),
            master,
            EngineConfig::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let tenant = TenantId::parse("t1").unwrap_or_else(|e| panic!("{e}"));
        engine
            .create_tenant(
                tenant.clone(),
                None,
                Profile::Integration,
                PolicyOverrides::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let ctx = RequestContext {
            tenant_id: tenant.clone(),
            activity_id: "a".into(),
            correlation_id: None,
            ip: None,
            user_agent: None,
            actor: None,
        };
        let e = engine.event(&ctx, AuditKind::LoginFailed, None, None);
        engine
            .record(vec![e])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        clock.advance(86_400);
        let e = engine.event(&ctx, AuditKind::LoginFailed, None, None);
        engine
            .record(vec![e])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(engine.purge_audit(3600).await.unwrap_or_default(), 1);
        let all = AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        };
        assert_eq!(
            engine
                .find_audit(&tenant, &all)
                .await
                .unwrap_or_default()
                .len(),
            1
        );
    }
}
