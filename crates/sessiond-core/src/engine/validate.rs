//! Validation: token verification (once per unique token), the stateful check of every request, and the session cache.

use super::*;

impl Engine {
    pub(crate) fn drop_caches(&self) {
        self.session_cache.clear();
        self.tenants.clear();
        self.clients.clear();
    }

    pub(crate) fn invalidate_tenant(&self, id: &TenantId) {
        self.tenants.invalidate(id);
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
        let verify = |keyring: &Keyring| {
            keyring
                .verify(token, &self.cfg.issuer, &self.cfg.audience, now)
                .map(Arc::new)
                .map_err(|e| match e {
                    TokenError::Invalid => CoreError::TokenInvalid,
                    TokenError::Expired => CoreError::TokenExpired,
                })
        };
        let keyring = self.keyring()?;
        let claims = verify(&keyring)?;
        self.verified
            .insert(key, Verified::Session(Arc::clone(&claims)));
        // The keyring changed meanwhile (a key may have been revoked, and the cache emptied
        // before this entry went in): take the entry back and answer by the new keyring.
        let current = self.keyring()?;
        if !Arc::ptr_eq(&keyring, &current) {
            self.verified.remove(&key);
            return verify(&current);
        }
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
            // Touch, then read the record back rather than trusting the copy in hand: the
            // touch does nothing to a session that ended meanwhile (on another node, or by
            // a timeout recorded by a node whose clock is ahead), and re-caching the old copy
            // would renew its age. Cached under the epoch taken before the first read, so a
            // revocation since keeps it out.
            self.sessions
                .touch_session(&ctx.tenant_id, &session.id, now)
                .await?;
            session = Arc::new(
                self.sessions
                    .get_session(&ctx.tenant_id, &session.id)
                    .await?
                    .ok_or(CoreError::TokenInvalid)?,
            );
            self.cache_shared(Arc::clone(&session), epoch);
            if !session.is_active_at(now) {
                return Err(self.inactive(ctx, &session, now).await);
            }
        }
        Ok(Authenticated { claims, session })
    }

    pub(crate) async fn session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        epoch: u64,
    ) -> CoreResult<Arc<Session>> {
        let now = self.now();
        let cached = self.session_cache.get(id).filter(|_| self.caches_trusted());
        let session = match cached {
            // An ended session never comes back; an active one that has timed out by its
            // cached last-seen time may have been used on another node since: read it again.
            Some(s) if s.state != SessionState::Active || s.is_active_at(now) => s,
            _ => {
                let s = Arc::new(
                    self.sessions
                        .get_session(tenant, id)
                        .await?
                        .ok_or(CoreError::TokenInvalid)?,
                );
                self.cache_shared(Arc::clone(&s), epoch);
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
        self.cache_shared(Arc::new(s), epoch);
    }

    fn cache_shared(&self, s: Arc<Session>, epoch: u64) {
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
                    let mut e = self.event(
                        ctx,
                        AuditKind::SessionExpired,
                        Some(s.user_id),
                        Some(s.id.clone()),
                    );
                    e.reason = Some(super::revoke::timeout_reason(s).into());
                    let audit = self.write_audit(move |recorded: &bool| {
                        recorded.then(|| e.clone()).into_iter().collect()
                    });
                    let marked = self
                        .sessions
                        .mark_expired(&ctx.tenant_id, &s.id, now, audit.for_store())
                        .await;
                    match marked {
                        Ok(recorded) => {
                            if recorded {
                                self.invalidate(&s.id);
                            }
                            if let Err(err) = self.record_write(&audit, &recorded).await {
                                return err;
                            }
                        }
                        Err(err) => return err.into(),
                    }
                }
                CoreError::SessionExpired
            }
        }
    }
}
