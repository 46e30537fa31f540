//! Step-up: re-authenticating an existing session (ASVS 3.3.4, 3.7.1), and the tenant's
//! `reauthMaxAge` for the self-service operations that end other sessions.

use super::*;

/// What the user proves again: the way the session was created.
pub enum Proof<'a> {
    Password(&'a str),
    Sso(&'a str),
}

impl Engine {
    /// Re-authenticates the session of `auth`: the user proves who they are again — with the
    /// password for a password session, a fresh SSO token of the same partner user for an SSO
    /// session — and gets a new session token for the same session with `auth_time` now. No
    /// new session and no new refresh token: later refreshes carry the new `auth_time`.
    /// Password guesses count towards the account's backoff as failed logins do.
    pub async fn reauthenticate(
        &self,
        ctx: &RequestContext,
        tp: &TenantPolicy,
        auth: &Authenticated,
        proof: Proof<'_>,
    ) -> CoreResult<Issued> {
        let session = &auth.session;
        let user = self
            .identity
            .get_user(&ctx.tenant_id, &session.user_id)
            .await?
            .ok_or(CoreError::SessionRevoked)?;
        match (proof, session.auth_method) {
            (Proof::Password(password), AuthMethod::Password) => {
                // The same account key as its logins: guesses here and there add up.
                let account = user.username.clone().unwrap_or_else(|| user.id.to_string());
                let attempt = self
                    .guard
                    .attempt(&ctx.tenant_id, &account, ctx.ip.as_deref());
                self.admit_password_attempt(ctx, tp, &attempt).await?;
                self.check_password(ctx, tp, &attempt, Some(user.clone()), password)
                    .await?;
            }
            (Proof::Sso(token), AuthMethod::Sso) => {
                self.verify_sso(ctx, tp, token, Some(&user)).await?;
            }
            (_, AuthMethod::Password) => {
                return Err(CoreError::InvalidRequest(
                    "this session was created with a password: re-authenticate with `password`"
                        .into(),
                ));
            }
            (_, AuthMethod::Sso) => {
                return Err(CoreError::InvalidRequest(
                    "this session was created with an SSO token: re-authenticate with `ssoToken`"
                        .into(),
                ));
            }
        }
        if user.status != UserStatus::Active {
            return Err(CoreError::AccountDisabled);
        }
        let now = self.now();
        let epoch = self.invalidation_epoch();
        let Some(updated) = self
            .sessions
            .reauthenticate(&ctx.tenant_id, &session.id, now)
            .await?
        else {
            // It ended while the proof was checked: say how.
            return Err(
                match self
                    .sessions
                    .get_session(&ctx.tenant_id, &session.id)
                    .await?
                {
                    Some(s) if !s.is_active_at(now) => self.inactive(ctx, &s, now).await,
                    _ => CoreError::SessionRevoked,
                },
            );
        };
        self.cache_session(updated.clone(), epoch);
        let mut e = self.event(
            ctx,
            AuditKind::SessionReauthenticated,
            Some(user.id),
            Some(updated.id.clone()),
        );
        e.reason = Some(
            match updated.auth_method {
                AuthMethod::Password => "pwd",
                AuthMethod::Sso => "sso",
            }
            .into(),
        );
        self.record(vec![e]).await?;
        self.issue(updated, &tp.policy, None, now)
    }

    /// Refuses an operation that ends other sessions when the tenant sets `reauthMaxAge` and
    /// the presented token's `auth_time` is older than that.
    pub(crate) async fn require_recent_auth(
        &self,
        ctx: &RequestContext,
        auth: &Authenticated,
    ) -> CoreResult<()> {
        let max = self.tenant(&ctx.tenant_id).await?.policy.reauth_max_age;
        if max > 0 && self.now() - auth.claims.auth_time > i64::from(max) {
            return Err(CoreError::ReauthenticationRequired);
        }
        Ok(())
    }
}
