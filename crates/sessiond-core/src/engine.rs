//! The session lifecycle: login, refresh, validation, logout and the administrative steps,
//! over the store traits, with the hot-path caches of DESIGN §10.

use crate::clock::Clock;
use crate::error::{CoreError, CoreResult};
use crate::password;
use crate::policy::Policy;
use crate::secret::{self, MasterKey};
use crate::token::{Claims, Keyring, TokenError};
use sessiond_store::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::Semaphore;

pub const SCOPE: &str = "session";

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub issuer: String,
    pub audience: String,
    pub token_cache_size: usize,
    pub session_cache_size: usize,
    /// How many Argon2id computations may run at once (the number of cores).
    pub hash_concurrency: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            audience: "sessiond".into(),
            token_cache_size: 100_000,
            session_cache_size: 100_000,
            hash_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
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

/// A verified token whose session is active.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: Arc<Claims>,
    pub session: Session,
}

/// What login and refresh hand back.
#[derive(Debug, Clone)]
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
    /// Verified claims by SHA-256 of the token: a token pays one signature check.
    verified: quick_cache::sync::Cache<[u8; 32], Arc<Claims>>,
    /// Session records; every revocation removes its entry before it is acknowledged.
    session_cache: quick_cache::sync::Cache<SessionId, Session>,
    /// Bumped by every invalidation, so a read that raced one never caches stale state.
    invalidations: AtomicU64,
    tenants: quick_cache::sync::Cache<TenantId, Arc<TenantPolicy>>,
    hashing: Semaphore,
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
            stored = Keyring::generate(&master, clock.now())?;
            identity.replace_keys(stored.clone()).await?;
        }
        let keyring = Keyring::load(&master, stored)?;
        Ok(Self {
            verified: quick_cache::sync::Cache::new(cfg.token_cache_size.max(1)),
            session_cache: quick_cache::sync::Cache::new(cfg.session_cache_size.max(1)),
            tenants: quick_cache::sync::Cache::new(10_000),
            hashing: Semaphore::new(cfg.hash_concurrency.max(1)),
            keyring: RwLock::new(Arc::new(keyring)),
            sso: crate::sso::SsoVerifier::default(),
            invalidations: AtomicU64::new(0),
            sessions,
            identity,
            clock,
            master,
            cfg,
        })
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

    pub async fn ping(&self) -> CoreResult<()> {
        Ok(self.sessions.ping().await?)
    }

    // ---- tenants -------------------------------------------------------------------------

    pub async fn tenant(&self, id: &TenantId) -> CoreResult<Arc<TenantPolicy>> {
        if let Some(t) = self.tenants.get(id) {
            return Ok(t);
        }
        let tenant = self
            .identity
            .get_tenant(id)
            .await?
            .ok_or(CoreError::UnknownTenant)?;
        let policy = Policy::effective(tenant.profile, &tenant.overrides)?;
        let tp = Arc::new(TenantPolicy { tenant, policy });
        self.tenants.insert(id.clone(), Arc::clone(&tp));
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

    /// Applies the given overrides on top of the tenant's current ones.
    pub async fn patch_policy(&self, id: &TenantId, patch: PolicyOverrides) -> CoreResult<Policy> {
        let current = self.tenant(id).await?;
        let mut o = current.tenant.overrides.clone();
        macro_rules! merge {
            ($($f:ident),*) => { $( if patch.$f.is_some() { o.$f = patch.$f; } )* };
        }
        merge!(
            session_token_ttl,
            refresh_tokens,
            refresh_token_ttl,
            absolute_ttl,
            idle_ttl,
            max_sessions_per_user,
            on_limit,
            required_headers,
            refresh_grace_seconds,
            https_only
        );
        let policy = Policy::effective(current.tenant.profile, &o)?;
        self.identity
            .set_tenant_policy(id, o)
            .await?
            .ok_or(CoreError::UnknownTenant)?;
        self.tenants.remove(id);
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
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| CoreError::Internal("hashing pool closed".into()))?;
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
        if username.is_empty() || username.len() > 256 || username.chars().any(char::is_control) {
            return Err(CoreError::InvalidRequest(
                "username must be 1 to 256 characters without control characters".into(),
            ));
        }
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
        let user = self
            .identity
            .find_user_by_username(&ctx.tenant_id, username)
            .await?;
        let stored = user.as_ref().and_then(|u| u.password_hash.clone());
        let pw = password.to_owned();
        let ok = self
            .off_thread(move || password::verify_password(&pw, stored.as_deref()))
            .await?;
        let user = match user {
            Some(u) if ok => u,
            u => {
                let mut e = self.event(ctx, AuditKind::LoginFailed, u.map(|u| u.id), None);
                e.reason = Some("invalid_credentials".into());
                self.record(vec![e]).await?;
                return Err(CoreError::InvalidCredentials);
            }
        };
        if user.status != UserStatus::Active {
            let mut e = self.event(ctx, AuditKind::LoginFailed, Some(user.id), None);
            e.reason = Some("account_disabled".into());
            self.record(vec![e]).await?;
            return Err(CoreError::AccountDisabled);
        }
        let issued = self
            .create_session(ctx, tp, &user, AuthMethod::Password, device)
            .await?;
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
            id: secret::new_session_id()?,
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
            let token = secret::new_secret()?;
            let expires_at =
                (now + i64::from(p.refresh_token_ttl)).min(session.absolute_expires_at);
            Some((token, expires_at))
        } else {
            None
        };
        let new = NewSession {
            session: session.clone(),
            refresh: refresh.as_ref().map(|(t, exp)| NewRefreshToken {
                hash: secret::hash_token(t),
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
        let successor = secret::new_secret()?;
        let successor_expires = now + i64::from(p.refresh_token_ttl);
        let epoch = self.invalidations.load(Ordering::SeqCst);
        let outcome = self
            .sessions
            .rotate_refresh(Rotation {
                tenant_id: ctx.tenant_id.clone(),
                presented: secret::hash_token(presented),
                successor: NewRefreshToken {
                    hash: secret::hash_token(&successor),
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
                self.record(vec![e]).await?;
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
        if let Some(c) = self.verified.get(&key) {
            return if now < c.exp {
                Ok(c)
            } else {
                Err(CoreError::TokenExpired)
            };
        }
        let claims = self
            .keyring()?
            .verify(token, &self.cfg.issuer, &self.cfg.audience, now)
            .map_err(|e| match e {
                TokenError::Invalid => CoreError::TokenInvalid,
                TokenError::Expired => CoreError::TokenExpired,
            })?;
        let claims = Arc::new(claims);
        self.verified.insert(key, Arc::clone(&claims));
        Ok(claims)
    }

    /// The stateful check of every authenticated request: token, tenant, live session. Counts
    /// as activity for the idle timeout (written to the store only when it has moved enough).
    pub async fn authenticate(
        &self,
        ctx: &RequestContext,
        token: &str,
    ) -> CoreResult<Authenticated> {
        let claims = self.verify_token(token)?;
        if claims.tid != ctx.tenant_id {
            return Err(CoreError::TenantMismatch);
        }
        let now = self.now();
        let epoch = self.invalidations.load(Ordering::SeqCst);
        let mut session = self.session(&ctx.tenant_id, &claims.sid, epoch).await?;
        if session.user_id != claims.sub {
            return Err(CoreError::TokenInvalid);
        }
        if !session.is_active_at(now) {
            return Err(self.inactive(ctx, &session, now).await);
        }
        if now - session.last_seen_at >= touch_interval(session.idle_ttl) {
            let epoch = self.invalidations.load(Ordering::SeqCst);
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
        let session = match self.session_cache.get(id) {
            Some(s) => s,
            None => {
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
        let id = s.id.clone();
        self.session_cache.insert(id.clone(), s);
        if self.invalidations.load(Ordering::SeqCst) != epoch {
            self.session_cache.remove(&id);
        }
    }

    pub(crate) fn invalidation_epoch(&self) -> u64 {
        self.invalidations.load(Ordering::SeqCst)
    }

    pub(crate) fn invalidate(&self, id: &SessionId) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.session_cache.remove(id);
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

    pub async fn get_user(&self, tenant: &TenantId, id: &UserId) -> CoreResult<Option<User>> {
        Ok(self.identity.get_user(tenant, id).await?)
    }

    // ---- keys ----------------------------------------------------------------------------

    pub fn jwks(&self) -> CoreResult<serde_json::Value> {
        Ok(self.keyring()?.jwks())
    }

    pub fn keys(&self) -> CoreResult<Vec<StoredKey>> {
        Ok(self.keyring()?.stored().to_vec())
    }

    /// Rotates the keyring: the published next key starts signing at once.
    pub async fn rotate_keys(&self) -> CoreResult<Vec<StoredKey>> {
        let rotated = self.keyring()?.rotated(&self.master, self.now())?;
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
            tracing::info!(
                target: "sessiond::audit",
                r#type = e.kind.as_str(),
                tenant = %e.tenant_id,
                user = ?e.user_id,
                session = e.session_id.as_ref().map(SessionId::as_str),
                activity = %e.activity_id,
                correlation = e.correlation_id.as_deref(),
                reason = e.reason.as_deref(),
                ip = e.ip.as_deref(),
                "audit"
            );
        }
        Ok(self.identity.append_audit(events).await?)
    }
}

/// How far `last_seen` may lag before it is written: 1/20 of the idle timeout, at most 60 s.
fn touch_interval(idle_ttl: Option<u32>) -> i64 {
    idle_ttl.map_or(60, |t| i64::from(t / 20).clamp(1, 60))
}
