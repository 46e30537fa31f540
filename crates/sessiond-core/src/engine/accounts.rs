//! Tenants and users: the tenant policy cache, account creation, password changes and disabling, and password hashing off the async executor.

use super::*;

impl Engine {
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
        Policy::to_set(profile, &overrides)?;
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
        let policy = Policy::to_set(current.tenant.profile, &o)?;
        self.identity
            .set_tenant_policy(id, o)
            .await?
            .ok_or(CoreError::UnknownTenant)?;
        self.tenants.invalidate(id);
        Ok(policy)
    }

    pub(crate) async fn hash_password(&self, password: String) -> CoreResult<String> {
        password::check_password_policy(&password)?;
        let hasher = Arc::clone(&self.hasher);
        self.off_thread(move || hasher.hash(&password)).await?
    }

    /// Verifies a password against a user's stored hash, or against the dummy hash when there
    /// is no user (or no password): one full Argon2 verification either way.
    pub(crate) async fn verify_password(
        &self,
        password: &str,
        stored: Option<String>,
    ) -> CoreResult<bool> {
        let hasher = Arc::clone(&self.hasher);
        let password = password.to_owned();
        self.off_thread(move || hasher.verify(&password, stored.as_deref()))
            .await
    }

    /// What password hashing has done so far (verifications by Argon2 parameters, memory).
    pub fn hashing_stats(&self) -> password::HashingStats {
        self.hasher.stats()
    }

    /// Runs Argon2 on the blocking pool, at most `hash_concurrency` at a time, so logins queue
    /// instead of starving token validation, and so the hasher's pool never holds more than
    /// `hash_concurrency` Argon2 buffers.
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
            role: None,
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
}
