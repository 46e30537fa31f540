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

/// `nbf`/`iat` may lie at most the leeway in the future, and `exp` must not have passed.
pub(crate) fn time_ok(nbf: UnixTime, iat: UnixTime, now: UnixTime) -> bool {
    nbf <= now + crate::token::NBF_LEEWAY && iat <= now + crate::token::NBF_LEEWAY
}

/// A verified token whose session is active.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: Arc<Claims>,
    pub session: Session,
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
    session_cache: FreshCache<SessionId, Session>,
    tenants: FreshCache<TenantId, Arc<TenantPolicy>>,
    /// Service clients by id (introspection authenticates one per request).
    pub(crate) clients: FreshCache<String, ServiceClient>,
    hashing: Semaphore,
    hashing_queued: std::sync::atomic::AtomicUsize,
    /// Serializes key rotations.
    rotation: tokio::sync::Mutex<()>,
    /// With shared stores: how fresh the caches are (see [`crate::changes`]).
    freshness: Option<crate::freshness::Freshness>,
    /// When the keyring was last reloaded for a token with an unknown `kid`.
    kid_reload: std::sync::Mutex<Option<std::time::Instant>>,
    active_count: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
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
            stored = Keyring::generate(&master, cfg.signing_alg, clock.now())?;
            identity.replace_keys(stored.clone()).await?;
        }
        let mut keyring = Keyring::load(&master, stored)?;
        // A changed algorithm: the next key (never used yet) becomes one of the new
        // algorithm, published now, signing from the next rotation on.
        if let Some(keys) = keyring.with_next_alg(&master, cfg.signing_alg, clock.now())? {
            identity.replace_keys(keys.clone()).await?;
            keyring = Keyring::load(&master, keys)?;
        }
        Ok(Self {
            verified: quick_cache::sync::Cache::new(cfg.token_cache_size.max(1)),
            session_cache: FreshCache::new(cfg.session_cache_size, CACHE_MAX_AGE),
            tenants: FreshCache::new(10_000, CACHE_MAX_AGE),
            clients: FreshCache::new(10_000, CACHE_MAX_AGE),
            hashing: Semaphore::new(cfg.hash_concurrency.max(1)),
            hashing_queued: std::sync::atomic::AtomicUsize::new(0),
            rotation: tokio::sync::Mutex::new(()),
            freshness: None,
            kid_reload: std::sync::Mutex::new(None),
            active_count: std::sync::Mutex::new(None),
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

    pub(crate) fn drop_caches(&self) {
        self.session_cache.clear();
        self.tenants.clear();
        self.clients.clear();
    }

    pub(crate) fn invalidate_tenant(&self, id: &TenantId) {
        self.tenants.invalidate(id);
    }

    /// Reads the keyring from the identity store again (another node rotated it).
    pub(crate) async fn reload_keyring(&self) -> CoreResult<()> {
        let keyring = Keyring::load(&self.master, self.identity.load_keys().await?)?;
        *self
            .keyring
            .write()
            .map_err(|_| CoreError::Internal("keyring lock poisoned".into()))? = Arc::new(keyring);
        Ok(())
    }

    /// [`Engine::verify_token`], and for a token naming a key this node does not know (another
    /// node rotated, and the change log has not told us yet), one keyring reload — at most one
    /// a second, so made-up `kid`s cannot hammer the store — and a second try.
    pub async fn verify_token_reloading(&self, token: &str) -> CoreResult<Arc<Claims>> {
        match self.verify_token(token) {
            Err(CoreError::TokenInvalid) if self.keyring()?.names_unknown_kid(token) => {
                let due = {
                    let now = std::time::Instant::now();
                    let mut last = self
                        .kid_reload
                        .lock()
                        .map_err(|_| CoreError::Internal("kid reload lock poisoned".into()))?;
                    let due = last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
                    if due {
                        *last = Some(now);
                    }
                    due
                };
                if !due {
                    return Err(CoreError::TokenInvalid);
                }
                self.reload_keyring().await?;
                self.verify_token(token)
            }
            r => r,
        }
    }

    /// Where `suspicious_activity` events of tenants with a `webhookUrl` go.
    pub fn with_alert_sink(mut self, sink: Arc<dyn crate::alert::AlertSink>) -> Self {
        self.alerts = Some(sink);
        self
    }

    /// A tenant's webhook URL and the secret its deliveries are signed with.
    pub async fn webhook(&self, tenant: &TenantId) -> CoreResult<Option<(String, String)>> {
        let tp = self.tenant(tenant).await?;
        Ok(tp.policy.webhook_url.as_ref().map(|url| {
            (
                url.clone(),
                crate::alert::webhook_secret(&self.master, tenant, url),
            )
        }))
    }

    /// Lets SSO settings name a JWKS URL, fetched with `fetcher`.
    pub fn with_jwks_fetcher(mut self, fetcher: Arc<dyn crate::sso::JwksFetcher>) -> Self {
        self.sso = crate::sso::SsoVerifier::new(Some(fetcher));
        self
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub(crate) fn keyring(&self) -> CoreResult<Arc<Keyring>> {
        self.keyring
            .read()
            .map(|k| Arc::clone(&k))
            .map_err(|_| CoreError::Internal("keyring lock poisoned".into()))
    }

    /// Deletes audit events older than `keep_seconds` (all tenants); returns how many.
    pub async fn purge_audit(&self, keep_seconds: i64) -> CoreResult<u64> {
        Ok(self.identity.purge_audit(self.now() - keep_seconds).await?)
    }

    /// Sessions active now across all tenants, for metrics scrapes: a store query at most
    /// every [`ACTIVE_COUNT_MAX_AGE`], however often (and from however many nodes) the
    /// metrics are scraped.
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

    pub async fn ping(&self) -> CoreResult<()> {
        Ok(self.sessions.ping().await?)
    }

    // ---- tenants -------------------------------------------------------------------------

    pub async fn tenant(&self, id: &TenantId) -> CoreResult<Arc<TenantPolicy>> {
        if let Some(t) = self.tenants.get(id).filter(|_| self.caches_trusted()) {
            return Ok(t);
        }
        let epoch = self.tenants.epoch();
        let tenant = self
            .identity
            .get_tenant(id)
            .await?
            .ok_or(CoreError::UnknownTenant)?;
        let policy = Policy::effective(tenant.profile, &tenant.overrides)?;
        let tp = Arc::new(TenantPolicy { tenant, policy });
        self.tenants.insert(id.clone(), Arc::clone(&tp), epoch);
        Ok(tp)
    }

    pub async fn create_tenant(
        &self,
        id: TenantId,
        name: Option<String>,
        profile: Profile,
        overrides: PolicyOverrides,
    ) -> CoreResult<Arc<TenantPolicy>> {
        Policy::effective(profile, &overrides)?;
        if name
            .as_ref()
            .is_some_and(|n| n.chars().count() > 256 || n.chars().any(char::is_control))
        {
            return Err(CoreError::InvalidRequest(
                "name must be at most 256 characters, without control characters".into(),
            ));
        }
        let tenant = Tenant {
            id: id.clone(),
            name,
            profile,
            overrides,
            created_at: self.now(),
        };
        match self.identity.create_tenant(tenant).await {
            Err(StoreError::Conflict) => {
                Err(CoreError::Conflict("the tenant already exists".into()))
            }
            r => r.map_err(CoreError::from),
        }?;
        self.tenant(&id).await
    }

    /// Applies a JSON merge patch (RFC 7396) to the tenant's overrides: a value sets an
    /// override, `null` removes it (back to the profile's default).
    pub async fn patch_policy(
        &self,
        id: &TenantId,
        patch: serde_json::Map<String, serde_json::Value>,
    ) -> CoreResult<Policy> {
        let current = self.tenant(id).await?;
        let mut merged = match serde_json::to_value(&current.tenant.overrides) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        for (k, v) in patch {
            if v.is_null() {
                merged.remove(&k);
            } else {
                merged.insert(k, v);
            }
        }
        let o: PolicyOverrides = serde_json::from_value(serde_json::Value::Object(merged))
            .map_err(|e| CoreError::InvalidRequest(format!("invalid policy: {e}")))?;
        let policy = Policy::effective(current.tenant.profile, &o)?;
        self.identity
            .set_tenant_policy(id, o)
            .await?
            .ok_or(CoreError::UnknownTenant)?;
        self.tenants.invalidate(id);
        Ok(policy)
    }

    // ---- users ---------------------------------------------------------------------------

    pub(crate) async fn hash_password(&self, password: String) -> CoreResult<String> {
        password::check_password_policy(&password)?;
        self.off_thread(move || password::hash_password(&password))
            .await?
    }

    /// Runs Argon2 on the blocking pool, at most `hash_concurrency` at a time, so logins queue
    /// instead of starving token validation.
    pub(crate) async fn off_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> CoreResult<T> {
        // A bounded queue: past it, refuse at once rather than pile up work.
        let queued = self
            .hashing_queued
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let permit = if queued >= HASH_QUEUE_PER_CORE * self.cfg.hash_concurrency.max(1) {
            None
        } else {
            self.hashing.acquire().await.ok()
        };
        self.hashing_queued
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        let Some(_permit) = permit else {
            return Err(CoreError::RateLimited { retry_after: 1 });
        };
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| CoreError::Internal(format!("hashing task failed: {e}")))
    }

    pub async fn create_user(
        &self,
        tenant: &TenantId,
        username: String,
        password: String,
        customer_id: Option<CustomerId>,
        external_id: Option<String>,
    ) -> CoreResult<User> {
        self.tenant(tenant).await?;
        let username = normalize_username(&username).ok_or_else(|| {
            CoreError::InvalidRequest(
                "username must be 1 to 256 characters, without control or direction-changing \
                 characters and without leading or trailing spaces"
                    .into(),
            )
        })?;
        let user = User {
            id: uuid::Uuid::new_v4(),
            tenant_id: tenant.clone(),
            customer_id: customer_id.unwrap_or_else(uuid::Uuid::new_v4),
            username: Some(username),
            password_hash: Some(self.hash_password(password).await?),
            external_id,
            status: UserStatus::Active,
            created_at: self.now(),
        };
        match self.identity.create_user(user.clone()).await {
            Err(StoreError::Conflict) => Err(CoreError::Conflict(
                "the username or external id is already taken in this tenant".into(),
            )),
            r => r.map(|()| user).map_err(CoreError::from),
        }
    }

    /// Sets a new password and revokes the user's sessions (all but `keep`).
    pub async fn set_password(
        &self,
        ctx: &RequestContext,
        user: &UserId,
        password: String,
        keep: Option<&SessionId>,
    ) -> CoreResult<usize> {
        let hash = self.hash_password(password).await?;
        if !self
            .identity
            .set_password_hash(&ctx.tenant_id, user, hash)
            .await?
        {
            return Err(CoreError::NotFound("user"));
        }
        self.revoke_user(ctx, user, RevokeReason::PasswordChanged, keep)
            .await
    }

    pub async fn disable_user(&self, ctx: &RequestContext, user: &UserId) -> CoreResult<usize> {
        if !self
            .identity
            .set_user_status(&ctx.tenant_id, user, UserStatus::Disabled)
            .await?
        {
            return Err(CoreError::NotFound("user"));
        }
        self.revoke_user(ctx, user, RevokeReason::Admin, None).await
    }

    // ---- login and refresh ---------------------------------------------------------------

    pub async fn login(
        &self,
        ctx: &RequestContext,
        tp: &TenantPolicy,
        username: &str,
        password: &str,
        device: DeviceInfo,
    ) -> CoreResult<Issued> {
        let account = normalize_username(username);
        let account_key = account.as_deref().unwrap_or(username);
        let per_minute = tp.policy.login_rate_per_minute;
        if let Err(retry_after) = self.guard.rate(&ctx.tenant_id, account_key, per_minute) {
            let mut e = self.event(ctx, AuditKind::LoginFailed, None, None);
            e.reason = Some("rate_limited".into());
            self.record(vec![e]).await?;
            return Err(CoreError::RateLimited { retry_after });
        }
        if let Err(retry_after) = self.guard.check(&ctx.tenant_id, account_key, self.now()) {
            let mut e = self.event(ctx, AuditKind::LoginFailed, None, None);
            e.reason = Some("backoff".into());
            self.record(vec![e]).await?;
            return Err(CoreError::RateLimited { retry_after });
        }
        let user = match &account {
            Some(u) => {
                self.identity
                    .find_user_by_username(&ctx.tenant_id, u)
                    .await?
            }
            None => None,
        };
        let stored = user.as_ref().and_then(|u| u.password_hash.clone());
        let pw = password.to_owned();
        let ok = self
            .off_thread(move || password::verify_password(&pw, stored.as_deref()))
            .await?;
        let user = match user {
            Some(u) if ok => u,
            u => {
                let user_id = u.map(|u| u.id);
                let mut e = self.event(ctx, AuditKind::LoginFailed, user_id, None);
                e.reason = Some("invalid_credentials".into());
                let mut events = vec![e];
                let free = tp.policy.login_backoff_after;
                let failures = self
                    .guard
                    .failed(&ctx.tenant_id, account_key, free, self.now());
                if free > 0 && failures == free {
                    let mut s = self.event(ctx, AuditKind::SuspiciousActivity, user_id, None);
                    s.reason = Some("failure_burst".into());
                    events.push(s);
                }
                self.record(events).await?;
                return Err(CoreError::InvalidCredentials);
            }
        };
        self.guard.succeeded(&ctx.tenant_id, account_key);
        if user.status != UserStatus::Active {
            let mut e = self.event(ctx, AuditKind::LoginFailed, Some(user.id), None);
            e.reason = Some("account_disabled".into());
            self.record(vec![e]).await?;
            return Err(CoreError::AccountDisabled);
        }
        let issued = self
            .create_session(ctx, tp, &user, AuthMethod::Password, device)
            .await?;
        if let Some(ip) = &ctx.ip
            && self
                .guard
                .login_from(&ctx.tenant_id, user.id, ip, self.now())
                == crate::guard::MANY_IPS
        {
            let mut s = self.event(
                ctx,
                AuditKind::SuspiciousActivity,
                Some(user.id),
                Some(issued.session.id.clone()),
            );
            s.reason = Some("logins_from_many_addresses".into());
            self.record(vec![s]).await?;
        }
        Ok(issued)
    }

    pub(crate) async fn create_session(
        &self,
        ctx: &RequestContext,
        tp: &TenantPolicy,
        user: &User,
        method: AuthMethod,
        device: DeviceInfo,
    ) -> CoreResult<Issued> {
        let now = self.now();
        let p = &tp.policy;
        let session = Session {
            id: secret::new_session_id(Route::of_user(&user.id))?,
            tenant_id: ctx.tenant_id.clone(),
            user_id: user.id,
            customer_id: user.customer_id,
            auth_method: method,
            created_at: now,
            last_seen_at: now,
            absolute_expires_at: now + i64::from(p.absolute_ttl),
            idle_ttl: p.idle_timeout(),
            device,
            state: SessionState::Active,
        };
        let refresh = if p.refresh_tokens {
            let token = secret::new_refresh_token(Route::of_user(&user.id))?;
            let expires_at =
                (now + i64::from(p.refresh_token_ttl)).min(session.absolute_expires_at);
            Some((token, expires_at))
        } else {
            None
        };
        let new = NewSession {
            session: session.clone(),
            refresh: refresh.as_ref().map(|(t, exp)| NewRefreshToken {
                hash: secret::hash_refresh(t),
                expires_at: *exp,
            }),
        };
        let evicted = match self
            .sessions
            .create_session(new, p.session_limit(), now)
            .await
        {
            Err(StoreError::LimitReached) => {
                let mut e = self.event(ctx, AuditKind::LoginFailed, Some(user.id), None);
                e.reason = Some("session_limit".into());
                self.record(vec![e]).await?;
                return Err(CoreError::Forbidden(
                    "the user already has the maximum number of active sessions".into(),
                ));
            }
            r => r?,
        };
        let mut events = Vec::with_capacity(2 + evicted.len());
        for id in &evicted {
            self.invalidate(id);
            let mut e = self.event(
                ctx,
                AuditKind::SessionRevoked,
                Some(user.id),
                Some(id.clone()),
            );
            e.reason = Some(RevokeReason::Displaced.as_str().into());
            events.push(e);
        }
        events.push(self.event(
            ctx,
            AuditKind::LoginSucceeded,
            Some(user.id),
            Some(session.id.clone()),
        ));
        events.push(self.event(
            ctx,
            AuditKind::SessionCreated,
            Some(user.id),
            Some(session.id.clone()),
        ));
        self.record(events).await?;
        // A disable or password change that landed while this login was being verified
        // revoked the sessions that existed then, not this one: look at the user again.
        let current = self.identity.get_user(&ctx.tenant_id, &user.id).await?;
        let changed = match &current {
            Some(u) if u.status != UserStatus::Active => {
                Some((RevokeReason::Admin, CoreError::AccountDisabled))
            }
            Some(u) if u.password_hash == user.password_hash => None,
            _ => Some((RevokeReason::PasswordChanged, CoreError::InvalidCredentials)),
        };
        if let Some((reason, err)) = changed {
            self.revoke(ctx, &session.id, reason).await?;
            return Err(err);
        }
        self.issue(session, p, refresh, now)
    }

    pub(crate) fn issue(
        &self,
        session: Session,
        p: &Policy,
        refresh: Option<(String, UnixTime)>,
        now: UnixTime,
    ) -> CoreResult<Issued> {
        let exp = (now + i64::from(p.session_token_ttl)).min(session.absolute_expires_at);
        let claims = Claims {
            iss: self.cfg.issuer.clone(),
            aud: self.cfg.audience.clone(),
            sub: session.user_id,
            sid: session.id.clone(),
            tid: session.tenant_id.clone(),
            cid: session.customer_id,
            scope: SCOPE.into(),
            jti: secret::b64(&secret::random_bytes::<16>()?),
            iat: now,
            nbf: now,
            exp,
            auth_time: session.created_at,
            amr: vec![match session.auth_method {
                AuthMethod::Password => "pwd".into(),
                AuthMethod::Sso => "sso".into(),
            }],
        };
        let session_token = self.keyring()?.sign(&claims)?;
        let (refresh_token, refresh_expires_in) = match refresh {
            Some((t, exp)) => (Some(t), Some(exp - now)),
            None => (None, None),
        };
        Ok(Issued {
            session,
            session_token,
            expires_in: exp - now,
            refresh_token,
            refresh_expires_in,
        })
    }

    pub async fn refresh(
        &self,
        ctx: &RequestContext,
        tp: &TenantPolicy,
        presented: &str,
    ) -> CoreResult<Issued> {
        let p = &tp.policy;
        if !p.refresh_tokens {
            return Err(CoreError::RefreshNotEnabled);
        }
        if presented.is_empty() || presented.len() > 256 {
            return Err(CoreError::RefreshTokenInvalid);
        }
        let now = self.now();
        // The successor lives where the presented token does: with the session.
        let presented_hash = secret::hash_refresh(presented);
        let successor = secret::new_refresh_token(Route::of_hash(&presented_hash))?;
        let successor_expires = now + i64::from(p.refresh_token_ttl);
        let epoch = self.session_cache.epoch();
        let outcome = self
            .sessions
            .rotate_refresh(Rotation {
                tenant_id: ctx.tenant_id.clone(),
                presented: presented_hash,
                successor: NewRefreshToken {
                    hash: secret::hash_refresh(&successor),
                    expires_at: successor_expires,
                },
                sealed_successor: secret::seal_successor(presented, &successor)?,
                grace_seconds: p.refresh_grace_seconds,
                now,
            })
            .await?;
        match outcome {
            RotateOutcome::Rotated { session } => {
                self.cache_session(session.clone(), epoch);
                let e = self.event(
                    ctx,
                    AuditKind::SessionRefreshed,
                    Some(session.user_id),
                    Some(session.id.clone()),
                );
                let mut events = vec![e];
                let moved = |now: &Option<String>, then: &Option<String>| {
                    now.is_some() && then.is_some() && now != then
                };
                for (changed, reason) in [
                    (
                        moved(&ctx.ip, &session.device.ip),
                        "refresh_from_new_address",
                    ),
                    (
                        moved(&ctx.user_agent, &session.device.user_agent),
                        "refresh_from_new_user_agent",
                    ),
                ] {
                    if changed {
                        let mut s = self.event(
                            ctx,
                            AuditKind::SuspiciousActivity,
                            Some(session.user_id),
                            Some(session.id.clone()),
                        );
                        s.reason = Some(reason.into());
                        events.push(s);
                    }
                }
                self.record(events).await?;
                let exp = successor_expires.min(session.absolute_expires_at);
                self.issue(session, p, Some((successor, exp)), now)
            }
            RotateOutcome::Replayed {
                session,
                sealed_successor,
            } => {
                let again = secret::open_successor(presented, &sealed_successor)
                    .ok_or(CoreError::RefreshTokenInvalid)?;
                let mut e = self.event(
                    ctx,
                    AuditKind::SessionRefreshed,
                    Some(session.user_id),
                    Some(session.id.clone()),
                );
                e.reason = Some("grace_replay".into());
                self.record(vec![e]).await?;
                let exp = successor_expires.min(session.absolute_expires_at);
                self.issue(session, p, Some((again, exp)), now)
            }
            RotateOutcome::Reused { session, revoked } => {
                self.invalidate(&session.id);
                let mut events = vec![self.event(
                    ctx,
                    AuditKind::RefreshTokenReused,
                    Some(session.user_id),
                    Some(session.id.clone()),
                )];
                if revoked {
                    let mut e = self.event(
                        ctx,
                        AuditKind::SessionRevoked,
                        Some(session.user_id),
                        Some(session.id.clone()),
                    );
                    e.reason = Some(RevokeReason::ReuseDetected.as_str().into());
                    events.push(e);
                }
                let mut s = self.event(
                    ctx,
                    AuditKind::SuspiciousActivity,
                    Some(session.user_id),
                    Some(session.id.clone()),
                );
                s.reason = Some("refresh_token_reuse".into());
                events.push(s);
                self.record(events).await?;
                Err(CoreError::RefreshTokenReused)
            }
            RotateOutcome::SessionInactive { session } => {
                Err(self.inactive(ctx, &session, now).await)
            }
            RotateOutcome::Invalid => Err(CoreError::RefreshTokenInvalid),
        }
    }

    // ---- validation ----------------------------------------------------------------------

    /// Verifies a session token (once per unique token) without looking at the session.
    pub fn verify_token(&self, token: &str) -> CoreResult<Arc<Claims>> {
        let now = self.now();
        let key: [u8; 32] = secret::hash_token(token).0;
        match self.verified.get(&key) {
            Some(Verified::Session(c)) if !time_ok(c.nbf, c.iat, now) => {
                return Err(CoreError::TokenInvalid);
            }
            Some(Verified::Session(c)) if now < c.exp => return Ok(c),
            Some(Verified::Session(_)) => return Err(CoreError::TokenExpired),
            Some(Verified::Internal(_)) => return Err(CoreError::TokenInvalid),
            None => {}
        }
        let claims = self
            .keyring()?
            .verify(token, &self.cfg.issuer, &self.cfg.audience, now)
            .map_err(|e| match e {
                TokenError::Invalid => CoreError::TokenInvalid,
                TokenError::Expired => CoreError::TokenExpired,
            })?;
        let claims = Arc::new(claims);
        self.verified
            .insert(key, Verified::Session(Arc::clone(&claims)));
        Ok(claims)
    }

    /// The stateful check of every authenticated request: token, tenant, live session. Counts
    /// as activity for the idle timeout (written to the store only when it has moved enough).
    pub async fn authenticate(
        &self,
        ctx: &RequestContext,
        token: &str,
    ) -> CoreResult<Authenticated> {
        let claims = self.verify_token_reloading(token).await?;
        if claims.tid != ctx.tenant_id {
            return Err(CoreError::TenantMismatch);
        }
        let now = self.now();
        let epoch = self.session_cache.epoch();
        let mut session = self.session(&ctx.tenant_id, &claims.sid, epoch).await?;
        if session.user_id != claims.sub {
            return Err(CoreError::TokenInvalid);
        }
        if !session.is_active_at(now) {
            return Err(self.inactive(ctx, &session, now).await);
        }
        if now - session.last_seen_at >= touch_interval(session.idle_ttl) {
            // Cached under the epoch taken before the session was read: a revocation since
            // then keeps this (possibly stale) copy out of the cache.
            self.sessions
                .touch_session(&ctx.tenant_id, &session.id, now)
                .await?;
            session.last_seen_at = now;
            self.cache_session(session.clone(), epoch);
        }
        Ok(Authenticated { claims, session })
    }

    pub(crate) async fn session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        epoch: u64,
    ) -> CoreResult<Session> {
        let now = self.now();
        let cached = self.session_cache.get(id).filter(|_| self.caches_trusted());
        let session = match cached {
            // An ended session never comes back; an active one that has timed out by its
            // cached last-seen time may have been used on another node since: read it again.
            Some(s) if s.state != SessionState::Active || s.is_active_at(now) => s,
            _ => {
                let s = self
                    .sessions
                    .get_session(tenant, id)
                    .await?
                    .ok_or(CoreError::TokenInvalid)?;
                self.cache_session(s.clone(), epoch);
                s
            }
        };
        if &session.tenant_id != tenant {
            return Err(CoreError::TokenInvalid);
        }
        Ok(session)
    }

    /// Caches a session read at invalidation epoch `epoch`, unless an invalidation has
    /// happened since (insert first, then re-check, so a concurrent invalidation always wins).
    pub(crate) fn cache_session(&self, s: Session, epoch: u64) {
        self.session_cache.insert(s.id.clone(), s, epoch);
    }

    pub(crate) fn invalidation_epoch(&self) -> u64 {
        self.session_cache.epoch()
    }

    pub(crate) fn invalidate(&self, id: &SessionId) {
        self.session_cache.invalidate(id);
    }

    /// The error for a session that is no longer active; records a timeout the first time.
    pub(crate) async fn inactive(
        &self,
        ctx: &RequestContext,
        s: &Session,
        now: UnixTime,
    ) -> CoreError {
        match s.status_at(now) {
            SessionStatus::Revoked(RevokeReason::Displaced) => CoreError::SessionDisplaced,
            SessionStatus::Revoked(_) => CoreError::SessionRevoked,
            SessionStatus::Active => CoreError::Internal("session unexpectedly active".into()),
            SessionStatus::Expired => {
                if s.state == SessionState::Active {
                    match self.sessions.mark_expired(&ctx.tenant_id, &s.id, now).await {
                        Ok(true) => {
                            self.invalidate(&s.id);
                            let e = self.event(
                                ctx,
                                AuditKind::SessionExpired,
                                Some(s.user_id),
                                Some(s.id.clone()),
                            );
                            if let Err(err) = self.record(vec![e]).await {
                                return err;
                            }
                        }
                        Ok(false) => {}
                        Err(err) => return err.into(),
                    }
                }
                CoreError::SessionExpired
            }
        }
    }

    // ---- ending sessions -----------------------------------------------------------------

    /// Logs out the token's session. Accepts an expired token (a signed one) so a client can
    /// always end its session; idempotent.
    pub async fn logout(&self, ctx: &RequestContext, token: &str) -> CoreResult<()> {
        let claims = match self.verify_token(token) {
            Ok(c) => (*c).clone(),
            Err(CoreError::TokenExpired) => self
                .keyring()?
                .verify_ignoring_expiry(token, &self.cfg.issuer, &self.cfg.audience, self.now())
                .map_err(|_| CoreError::TokenInvalid)?,
            Err(e) => return Err(e),
        };
        if claims.tid != ctx.tenant_id {
            return Err(CoreError::TenantMismatch);
        }
        self.revoke(ctx, &claims.sid, RevokeReason::Logout).await?;
        Ok(())
    }

    pub async fn logout_all(
        &self,
        ctx: &RequestContext,
        auth: &Authenticated,
    ) -> CoreResult<usize> {
        self.revoke_user(ctx, &auth.session.user_id, RevokeReason::LogoutAll, None)
            .await
    }

    /// Revokes one session of the authenticated user.
    pub async fn revoke_own(
        &self,
        ctx: &RequestContext,
        auth: &Authenticated,
        id: &SessionId,
    ) -> CoreResult<()> {
        match self.sessions.get_session(&ctx.tenant_id, id).await? {
            Some(s) if s.user_id == auth.session.user_id => {
                self.revoke(ctx, id, RevokeReason::Logout).await?;
                Ok(())
            }
            _ => Err(CoreError::NotFound("session")),
        }
    }

    pub async fn revoke_others(
        &self,
        ctx: &RequestContext,
        auth: &Authenticated,
    ) -> CoreResult<usize> {
        self.revoke_user(
            ctx,
            &auth.session.user_id,
            RevokeReason::LogoutAll,
            Some(&auth.session.id),
        )
        .await
    }

    /// Revokes one session by id (idempotent); true if this call revoked it.
    pub async fn revoke(
        &self,
        ctx: &RequestContext,
        id: &SessionId,
        reason: RevokeReason,
    ) -> CoreResult<bool> {
        let revoked = self
            .sessions
            .revoke_session(&ctx.tenant_id, id, reason, self.now())
            .await?;
        self.invalidate(id);
        match revoked {
            Some(s) => {
                self.record_revocations(ctx, &[s], reason).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub async fn revoke_user(
        &self,
        ctx: &RequestContext,
        user: &UserId,
        reason: RevokeReason,
        keep: Option<&SessionId>,
    ) -> CoreResult<usize> {
        let revoked = self
            .sessions
            .revoke_user_sessions(&ctx.tenant_id, user, reason, keep, self.now())
            .await?;
        for s in &revoked {
            self.invalidate(&s.id);
        }
        self.record_revocations(ctx, &revoked, reason).await?;
        Ok(revoked.len())
    }

    async fn record_revocations(
        &self,
        ctx: &RequestContext,
        revoked: &[Session],
        reason: RevokeReason,
    ) -> CoreResult<()> {
        if revoked.is_empty() {
            return Ok(());
        }
        let events = revoked
            .iter()
            .map(|s| {
                let mut e = self.event(
                    ctx,
                    AuditKind::SessionRevoked,
                    Some(s.user_id),
                    Some(s.id.clone()),
                );
                e.reason = Some(reason.as_str().into());
                e
            })
            .collect();
        self.record(events).await
    }

    // ---- queries -------------------------------------------------------------------------

    pub async fn user_sessions(&self, auth: &Authenticated) -> CoreResult<Vec<Session>> {
        let q = SessionQuery {
            user_id: Some(auth.session.user_id),
            state: Some(StateFilter::Active),
            limit: 1000,
        };
        Ok(self
            .sessions
            .find_sessions(&auth.session.tenant_id, &q, self.now())
            .await?)
    }

    pub async fn find_sessions(
        &self,
        tenant: &TenantId,
        q: &SessionQuery,
    ) -> CoreResult<Vec<Session>> {
        self.tenant(tenant).await?;
        Ok(self.sessions.find_sessions(tenant, q, self.now()).await?)
    }

    pub async fn get_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
    ) -> CoreResult<Option<Session>> {
        Ok(self.sessions.get_session(tenant, id).await?)
    }

    pub async fn find_audit(
        &self,
        tenant: &TenantId,
        q: &AuditQuery,
    ) -> CoreResult<Vec<AuditEvent>> {
        self.tenant(tenant).await?;
        Ok(self.identity.find_audit(tenant, q).await?)
    }

    pub async fn find_user(&self, tenant: &TenantId, username: &str) -> CoreResult<Option<User>> {
        self.tenant(tenant).await?;
        match normalize_username(username) {
            Some(u) => Ok(self.identity.find_user_by_username(tenant, &u).await?),
            None => Ok(None),
        }
    }

    pub async fn find_user_by_external_id(
        &self,
        tenant: &TenantId,
        external_id: &str,
    ) -> CoreResult<Option<User>> {
        self.tenant(tenant).await?;
        Ok(self
            .identity
            .find_user_by_external_id(tenant, external_id)
            .await?)
    }

    pub async fn get_user(&self, tenant: &TenantId, id: &UserId) -> CoreResult<Option<User>> {
        Ok(self.identity.get_user(tenant, id).await?)
    }

    // ---- keys ----------------------------------------------------------------------------

    pub fn jwks(&self) -> CoreResult<serde_json::Value> {
        Ok(self.keyring()?.jwks())
    }

    /// The algorithms of the published keys, signing key first.
    pub fn signing_algorithms(&self) -> CoreResult<Vec<String>> {
        let keyring = self.keyring()?;
        let mut algs: Vec<String> = keyring
            .stored()
            .iter()
            .filter(|k| k.state == KeyState::Signing)
            .map(|k| k.alg.clone())
            .collect();
        for k in keyring.stored() {
            if !algs.contains(&k.alg) {
                algs.push(k.alg.clone());
            }
        }
        Ok(algs)
    }

    pub fn keys(&self) -> CoreResult<Vec<StoredKey>> {
        Ok(self.keyring()?.stored().to_vec())
    }

    /// Rotates the keyring: the published next key starts signing at once.
    pub async fn rotate_keys(&self) -> CoreResult<Vec<StoredKey>> {
        let _one_at_a_time = self.rotation.lock().await;
        let rotated = self
            .keyring()?
            .rotated(&self.master, self.cfg.signing_alg, self.now())?;
        let keyring = Keyring::load(&self.master, rotated.clone())?;
        self.identity.replace_keys(rotated.clone()).await?;
        *self
            .keyring
            .write()
            .map_err(|_| CoreError::Internal("keyring lock poisoned".into()))? = Arc::new(keyring);
        Ok(rotated)
    }

    // ---- audit ---------------------------------------------------------------------------

    pub(crate) fn event(
        &self,
        ctx: &RequestContext,
        kind: AuditKind,
        user: Option<UserId>,
        session: Option<SessionId>,
    ) -> AuditEvent {
        AuditEvent {
            id: 0,
            kind,
            tenant_id: ctx.tenant_id.clone(),
            user_id: user,
            session_id: session,
            activity_id: ctx.activity_id.clone(),
            correlation_id: ctx.correlation_id.clone(),
            ip: ctx.ip.clone(),
            user_agent: ctx.user_agent.clone(),
            reason: None,
            at: self.now(),
        }
    }

    /// Stores audit events and emits each as a JSON log line (no token ever reaches either).
    pub(crate) async fn record(&self, events: Vec<AuditEvent>) -> CoreResult<()> {
        for e in &events {
            // Every lifecycle step passes here: logins and failures, refreshes, reuse,
            // revocations by reason, expirations, suspicious activity.
            metrics::counter!(
                "sessiond_events_total",
                "type" => e.kind.as_str(),
                "reason" => e.reason.clone().unwrap_or_default()
            )
            .increment(1);
            let user = e.user_id.map(|u| u.to_string());
            tracing::info!(
                target: "sessiond::audit",
                r#type = e.kind.as_str(),
                tenant = %e.tenant_id,
                user = user.as_deref(),
                session = e.session_id.as_ref().map(SessionId::as_str),
                activity = %e.activity_id,
                correlation = e.correlation_id.as_deref(),
                reason = e.reason.as_deref(),
                ip = e.ip.as_deref(),
                "audit"
            );
        }
        self.identity.append_audit(events.clone()).await?;
        self.alert(&events).await;
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
            if let Ok(Some((url, secret))) = self.webhook(&e.tenant_id).await {
                sink.deliver(&url, &secret, e);
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
