//! Login and refresh: session creation under the tenant's limit, token issuance, refresh-token rotation with reuse detection.

use super::*;

impl Engine {
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
        let attempt = self
            .guard
            .attempt(&ctx.tenant_id, account_key, ctx.ip.as_deref());
        self.admit_password_attempt(ctx, tp, &attempt).await?;
        let user = match &account {
            Some(u) => {
                self.identity
                    .find_user_by_username(&ctx.tenant_id, u)
                    .await?
            }
            None => None,
        };
        let user = self
            .check_password(ctx, tp, &attempt, user, password)
            .await?;
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

    /// Refuses a password attempt while its account backs off or exceeds its rate.
    pub(crate) async fn admit_password_attempt(
        &self,
        ctx: &RequestContext,
        tp: &TenantPolicy,
        attempt: &crate::guard::Attempt,
    ) -> CoreResult<()> {
        let now = self.now();
        let free = tp.policy.login_backoff_after;
        if let Err(retry_after) = self.guard.check(attempt, free, now).await? {
            let mut e = self.event(ctx, AuditKind::LoginFailed, None, None);
            e.reason = Some("backoff".into());
            self.record(vec![e]).await?;
            return Err(CoreError::RateLimited { retry_after });
        }
        let per_minute = tp.policy.login_rate_per_minute;
        if let Err(retry_after) = self.guard.rate(attempt, per_minute, now).await? {
            let mut e = self.event(ctx, AuditKind::LoginFailed, None, None);
            e.reason = Some("rate_limited".into());
            self.record(vec![e]).await?;
            return Err(CoreError::RateLimited { retry_after });
        }
        Ok(())
    }

    /// Verifies `password` against `user`'s hash (an unknown user costs the same); a failure
    /// counts towards the account's backoff and is audited, a success clears it.
    pub(crate) async fn check_password(
        &self,
        ctx: &RequestContext,
        tp: &TenantPolicy,
        attempt: &crate::guard::Attempt,
        user: Option<User>,
        password: &str,
    ) -> CoreResult<User> {
        let free = tp.policy.login_backoff_after;
        let stored = user.as_ref().and_then(|u| u.password_hash.clone());
        let ok = self.verify_password(password, stored).await?;
        let user = match user {
            Some(u) if ok => u,
            u => {
                let user_id = u.map(|u| u.id);
                let mut e = self.event(ctx, AuditKind::LoginFailed, user_id, None);
                e.reason = Some("invalid_credentials".into());
                let mut events = vec![e];
                let failures = self.guard.failed(attempt, self.now()).await?;
                let ceiling = crate::guard::account_ceiling(free);
                if free > 0
                    && (failures.from_client == u64::from(free) || failures.account == ceiling)
                {
                    let mut s = self.event(ctx, AuditKind::SuspiciousActivity, user_id, None);
                    s.reason = Some("failure_burst".into());
                    events.push(s);
                }
                self.record(events).await?;
                return Err(CoreError::InvalidCredentials);
            }
        };
        self.guard.succeeded(attempt, self.now()).await?;
        Ok(user)
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
            auth_time: now,
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
        let template = self.event(ctx, AuditKind::SessionCreated, Some(user.id), None);
        let (user_id, session_id) = (user.id, session.id.clone());
        let audit = self.write_audit(move |evicted: &[SessionId]| {
            let mut events: Vec<AuditEvent> = evicted
                .iter()
                .map(|id| {
                    let reason = Some(RevokeReason::Displaced.as_str());
                    about(&template, AuditKind::SessionRevoked, user_id, id, reason)
                })
                .collect();
            for kind in [AuditKind::LoginSucceeded, AuditKind::SessionCreated] {
                events.push(about(&template, kind, user_id, &session_id, None));
            }
            events
        });
        let evicted = match self
            .sessions
            .create_session(new, p.session_limit(), now, audit.for_store())
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
        for id in &evicted {
            self.invalidate(id);
        }
        self.record_write(&audit, &evicted[..]).await?;
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
            auth_time: session.auth_time,
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

    /// The session a refresh token belongs to, without rotating it (`None`: no such token).
    /// Cookie mode checks it against the session whose CSRF token was shown *before* the
    /// rotation: a refresh cookie sent beside another session's cookies must not be spent.
    pub async fn refresh_token_session(&self, presented: &str) -> CoreResult<Option<SessionId>> {
        if presented.is_empty() || presented.len() > 256 {
            return Ok(None);
        }
        let hash = secret::hash_refresh(presented);
        Ok(self
            .sessions
            .get_refresh(&hash)
            .await?
            .map(|r| r.session_id))
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
        let template = self.event(ctx, AuditKind::SessionRefreshed, None, None);
        let audit = self.write_audit(move |o: &RotateOutcome| refresh_events(&template, o));
        let outcome = self
            .sessions
            .rotate_refresh(
                Rotation {
                    tenant_id: ctx.tenant_id.clone(),
                    presented: presented_hash,
                    successor: NewRefreshToken {
                        hash: secret::hash_refresh(&successor),
                        expires_at: successor_expires,
                    },
                    sealed_successor: secret::seal_successor(presented, &successor)?,
                    grace_seconds: p.refresh_grace_seconds,
                    now,
                },
                audit.for_store(),
            )
            .await?;
        if let RotateOutcome::Reused { session, .. } = &outcome {
            self.invalidate(&session.id);
        }
        self.record_write(&audit, &outcome).await?;
        match outcome {
            RotateOutcome::Rotated { session } => {
                self.cache_session(session.clone(), epoch);
                let exp = successor_expires.min(session.absolute_expires_at);
                self.issue(session, p, Some((successor, exp)), now)
            }
            RotateOutcome::Replayed {
                session,
                sealed_successor,
            } => {
                let again = secret::open_successor(presented, &sealed_successor)
                    .ok_or(CoreError::RefreshTokenInvalid)?;
                let exp = successor_expires.min(session.absolute_expires_at);
                self.issue(session, p, Some((again, exp)), now)
            }
            RotateOutcome::Reused { .. } => Err(CoreError::RefreshTokenReused),
            RotateOutcome::SessionInactive { session } => {
                Err(self.inactive(ctx, &session, now).await)
            }
            RotateOutcome::Invalid => Err(CoreError::RefreshTokenInvalid),
        }
    }
}

/// The audit events of a refresh token's rotation, by outcome (`template`: an event of the
/// request, whose address and user agent are compared with the session's). An inactive
/// session's are recorded by `Engine::inactive`; an invalid token has none.
fn refresh_events(template: &AuditEvent, outcome: &RotateOutcome) -> Vec<AuditEvent> {
    let on = |s: &Session, kind, reason| about(template, kind, s.user_id, &s.id, reason);
    match outcome {
        RotateOutcome::Rotated { session } => {
            let mut events = vec![on(session, AuditKind::SessionRefreshed, None)];
            let moved = |now: &Option<String>, then: &Option<String>| {
                now.is_some() && then.is_some() && now != then
            };
            for (changed, reason) in [
                (
                    moved(&template.ip, &session.device.ip),
                    "refresh_from_new_address",
                ),
                (
                    moved(&template.user_agent, &session.device.user_agent),
                    "refresh_from_new_user_agent",
                ),
            ] {
                if changed {
                    events.push(on(session, AuditKind::SuspiciousActivity, Some(reason)));
                }
            }
            events
        }
        RotateOutcome::Replayed { session, .. } => {
            vec![on(
                session,
                AuditKind::SessionRefreshed,
                Some("grace_replay"),
            )]
        }
        RotateOutcome::Reused { session, revoked } => {
            let mut events = vec![on(session, AuditKind::RefreshTokenReused, None)];
            if *revoked {
                let reason = Some(RevokeReason::ReuseDetected.as_str());
                events.push(on(session, AuditKind::SessionRevoked, reason));
            }
            events.push(on(
                session,
                AuditKind::SuspiciousActivity,
                Some("refresh_token_reuse"),
            ));
            events
        }
        RotateOutcome::SessionInactive { .. } | RotateOutcome::Invalid => Vec::new(),
    }
}
