//! Ending sessions (logout, logout-all, revocations) and the session queries.

use super::*;

/// The janitor records timeouts this many seconds late (clock skew between nodes).
pub const SWEEP_LAG: i64 = 30;

/// The audit reason of a recorded timeout.
pub(crate) fn timeout_reason(s: &Session) -> &'static str {
    if s.idles_out_first() {
        "idle_timeout"
    } else {
        "absolute_timeout"
    }
}

impl Engine {
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
        // The token's subject must own the session it names (a session already gone is
        // fine: logout stays idempotent).
        if let Some(s) = self
            .sessions
            .get_session(&ctx.tenant_id, &claims.sid)
            .await?
            && s.user_id != claims.sub
        {
            return Err(CoreError::TokenInvalid);
        }
        self.revoke(ctx, &claims.sid, RevokeReason::Logout).await?;
        Ok(())
    }

    pub async fn logout_all(
        &self,
        ctx: &RequestContext,
        auth: &Authenticated,
    ) -> CoreResult<usize> {
        self.require_recent_auth(ctx, auth).await?;
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
                if *id != auth.session.id {
                    self.require_recent_auth(ctx, auth).await?;
                }
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
        self.require_recent_auth(ctx, auth).await?;
        self.revoke_user(
            ctx,
            &auth.session.user_id,
            RevokeReason::LogoutAll,
            Some(&auth.session.id),
        )
        .await
    }

    /// Records the timeouts of up to `batch` sessions nobody presented since they timed out
    /// (the janitor's sweep): each gets its `session_expired` audit event and change-log entry
    /// (so relying parties hear of it); returns how many.
    pub async fn expire_timed_out(&self, batch: usize) -> CoreResult<usize> {
        // A little behind this node's clock: a node whose clock runs ahead must not end
        // sessions the others still consider alive.
        let now = self.now() - SWEEP_LAG;
        let expired = self.sessions.expire_sessions(now, batch).await?;
        let mut events = Vec::with_capacity(expired.len());
        for s in &expired {
            self.invalidate(&s.id);
            events.push(self.background_event(
                AuditKind::SessionExpired,
                &s.tenant_id,
                s.user_id,
                &s.id,
                "janitor".into(),
                timeout_reason(s).into(),
            ));
        }
        if !events.is_empty() {
            self.record(events).await?;
        }
        Ok(expired.len())
    }

    /// Revokes one session by id (idempotent); true if this call revoked it.
    pub async fn revoke(
        &self,
        ctx: &RequestContext,
        id: &SessionId,
        reason: RevokeReason,
    ) -> CoreResult<bool> {
        let audit = self.revocation_audit(ctx, reason);
        let revoked = self
            .sessions
            .revoke_session(&ctx.tenant_id, id, reason, self.now(), audit.for_store())
            .await?;
        self.invalidate(id);
        self.record_write(&audit, revoked.as_slice()).await?;
        Ok(revoked.is_some())
    }

    pub async fn revoke_user(
        &self,
        ctx: &RequestContext,
        user: &UserId,
        reason: RevokeReason,
        keep: Option<&SessionId>,
    ) -> CoreResult<usize> {
        let audit = self.revocation_audit(ctx, reason);
        let revoked = self
            .sessions
            .revoke_user_sessions(
                &ctx.tenant_id,
                user,
                reason,
                keep,
                self.now(),
                audit.for_store(),
            )
            .await?;
        for s in &revoked {
            self.invalidate(&s.id);
        }
        self.record_write(&audit, &revoked[..]).await?;
        Ok(revoked.len())
    }

    /// A `session_revoked` event for each session a revocation ended.
    fn revocation_audit(
        &self,
        ctx: &RequestContext,
        reason: RevokeReason,
    ) -> WriteAudit<[Session]> {
        let template = self.event(ctx, AuditKind::SessionRevoked, None, None);
        self.write_audit(move |revoked: &[Session]| {
            revoked
                .iter()
                .map(|s| {
                    let why = Some(reason.as_str());
                    about(&template, AuditKind::SessionRevoked, s.user_id, &s.id, why)
                })
                .collect()
        })
    }

    pub async fn user_sessions(&self, auth: &Authenticated) -> CoreResult<Vec<Session>> {
        let q = SessionQuery {
            user_id: Some(auth.session.user_id),
            state: Some(StateFilter::Active),
            limit: 1000,
            before: None,
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
}
