//! Named operators and what the admin API and console page through: an operator is a user of
//! the reserved tenant [`OPERATORS_TENANT`] with a [`Role`], signing in with sessiond's own
//! login (its sessions are listed, timed out and revoked like any other); the listings.

use super::*;

/// The largest page a listing returns.
pub const MAX_PAGE: usize = 1000;

/// At most this many buckets in one [`Engine::count_audit`].
pub const MAX_BUCKETS: i64 = 500;

impl Engine {
    /// Creates the operators' tenant if it does not exist yet: the production profile (30 min
    /// idle timeout), 15-minute session tokens and 12-hour sessions. It is not HTTPS-only,
    /// so that the console works on a loopback address: its cookies are `Secure`, which
    /// browsers send only over HTTPS or to loopback. An admin may change its policy.
    pub async fn ensure_operators_tenant(&self) -> CoreResult<()> {
        let id = TenantId::operators();
        if self.identity.get_tenant(&id).await?.is_some() {
            return Ok(());
        }
        let overrides = PolicyOverrides {
            session_token_ttl: Some(900),
            absolute_ttl: Some(12 * 3600),
            https_only: Some(false),
            ..PolicyOverrides::default()
        };
        let tenant = Tenant {
            id,
            name: Some("sessiond operators".into()),
            profile: Profile::Production,
            overrides,
            created_at: self.now(),
        };
        match self.identity.create_tenant(tenant).await {
            Ok(()) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates an operator account (a user of the operators' tenant with `role`).
    pub async fn create_operator(
        &self,
        username: String,
        password: String,
        role: Role,
    ) -> CoreResult<User> {
        self.ensure_operators_tenant().await?;
        let tenant = TenantId::operators();
        let user = match self
            .create_user(&tenant, username, password, None, None)
            .await
        {
            Err(CoreError::Conflict(_)) => {
                return Err(CoreError::Conflict(
                    "an operator with this username exists".into(),
                ));
            }
            r => r?,
        };
        self.set_operator_role(&user.id, role).await
    }

    /// Changes an operator's role; their sessions stay (each request reads the role anew).
    pub async fn set_operator_role(&self, user: &UserId, role: Role) -> CoreResult<User> {
        let tenant = TenantId::operators();
        if !self
            .identity
            .set_user_role(&tenant, user, Some(role))
            .await?
        {
            return Err(CoreError::NotFound("operator"));
        }
        self.identity
            .get_user(&tenant, user)
            .await?
            .ok_or(CoreError::NotFound("operator"))
    }

    /// A page of tenants after `after`, by id.
    pub async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> CoreResult<Vec<Tenant>> {
        Ok(self
            .identity
            .list_tenants(after, limit.min(MAX_PAGE))
            .await?)
    }

    /// A page of a tenant's users.
    pub async fn list_users(&self, tenant: &TenantId, q: &UserQuery) -> CoreResult<Vec<User>> {
        self.tenant(tenant).await?;
        Ok(self.identity.list_users(tenant, q).await?)
    }

    /// A tenant's partner secrets (id and creation time; the hashes stay inside).
    pub async fn list_partner_secrets(&self, tenant: &TenantId) -> CoreResult<Vec<PartnerSecret>> {
        self.tenant(tenant).await?;
        Ok(self.identity.list_partner_secrets(tenant).await?)
    }

    /// A tenant's service clients.
    pub async fn list_clients(&self, tenant: &TenantId) -> CoreResult<Vec<ServiceClient>> {
        self.tenant(tenant).await?;
        Ok(self.identity.list_clients(tenant).await?)
    }

    /// A tenant's audit events counted per `bucket` seconds, kind and reason, for
    /// `since <= at < until`; at most [`MAX_BUCKETS`] buckets.
    pub async fn count_audit(
        &self,
        tenant: &TenantId,
        since: UnixTime,
        until: UnixTime,
        bucket: u32,
    ) -> CoreResult<Vec<AuditCount>> {
        self.tenant(tenant).await?;
        if bucket == 0 || until <= since {
            return Err(CoreError::InvalidRequest(
                "bucket must be positive and until after since".into(),
            ));
        }
        // Buckets start at multiples of their width: count the aligned ones.
        let width = i64::from(bucket);
        let (first, last) = (since.div_euclid(width), (until - 1).div_euclid(width));
        if last - first + 1 > MAX_BUCKETS {
            return Err(CoreError::InvalidRequest(format!(
                "at most {MAX_BUCKETS} buckets: widen the bucket or narrow the time range"
            )));
        }
        Ok(self
            .identity
            .count_audit(tenant, since, until, bucket)
            .await?)
    }

    /// Records an action on the admin API (`action` names it) in the audit trail of the
    /// tenant it acted on, with the request's actor.
    pub async fn record_admin_action(
        &self,
        ctx: &RequestContext,
        user: Option<UserId>,
        action: String,
    ) -> CoreResult<()> {
        let mut e = self.event(ctx, AuditKind::AdminAction, user, None);
        e.reason = Some(action);
        self.record(vec![e]).await
    }
}
