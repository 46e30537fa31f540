//! What partner backends and trusted services do: SSO-token sessions, partner logout with a
//! shared secret, service clients, internal access tokens and token introspection.

use crate::engine::{Engine, Issued, RequestContext, TenantPolicy, Verified, time_ok};
use crate::error::{CoreError, CoreResult};
use crate::outbound::Outbound;
use crate::secret;
use crate::sso;
use crate::token::InternalClaims;
use serde::Deserialize;
use sessiond_store::*;
use std::sync::Arc;

/// Internal access tokens live this long at most (seconds), and never past their session.
pub const INTERNAL_TOKEN_TTL: i64 = 300;
pub const INTERNAL_SCOPE: &str = "internal";

/// SSO settings as an operator gives them (exactly one trust anchor; a verification
/// endpoint comes with the secret sessiond presents to it).
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoConfig {
    pub issuer: Option<String>,
    pub audience: String,
    pub hs256_secret: Option<String>,
    pub public_key_pem: Option<String>,
    pub jwks_url: Option<String>,
    pub verify_url: Option<String>,
    pub verify_secret: Option<String>,
}

impl std::fmt::Debug for SsoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks_url", &self.jwks_url)
            .field("verify_url", &self.verify_url)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct InternalToken {
    pub token: String,
    pub expires_in: i64,
    pub audience: String,
    pub session_id: SessionId,
}

fn valid_client_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl Engine {
    // ---- SSO -----------------------------------------------------------------------------

    pub async fn set_sso(&self, tenant: &TenantId, c: SsoConfig) -> CoreResult<()> {
        let tp = self.tenant(tenant).await?;
        let bad = |m: &str| Err(CoreError::InvalidRequest(m.to_owned()));
        let anchors = [
            c.hs256_secret.is_some(),
            c.public_key_pem.is_some(),
            c.jwks_url.is_some(),
            c.verify_url.is_some(),
        ];
        if anchors.iter().filter(|a| **a).count() != 1 {
            return bad("give exactly one of hs256Secret, publicKeyPem, jwksUrl and verifyUrl");
        }
        if c.verify_url.is_some() != c.verify_secret.is_some() {
            return bad("verifyUrl and verifySecret go together");
        }
        if c.verify_secret
            .as_ref()
            .is_some_and(|s| s.len() < 32 || s.len() > 1024 || s.chars().any(char::is_control))
        {
            return bad("verifySecret must be 32 to 1024 printable characters");
        }
        if c.audience.is_empty() || c.audience.len() > 256 {
            return bad("audience must be 1 to 256 characters");
        }
        if c.hs256_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return bad("hs256Secret must be at least 32 bytes");
        }
        if c.public_key_pem
            .as_deref()
            .is_some_and(|p| sso::pem_key(p).is_none())
        {
            return bad("publicKeyPem must be an RSA, P-256 or Ed25519 public key in PEM");
        }
        let outbound = Outbound::for_profile(tp.tenant.profile);
        for (name, url) in [("jwksUrl", &c.jwks_url), ("verifyUrl", &c.verify_url)] {
            if let Some(url) = url {
                if url.len() > 2048 {
                    return bad(&format!("{name} must be at most 2048 characters"));
                }
                let checked = if name == "verifyUrl" {
                    outbound.check_confidential_url(url)
                } else {
                    outbound.check_url(url)
                };
                checked.or_else(|why| bad(&format!("{name} is refused: {why}")))?;
            }
        }
        let sealed = c
            .hs256_secret
            .map(|s| self.master.seal(sso_aad(tenant).as_bytes(), s.as_bytes()))
            .transpose()?;
        let sealed_verify = c
            .verify_secret
            .map(|s| {
                self.master
                    .seal(sso_verify_aad(tenant).as_bytes(), s.as_bytes())
            })
            .transpose()?;
        let settings = SsoSettings {
            issuer: c.issuer,
            audience: c.audience,
            sealed_hs256_secret: sealed,
            public_key_pem: c.public_key_pem,
            jwks_url: c.jwks_url,
            verify_url: c.verify_url,
            sealed_verify_secret: sealed_verify,
            updated_at: self.now(),
        };
        Ok(self.identity.set_sso(tenant, settings).await?)
    }

    /// Verifies a partner's SSO token against the tenant's trust and spends its `jti` (an SSO
    /// token is good for one login or one re-authentication); failures are audited.
    ///
    /// With `for_user` (a re-authentication), a token of another partner user is refused
    /// before it is spent: one app cannot burn another user's token.
    pub(crate) async fn verify_sso(
        &self,
        ctx: &RequestContext,
        tp: &TenantPolicy,
        token: &str,
        for_user: Option<&User>,
    ) -> CoreResult<crate::sso::SsoClaims> {
        let now = self.now();
        let settings = self
            .identity
            .get_sso(&ctx.tenant_id)
            .await?
            .ok_or(CoreError::SsoTokenInvalid)?;
        // One trust anchor, and the secret that goes with it: never the HS256 key to a
        // verification endpoint (a settings row an older node half-replaced holds both).
        let anchors = [
            settings.sealed_hs256_secret.is_some(),
            settings.public_key_pem.is_some(),
            settings.jwks_url.is_some(),
            settings.verify_url.is_some(),
        ];
        if anchors.iter().filter(|a| **a).count() != 1
            || settings.verify_url.is_some() != settings.sealed_verify_secret.is_some()
        {
            tracing::error!(tenant = %ctx.tenant_id, "the tenant's SSO trust is ambiguous: set it again");
            return Err(CoreError::SsoTokenInvalid);
        }
        let sealed = match (
            &settings.sealed_hs256_secret,
            &settings.sealed_verify_secret,
        ) {
            (Some(s), None) => Some((sso_aad(&ctx.tenant_id), s)),
            (None, Some(s)) => Some((sso_verify_aad(&ctx.tenant_id), s)),
            _ => None,
        };
        let secret = sealed
            .map(|(aad, s)| {
                self.master.open(aad.as_bytes(), s).ok_or_else(|| {
                    CoreError::Internal("the master key does not open the SSO secret".into())
                })
            })
            .transpose()?;
        let claims = match self
            .sso
            .verify(
                &settings,
                secret.as_deref(),
                token,
                now,
                Outbound::for_profile(tp.tenant.profile),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let mut ev = self.event(ctx, AuditKind::LoginFailed, None, None);
                ev.reason = Some(
                    match e {
                        CoreError::SsoUnavailable { .. } => "sso_unavailable",
                        _ => "sso_token_invalid",
                    }
                    .into(),
                );
                self.record(vec![ev]).await?;
                return Err(e);
            }
        };
        if let Some(user) = for_user
            && user.external_id.as_deref() != Some(claims.sub.as_str())
        {
            let mut e = self.event(ctx, AuditKind::LoginFailed, Some(user.id), None);
            e.reason = Some("sso_subject_mismatch".into());
            self.record(vec![e]).await?;
            return Err(CoreError::SsoTokenInvalid);
        }
        if !self
            .sessions
            .consume_nonce(
                &ctx.tenant_id,
                &format!("sso:{}", claims.jti),
                claims.exp,
                now,
            )
            .await?
        {
            let mut ev = self.event(ctx, AuditKind::SuspiciousActivity, None, None);
            ev.reason = Some("sso_token_replayed".into());
            self.record(vec![ev]).await?;
            return Err(CoreError::SsoTokenInvalid);
        }
        Ok(claims)
    }

    /// Exchanges a partner's SSO token for a session; provisions the user on first sight of
    /// the token's `sub` (the user's external id).
    pub async fn sso_login(
        &self,
        ctx: &RequestContext,
        tp: &TenantPolicy,
        token: &str,
        device: DeviceInfo,
    ) -> CoreResult<Issued> {
        let claims = self.verify_sso(ctx, tp, token, None).await?;
        let user = self.sso_user(&ctx.tenant_id, &claims.sub).await?;
        if user.status != UserStatus::Active {
            let mut e = self.event(ctx, AuditKind::LoginFailed, Some(user.id), None);
            e.reason = Some("account_disabled".into());
            self.record(vec![e]).await?;
            return Err(CoreError::AccountDisabled);
        }
        self.create_session(ctx, tp, &user, AuthMethod::Sso, device)
            .await
    }

    /// The user with this external id, created if there is none (a concurrent first login
    /// that loses the race reads the winner's user).
    async fn sso_user(&self, tenant: &TenantId, external_id: &str) -> CoreResult<User> {
        if let Some(u) = self
            .identity
            .find_user_by_external_id(tenant, external_id)
            .await?
        {
            return Ok(u);
        }
        let user = User {
            id: uuid::Uuid::new_v4(),
            tenant_id: tenant.clone(),
            customer_id: uuid::Uuid::new_v4(),
            username: None,
            password_hash: None,
            external_id: Some(external_id.to_owned()),
            status: UserStatus::Active,
            created_at: self.now(),
            role: None,
        };
        match self.identity.create_user(user.clone()).await {
            Ok(()) => Ok(user),
            Err(StoreError::Conflict) => self
                .identity
                .find_user_by_external_id(tenant, external_id)
                .await?
                .ok_or_else(|| CoreError::Internal("provisioned user vanished".into())),
            Err(e) => Err(e.into()),
        }
    }

    // ---- partner secrets and partner logout ----------------------------------------------

    /// A new partner secret for a tenant: `(secretId, secret)`; the secret is shown only now.
    pub async fn create_partner_secret(&self, tenant: &TenantId) -> CoreResult<(String, String)> {
        self.tenant(tenant).await?;
        let id = secret::b64(&secret::random_bytes::<12>()?);
        let full = format!("{id}.{}", secret::new_secret()?);
        self.identity
            .create_partner_secret(PartnerSecret {
                secret_id: id.clone(),
                tenant_id: tenant.clone(),
                hash: secret::hash_token(&full),
                created_at: self.now(),
            })
            .await?;
        Ok((id, full))
    }

    pub async fn revoke_partner_secret(&self, tenant: &TenantId, id: &str) -> CoreResult<()> {
        if self.identity.delete_partner_secret(tenant, id).await? {
            Ok(())
        } else {
            Err(CoreError::NotFound("partner secret"))
        }
    }

    /// The tenant a partner secret belongs to; the secret is compared in constant time.
    pub async fn partner_tenant(&self, presented: &str) -> CoreResult<TenantId> {
        let id = presented
            .split_once('.')
            .map(|(id, _)| id)
            .ok_or(CoreError::InvalidPartnerSecret)?;
        if id.len() > 64 {
            return Err(CoreError::InvalidPartnerSecret);
        }
        let stored = self.identity.get_partner_secret(id).await?;
        let presented_hash = secret::hash_token(presented);
        match stored {
            Some(s) if secret::constant_time_eq(&s.hash.0, &presented_hash.0) => Ok(s.tenant_id),
            _ => Err(CoreError::InvalidPartnerSecret),
        }
    }

    /// Revokes every session of a user named by sessiond user id or by the partner's external
    /// id (`partner_logout`). An unknown user has nothing to revoke: 0.
    pub async fn partner_logout(&self, ctx: &RequestContext, user_ref: &str) -> CoreResult<usize> {
        let by_id = match uuid::Uuid::try_parse(user_ref) {
            Ok(id) => self.identity.get_user(&ctx.tenant_id, &id).await?,
            Err(_) => None,
        };
        let user = match by_id {
            Some(u) => Some(u),
            None => {
                self.identity
                    .find_user_by_external_id(&ctx.tenant_id, user_ref)
                    .await?
            }
        };
        match user {
            Some(u) => {
                self.revoke_user(ctx, &u.id, RevokeReason::PartnerLogout, None)
                    .await
            }
            None => Ok(0),
        }
    }

    // ---- service clients -----------------------------------------------------------------

    /// A new service client: `(clientId, clientSecret)`; the secret is shown only now. With
    /// a `backchannel_logout_uri` (a URL the tenant's profile may reach) it is told of every
    /// end of a session of the tenant (see [`crate::events`]).
    pub async fn create_client(
        &self,
        tenant: &TenantId,
        client_id: Option<String>,
        audience: Option<String>,
        backchannel_logout_uri: Option<String>,
    ) -> CoreResult<(String, String)> {
        let tp = self.tenant(tenant).await?;
        if let Some(uri) = &backchannel_logout_uri {
            if uri.len() > 2048 || !(uri.starts_with("https://") || uri.starts_with("http://")) {
                return Err(CoreError::InvalidRequest(
                    "backchannelLogoutUri must be an http(s) URL of at most 2048 characters".into(),
                ));
            }
            crate::outbound::Outbound::for_profile(tp.tenant.profile)
                .check_confidential_url(uri)
                .map_err(|why| {
                    CoreError::InvalidRequest(format!("backchannelLogoutUri is refused: {why}"))
                })?;
        }
        let client_id = match client_id {
            Some(c) if valid_client_id(&c) => c,
            Some(_) => {
                return Err(CoreError::InvalidRequest(
                    "clientId must be 1 to 64 characters of A-Z, a-z, 0-9, -, _ and .".into(),
                ));
            }
            None => format!("client-{}", secret::b64(&secret::random_bytes::<9>()?)),
        };
        let audience = audience.unwrap_or_else(|| client_id.clone());
        if audience.is_empty() || audience.len() > 256 || audience == self.config().audience {
            return Err(CoreError::InvalidRequest(
                "audience must be 1 to 256 characters and not the session tokens' audience".into(),
            ));
        }
        let secret = secret::new_secret()?;
        let client = ServiceClient {
            client_id: client_id.clone(),
            tenant_id: tenant.clone(),
            secret_hash: secret::hash_token(&secret),
            audience,
            backchannel_logout_uri,
            created_at: self.now(),
        };
        match self.identity.create_client(client).await {
            Err(StoreError::Conflict) => Err(CoreError::Conflict("the clientId is taken".into())),
            r => r.map(|()| (client_id, secret)).map_err(CoreError::from),
        }
    }

    /// Authenticates a service client; its secret is compared in constant time.
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        client_secret: &str,
    ) -> CoreResult<ServiceClient> {
        if !valid_client_id(client_id) || client_secret.len() > 256 {
            return Err(CoreError::InvalidClient);
        }
        let presented = secret::hash_token(client_secret);
        let client = match self
            .clients
            .get(client_id)
            .filter(|_| self.caches_trusted())
        {
            Some(c) => Some(c),
            None => {
                let epoch = self.clients.epoch();
                let c = self.identity.get_client(client_id).await?;
                if let Some(c) = &c {
                    self.clients.insert(client_id.to_owned(), c.clone(), epoch);
                }
                c
            }
        };
        match client {
            Some(c) if secret::constant_time_eq(&c.secret_hash.0, &presented.0) => Ok(c),
            _ => Err(CoreError::InvalidClient),
        }
    }

    /// Mints an internal access token for `client`, bound to the live session of
    /// `session_token` (FinHub's "internally managed access token").
    pub async fn internal_token(
        &self,
        ctx: &RequestContext,
        client: &ServiceClient,
        session_token: &str,
    ) -> CoreResult<InternalToken> {
        if ctx.tenant_id != client.tenant_id {
            return Err(CoreError::TenantMismatch);
        }
        let auth = self.authenticate(ctx, session_token).await?;
        let now = self.now();
        let s = &auth.session;
        let exp = (now + INTERNAL_TOKEN_TTL)
            .min(s.expires_at())
            .min(auth.claims.exp.max(now + 1));
        let claims = InternalClaims {
            iss: self.config().issuer.clone(),
            aud: client.audience.clone(),
            sub: s.user_id,
            sid: s.id.clone(),
            tid: s.tenant_id.clone(),
            cid: s.customer_id,
            client_id: client.client_id.clone(),
            scope: INTERNAL_SCOPE.into(),
            jti: secret::b64(&secret::random_bytes::<16>()?),
            iat: now,
            nbf: now,
            exp,
            auth_time: s.auth_time,
        };
        Ok(InternalToken {
            token: self.keyring()?.sign(&claims)?,
            expires_in: exp - now,
            audience: client.audience.clone(),
            session_id: s.id.clone(),
        })
    }

    /// One of our tokens (a session token or an internal access token) of the client's
    /// tenant, live by its time claims. `None` for anything else. A token pays one signature
    /// check; repeats come from the verified cache.
    fn client_visible_token(
        &self,
        client: &ServiceClient,
        token: &str,
    ) -> CoreResult<Option<Verified>> {
        let key = secret::hash_token(token).0;
        let verified = match self.verified.get(&key) {
            Some(v) => v,
            None => {
                let Ok(payload) = self.keyring()?.verify_signature(token) else {
                    return Ok(None);
                };
                let cfg = self.config();
                let v = match serde_json::from_slice::<crate::token::Claims>(&payload) {
                    Ok(c) if c.iss == cfg.issuer && c.aud == cfg.audience => {
                        Verified::Session(Arc::new(c))
                    }
                    Ok(_) => return Ok(None),
                    Err(_) => match serde_json::from_slice::<InternalClaims>(&payload) {
                        Ok(c) if c.iss == cfg.issuer => Verified::Internal(Arc::new(c)),
                        _ => return Ok(None),
                    },
                };
                self.verified.insert(key, v.clone());
                v
            }
        };
        let now = self.now();
        let (tid, exp, nbf, iat) = match &verified {
            Verified::Session(c) => (&c.tid, c.exp, c.nbf, c.iat),
            Verified::Internal(c) => (&c.tid, c.exp, c.nbf, c.iat),
        };
        let live = *tid == client.tenant_id && now < exp && time_ok(nbf, iat, now);
        Ok(live.then_some(verified))
    }

    /// RFC 7662 for a service client: the claims of a live session token or internal token
    /// of the client's tenant whose session is active, or `None` (`{"active": false}`).
    pub async fn introspect(
        &self,
        client: &ServiceClient,
        token: &str,
    ) -> CoreResult<Option<sessiond_proto::Introspection>> {
        let Some(verified) = self.client_visible_token(client, token)? else {
            return Ok(None);
        };
        let epoch = self.invalidation_epoch();
        match self.session(&client.tenant_id, verified.sid(), epoch).await {
            Ok(s) if s.is_active_at(self.now()) && verified.sub() == s.user_id => {
                Ok(Some(introspection(&verified)))
            }
            Ok(_) | Err(CoreError::TokenInvalid) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// RFC 7009: revokes the session behind a session token, internal token or refresh token
    /// of the client's tenant (reason `logout`). Anything else is silently ignored, as the
    /// RFC asks.
    pub async fn oauth_revoke(
        &self,
        ctx: &RequestContext,
        client: &ServiceClient,
        token: &str,
    ) -> CoreResult<()> {
        let sid = match self.client_visible_token(client, token)? {
            Some(verified) => {
                let sid = verified.sid();
                let owner = self.sessions.get_session(&client.tenant_id, sid).await?;
                owner
                    .is_none_or(|s| s.user_id == verified.sub())
                    .then(|| sid.clone())
            }
            None if token.len() <= 256 => self
                .sessions
                .get_refresh(&secret::hash_refresh(token))
                .await?
                .filter(|r| r.tenant_id == client.tenant_id)
                .map(|r| r.session_id),
            None => None,
        };
        if let Some(sid) = sid {
            self.revoke(ctx, &sid, RevokeReason::Logout).await?;
        }
        Ok(())
    }
}

/// The RFC 7662 answer for a live token: `active`, its claims, `token_type: Bearer`.
fn introspection(verified: &Verified) -> sessiond_proto::Introspection {
    // The claims both kinds of token carry.
    macro_rules! claims {
        ($c:expr) => {
            sessiond_proto::Introspection {
                active: true,
                iss: Some($c.iss.clone()),
                aud: Some($c.aud.clone()),
                sub: Some($c.sub),
                sid: Some($c.sid.as_str().to_owned()),
                tid: Some($c.tid.as_str().to_owned()),
                cid: Some($c.cid),
                scope: Some($c.scope.clone()),
                jti: Some($c.jti.clone()),
                iat: Some($c.iat),
                nbf: Some($c.nbf),
                exp: Some($c.exp),
                auth_time: Some($c.auth_time),
                token_type: Some("Bearer".into()),
                ..Default::default()
            }
        };
    }
    match verified {
        Verified::Session(c) => sessiond_proto::Introspection {
            amr: Some(c.amr.clone()),
            ..claims!(c)
        },
        Verified::Internal(c) => sessiond_proto::Introspection {
            client_id: Some(c.client_id.clone()),
            ..claims!(c)
        },
    }
}

fn sso_aad(tenant: &TenantId) -> String {
    format!("sso:{tenant}")
}

fn sso_verify_aad(tenant: &TenantId) -> String {
    format!("sso-verify:{tenant}")
}
