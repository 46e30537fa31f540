//! The `IdentityStore` operations: tenants, users, SSO settings, partner secrets, service
//! clients, signing keys and the audit trail. Changes other nodes may cache are logged in
//! the same transaction.

use crate::PgStore;
use crate::codec::{hash, opt_uuid, parse_enum, tenant, uuid};
use crate::error::{DbResult, bad_value};
use async_trait::async_trait;
use sessiond_store::{
    AuditCount, AuditEvent, AuditKind, AuditQuery, AuditWith, Change, IdentityStore, KeyState,
    PartnerSecret, PolicyOverrides, Profile, Role, ServiceClient, SessionId, SsoSettings,
    StoreError, StoreResult, StoredKey, Tenant, TenantId, UnixTime, User, UserId, UserQuery,
    UserStatus,
};
use sqlx::postgres::{PgConnection, PgRow, Postgres};
use sqlx::{QueryBuilder, Row};

/// The columns `tenant_from_row` reads, in its order.
macro_rules! tenant_columns {
    () => {
        "id, name, profile, overrides::text, created_at"
    };
}

/// The columns `client_from_row` reads, in its order.
macro_rules! client_columns {
    () => {
        "client_id, tenant_id, secret_hash, audience, backchannel_logout_uri, created_at"
    };
}

fn client_from_row(row: &PgRow) -> DbResult<ServiceClient> {
    Ok(ServiceClient {
        client_id: row.try_get(0)?,
        tenant_id: tenant(row.try_get(1)?)?,
        secret_hash: hash(row.try_get(2)?)?,
        audience: row.try_get(3)?,
        backchannel_logout_uri: row.try_get(4)?,
        created_at: row.try_get(5)?,
    })
}

fn tenant_from_row(row: &PgRow) -> DbResult<Tenant> {
    let profile: String = row.try_get(2)?;
    let overrides: String = row.try_get(3)?;
    Ok(Tenant {
        id: tenant(row.try_get(0)?)?,
        name: row.try_get(1)?,
        profile: parse_enum("profile", &profile, Profile::parse)?,
        overrides: serde_json::from_str(&overrides)?,
        created_at: row.try_get(4)?,
    })
}

/// The columns `user_from_row` reads, in its order.
macro_rules! user_columns {
    () => {
        "tenant_id, id::text, customer_id::text, username, password_hash, external_id, status, \
         created_at, role"
    };
}

fn user_from_row(row: &PgRow) -> DbResult<User> {
    let status: String = row.try_get(6)?;
    let role: Option<String> = row.try_get(8)?;
    Ok(User {
        tenant_id: tenant(row.try_get(0)?)?,
        id: uuid(row.try_get(1)?)?,
        customer_id: uuid(row.try_get(2)?)?,
        username: row.try_get(3)?,
        password_hash: row.try_get(4)?,
        external_id: row.try_get(5)?,
        status: parse_enum("user status", &status, UserStatus::parse)?,
        created_at: row.try_get(7)?,
        role: role
            .as_deref()
            .map(|r| parse_enum("role", r, Role::parse))
            .transpose()?,
    })
}

/// The columns `audit_from_row` reads, in its order.
macro_rules! audit_columns {
    () => {
        "id, tenant_id, kind, user_id::text, session_id, activity_id, correlation_id, ip, \
         user_agent, reason, at, actor"
    };
}

fn partner_secret_from_row(row: &PgRow) -> DbResult<PartnerSecret> {
    Ok(PartnerSecret {
        secret_id: row.try_get(0)?,
        tenant_id: tenant(row.try_get(1)?)?,
        hash: hash(row.try_get(2)?)?,
        created_at: row.try_get(3)?,
    })
}

/// A page size as a SQL `LIMIT`.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn audit_from_row(row: &PgRow) -> DbResult<AuditEvent> {
    let kind: String = row.try_get(2)?;
    let session_id: Option<String> = row.try_get(4)?;
    Ok(AuditEvent {
        id: row.try_get(0)?,
        tenant_id: tenant(row.try_get(1)?)?,
        kind: parse_enum("audit kind", &kind, AuditKind::parse)?,
        user_id: opt_uuid(row.try_get(3)?)?,
        session_id: session_id.map(SessionId::from_generated),
        activity_id: row.try_get(5)?,
        correlation_id: row.try_get(6)?,
        ip: row.try_get(7)?,
        user_agent: row.try_get(8)?,
        reason: row.try_get(9)?,
        at: row.try_get(10)?,
        actor: row.try_get(11)?,
    })
}

impl PgStore {
    /// Runs one statement that changes at most one thing; logs `change` in the same
    /// transaction if it did. Returns whether it did.
    async fn change_logged<'q>(
        &self,
        statement: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
        change: Change,
    ) -> DbResult<bool> {
        let mut tx = self.pool().begin().await?;
        let changed = statement.execute(&mut *tx).await?.rows_affected() > 0;
        let changes = if changed { vec![change] } else { Vec::new() };
        self.commit_logged(tx, &changes).await?;
        Ok(changed)
    }

    async fn create_tenant_db(&self, t: Tenant) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO tenants (id, name, profile, overrides, created_at)
             VALUES ($1, $2, $3, $4::jsonb, $5)",
        )
        .bind(t.id.as_str())
        .bind(t.name.as_deref())
        .bind(t.profile.as_str())
        .bind(serde_json::to_string(&t.overrides)?)
        .bind(t.created_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn get_tenant_db(&self, id: &TenantId) -> DbResult<Option<Tenant>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            tenant_columns!(),
            " FROM tenants WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    /// By byte order (`COLLATE "C"`), whatever the database's collation.
    async fn list_tenants_db(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> DbResult<Vec<Tenant>> {
        let mut q =
            QueryBuilder::<Postgres>::new(concat!("SELECT ", tenant_columns!(), " FROM tenants"));
        if let Some(after) = after {
            q.push(" WHERE id COLLATE \"C\" > ");
            q.push_bind(after.as_str().to_owned());
        }
        q.push(" ORDER BY id COLLATE \"C\" LIMIT ");
        q.push_bind(sql_limit(limit));
        let rows = q.build().fetch_all(self.pool()).await?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn set_tenant_policy_db(
        &self,
        id: &TenantId,
        overrides: PolicyOverrides,
    ) -> DbResult<Option<Tenant>> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(concat!(
            "UPDATE tenants SET overrides = $2::jsonb WHERE id = $1 RETURNING ",
            tenant_columns!()
        ))
        .bind(id.as_str())
        .bind(serde_json::to_string(&overrides)?)
        .fetch_optional(&mut *tx)
        .await?;
        let tenant = row.as_ref().map(tenant_from_row).transpose()?;
        let changes = match tenant {
            Some(_) => vec![Change::TenantChanged { tenant: id.clone() }],
            None => Vec::new(),
        };
        self.commit_logged(tx, &changes).await?;
        Ok(tenant)
    }

    async fn create_user_db(&self, u: User) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO users (tenant_id, id, customer_id, username, password_hash, external_id,
                                status, created_at, role)
             VALUES ($1, $2::uuid, $3::uuid, $4, $5, $6, $7, $8, $9)",
        )
        .bind(u.tenant_id.as_str())
        .bind(u.id.to_string())
        .bind(u.customer_id.to_string())
        .bind(u.username.as_deref())
        .bind(u.password_hash.as_deref())
        .bind(u.external_id.as_deref())
        .bind(u.status.as_str())
        .bind(u.created_at)
        .bind(u.role.map(Role::as_str))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn get_user_db(&self, tenant: &TenantId, id: &UserId) -> DbResult<Option<User>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE tenant_id = $1 AND id = $2::uuid"
        ))
        .bind(tenant.as_str())
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// By id: PostgreSQL compares UUIDs byte by byte, as `Uuid`'s `Ord` does. The search is
    /// a literal substring (no `LIKE` pattern), ASCII case insensitive: `lower` under
    /// `COLLATE "C"` folds ASCII letters only, as `to_ascii_lowercase` does.
    async fn list_users_db(&self, tenant: &TenantId, query: &UserQuery) -> DbResult<Vec<User>> {
        let mut q = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE tenant_id = "
        ));
        q.push_bind(tenant.as_str().to_owned());
        if let Some(after) = query.after {
            q.push(" AND id > ");
            q.push_bind(after.to_string());
            q.push("::uuid");
        }
        if let Some(search) = &query.search {
            let needle = search.to_ascii_lowercase();
            q.push(" AND (strpos(lower(username COLLATE \"C\"), ");
            q.push_bind(needle.clone());
            q.push(") > 0 OR strpos(lower(external_id COLLATE \"C\"), ");
            q.push_bind(needle.clone());
            q.push(") > 0 OR strpos(customer_id::text, ");
            q.push_bind(needle);
            q.push(") > 0)");
        }
        q.push(" ORDER BY id LIMIT ");
        q.push_bind(sql_limit(query.limit));
        let rows = q.build().fetch_all(self.pool()).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn find_user_by_db(
        &self,
        tenant: &TenantId,
        column: UserKey,
        value: &str,
    ) -> DbResult<Option<User>> {
        let sql = match column {
            UserKey::Username => concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE tenant_id = $1 AND username = $2"
            ),
            UserKey::ExternalId => concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE tenant_id = $1 AND external_id = $2"
            ),
        };
        let row = sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(value)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn set_password_hash_db(
        &self,
        tenant: &TenantId,
        id: &UserId,
        hash: String,
    ) -> DbResult<bool> {
        let statement = sqlx::query(
            "UPDATE users SET password_hash = $3 WHERE tenant_id = $1 AND id = $2::uuid",
        )
        .bind(tenant.as_str())
        .bind(id.to_string())
        .bind(hash);
        let change = Change::UserChanged {
            tenant: tenant.clone(),
            user: *id,
        };
        self.change_logged(statement, change).await
    }

    async fn set_user_status_db(
        &self,
        tenant: &TenantId,
        id: &UserId,
        status: UserStatus,
    ) -> DbResult<bool> {
        let statement =
            sqlx::query("UPDATE users SET status = $3 WHERE tenant_id = $1 AND id = $2::uuid")
                .bind(tenant.as_str())
                .bind(id.to_string())
                .bind(status.as_str());
        let change = Change::UserChanged {
            tenant: tenant.clone(),
            user: *id,
        };
        self.change_logged(statement, change).await
    }

    async fn set_user_role_db(
        &self,
        tenant: &TenantId,
        id: &UserId,
        role: Option<Role>,
    ) -> DbResult<bool> {
        let statement =
            sqlx::query("UPDATE users SET role = $3 WHERE tenant_id = $1 AND id = $2::uuid")
                .bind(tenant.as_str())
                .bind(id.to_string())
                .bind(role.map(Role::as_str));
        let change = Change::UserChanged {
            tenant: tenant.clone(),
            user: *id,
        };
        self.change_logged(statement, change).await
    }

    async fn set_sso_db(&self, tenant: &TenantId, s: SsoSettings) -> DbResult<()> {
        let statement = sqlx::query(
            "INSERT INTO sso_settings (tenant_id, issuer, audience, sealed_hs256_secret,
                                       public_key_pem, jwks_url, verify_url,
                                       sealed_verify_secret, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant_id) DO UPDATE SET
                 issuer = EXCLUDED.issuer,
                 audience = EXCLUDED.audience,
                 sealed_hs256_secret = EXCLUDED.sealed_hs256_secret,
                 public_key_pem = EXCLUDED.public_key_pem,
                 jwks_url = EXCLUDED.jwks_url,
                 verify_url = EXCLUDED.verify_url,
                 sealed_verify_secret = EXCLUDED.sealed_verify_secret,
                 updated_at = EXCLUDED.updated_at",
        )
        .bind(tenant.as_str())
        .bind(s.issuer)
        .bind(s.audience)
        .bind(s.sealed_hs256_secret)
        .bind(s.public_key_pem)
        .bind(s.jwks_url)
        .bind(s.verify_url)
        .bind(s.sealed_verify_secret)
        .bind(s.updated_at);
        let change = Change::SsoChanged {
            tenant: tenant.clone(),
        };
        self.change_logged(statement, change).await?;
        Ok(())
    }

    async fn get_sso_db(&self, tenant: &TenantId) -> DbResult<Option<SsoSettings>> {
        let row = sqlx::query(
            "SELECT issuer, audience, sealed_hs256_secret, public_key_pem, jwks_url, verify_url,
                    sealed_verify_secret, updated_at
             FROM sso_settings WHERE tenant_id = $1",
        )
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(SsoSettings {
            issuer: row.try_get(0)?,
            audience: row.try_get(1)?,
            sealed_hs256_secret: row.try_get(2)?,
            public_key_pem: row.try_get(3)?,
            jwks_url: row.try_get(4)?,
            verify_url: row.try_get(5)?,
            sealed_verify_secret: row.try_get(6)?,
            updated_at: row.try_get(7)?,
        }))
    }

    async fn create_partner_secret_db(&self, s: PartnerSecret) -> DbResult<()> {
        let statement = sqlx::query(
            "INSERT INTO partner_secrets (secret_id, tenant_id, hash, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(s.secret_id.clone())
        .bind(s.tenant_id.as_str().to_owned())
        .bind(s.hash.0.to_vec())
        .bind(s.created_at);
        let change = Change::PartnerSecretChanged {
            secret_id: s.secret_id,
        };
        self.change_logged(statement, change).await?;
        Ok(())
    }

    async fn get_partner_secret_db(&self, secret_id: &str) -> DbResult<Option<PartnerSecret>> {
        let row = sqlx::query(
            "SELECT secret_id, tenant_id, hash, created_at
             FROM partner_secrets WHERE secret_id = $1",
        )
        .bind(secret_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(partner_secret_from_row).transpose()
    }

    /// By byte order (`COLLATE "C"`), whatever the database's collation.
    async fn list_partner_secrets_db(&self, tenant: &TenantId) -> DbResult<Vec<PartnerSecret>> {
        let rows = sqlx::query(
            "SELECT secret_id, tenant_id, hash, created_at
             FROM partner_secrets WHERE tenant_id = $1 ORDER BY secret_id COLLATE \"C\"",
        )
        .bind(tenant.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(partner_secret_from_row).collect()
    }

    async fn delete_partner_secret_db(&self, tenant: &TenantId, secret_id: &str) -> DbResult<bool> {
        let statement =
            sqlx::query("DELETE FROM partner_secrets WHERE secret_id = $1 AND tenant_id = $2")
                .bind(secret_id)
                .bind(tenant.as_str());
        let change = Change::PartnerSecretChanged {
            secret_id: secret_id.to_owned(),
        };
        self.change_logged(statement, change).await
    }

    async fn create_client_db(&self, c: ServiceClient) -> DbResult<()> {
        let statement = sqlx::query(
            "INSERT INTO service_clients
                 (client_id, tenant_id, secret_hash, audience, backchannel_logout_uri, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.client_id.clone())
        .bind(c.tenant_id.as_str().to_owned())
        .bind(c.secret_hash.0.to_vec())
        .bind(c.audience)
        .bind(c.backchannel_logout_uri)
        .bind(c.created_at);
        let change = Change::ClientChanged {
            client_id: c.client_id,
        };
        self.change_logged(statement, change).await?;
        Ok(())
    }

    async fn get_client_db(&self, client_id: &str) -> DbResult<Option<ServiceClient>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            client_columns!(),
            " FROM service_clients WHERE client_id = $1"
        ))
        .bind(client_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    /// By byte order (`COLLATE "C"`), whatever the database's collation.
    async fn list_clients_db(&self, tenant: &TenantId) -> DbResult<Vec<ServiceClient>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            client_columns!(),
            " FROM service_clients WHERE tenant_id = $1 ORDER BY client_id COLLATE \"C\""
        ))
        .bind(tenant.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(client_from_row).collect()
    }

    async fn load_keys_db(&self) -> DbResult<Vec<StoredKey>> {
        let rows = sqlx::query(
            "SELECT kid, alg, public, sealed_private, state, created_at, retire_at
             FROM signing_keys ORDER BY position",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get(4)?;
                Ok(StoredKey {
                    kid: row.try_get(0)?,
                    alg: row.try_get(1)?,
                    public: row.try_get(2)?,
                    sealed_private: row.try_get(3)?,
                    state: parse_enum("key state", &state, KeyState::parse)?,
                    created_at: row.try_get(5)?,
                    retire_at: row.try_get(6)?,
                })
            })
            .collect()
    }

    async fn init_keys_db(&self, keys: Vec<StoredKey>) -> DbResult<Vec<StoredKey>> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("LOCK TABLE signing_keys IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM signing_keys")
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 {
            tx.rollback().await?;
            return self.load_keys_db().await;
        }
        Self::insert_keys(&mut tx, &keys).await?;
        self.commit_logged(tx, &[Change::KeyringChanged]).await?;
        Ok(keys)
    }

    async fn replace_keys_db(&self, keys: Vec<StoredKey>) -> DbResult<()> {
        let mut tx = self.pool().begin().await?;
        // Writers of the keyring take turns (readers go on): two replacements never mix.
        sqlx::query("LOCK TABLE signing_keys IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM signing_keys")
            .execute(&mut *tx)
            .await?;
        Self::insert_keys(&mut tx, &keys).await?;
        self.commit_logged(tx, &[Change::KeyringChanged]).await
    }

    async fn insert_keys(
        tx: &mut sqlx::Transaction<'_, Postgres>,
        keys: &[StoredKey],
    ) -> DbResult<()> {
        for (position, k) in (0_i32..).zip(keys) {
            sqlx::query(
                "INSERT INTO signing_keys (position, kid, alg, public, sealed_private, state,
                                           created_at, retire_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(position)
            .bind(k.kid.as_str())
            .bind(k.alg.as_str())
            .bind(k.public.as_slice())
            .bind(k.sealed_private.as_slice())
            .bind(k.state.as_str())
            .bind(k.created_at)
            .bind(k.retire_at)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Writes the appends waiting now, up to [`AUDIT_BATCH`] events, as one batch (nothing if
    /// earlier batches took them all). What it leaves waits for the next turn: every append
    /// spawned a writer, so a turn comes for each.
    async fn write_audit_batch(&self) {
        let _turn = self.inner.audit.turn.lock().await;
        let batch: Vec<AuditAppend> = {
            let mut waiting = lock(&self.inner.audit.waiting);
            let (mut take, mut events) = (0, 0);
            for (e, _) in waiting.iter() {
                // The first append goes whatever its size; the others while they fit.
                if take > 0 && events + e.len() > AUDIT_BATCH {
                    break;
                }
                events += e.len();
                take += 1;
            }
            waiting.drain(..take).collect()
        };
        if batch.is_empty() {
            return;
        }
        let (events, waiting): (Vec<Vec<AuditEvent>>, Vec<_>) = batch.into_iter().unzip();
        let outcome = self.run(self.append_audit_db(events.concat())).await;
        for done in waiting {
            // A caller that went away does not read its outcome: nothing to do for it.
            let _ = done.send(outcome.clone());
        }
    }

    async fn append_audit_db(&self, events: Vec<AuditEvent>) -> DbResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        insert_audit(&mut *self.pool().acquire().await?, &events).await
    }

    async fn purge_audit_db(&self, before: UnixTime) -> DbResult<u64> {
        let done = sqlx::query("DELETE FROM audit_events WHERE at < $1")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    async fn find_audit_db(
        &self,
        tenant: &TenantId,
        query: &AuditQuery,
    ) -> DbResult<Vec<AuditEvent>> {
        let mut q = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_events WHERE tenant_id = "
        ));
        q.push_bind(tenant.as_str().to_owned());
        if let Some(user) = query.user_id {
            q.push(" AND user_id = ");
            q.push_bind(user.to_string());
            q.push("::uuid");
        }
        if let Some(session) = &query.session_id {
            q.push(" AND session_id = ");
            q.push_bind(session.as_str().to_owned());
        }
        if let Some(activity) = &query.activity_id {
            q.push(" AND activity_id = ");
            q.push_bind(activity.clone());
        }
        if let Some(kind) = query.kind {
            q.push(" AND kind = ");
            q.push_bind(kind.as_str());
        }
        if let Some(since) = query.since {
            q.push(" AND at >= ");
            q.push_bind(since);
        }
        if let Some(until) = query.until {
            q.push(" AND at < ");
            q.push_bind(until);
        }
        if let Some(before) = query.before {
            q.push(" AND id < ");
            q.push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ");
        q.push_bind(sql_limit(query.limit));
        let rows = q.build().fetch_all(self.pool()).await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Buckets start at multiples of their width (the remainder taken the Euclidean way, so
    /// this holds before 1970 too).
    async fn count_audit_db(
        &self,
        tenant: &TenantId,
        since: UnixTime,
        until: UnixTime,
        bucket: u32,
    ) -> DbResult<Vec<AuditCount>> {
        let rows = sqlx::query(
            "SELECT at - ((at % $4) + $4) % $4 AS bucket, kind, reason, count(*)
             FROM audit_events WHERE tenant_id = $1 AND at >= $2 AND at < $3
             GROUP BY 1, kind, reason",
        )
        .bind(tenant.as_str())
        .bind(since)
        .bind(until)
        .bind(i64::from(bucket.max(1)))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get(1)?;
                let count: i64 = row.try_get(3)?;
                Ok(AuditCount {
                    bucket: row.try_get(0)?,
                    kind: parse_enum("audit kind", &kind, AuditKind::parse)?,
                    reason: row.try_get(2)?,
                    count: u64::try_from(count)
                        .map_err(|_| bad_value("count", &count.to_string()))?,
                })
            })
            .collect()
    }
}

/// The unique keys a user is found by.
#[derive(Clone, Copy)]
enum UserKey {
    Username,
    ExternalId,
}

#[async_trait]
impl IdentityStore for PgStore {
    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<()> {
        self.run(self.create_tenant_db(tenant)).await
    }

    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        self.run(self.get_tenant_db(id)).await
    }

    async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> StoreResult<Vec<Tenant>> {
        self.run(self.list_tenants_db(after, limit)).await
    }

    async fn set_tenant_policy(
        &self,
        id: &TenantId,
        overrides: PolicyOverrides,
    ) -> StoreResult<Option<Tenant>> {
        self.run(self.set_tenant_policy_db(id, overrides)).await
    }

    async fn create_user(&self, user: User) -> StoreResult<()> {
        self.run(self.create_user_db(user)).await
    }

    async fn get_user(&self, tenant: &TenantId, id: &UserId) -> StoreResult<Option<User>> {
        self.run(self.get_user_db(tenant, id)).await
    }

    async fn find_user_by_username(
        &self,
        tenant: &TenantId,
        username: &str,
    ) -> StoreResult<Option<User>> {
        self.run(self.find_user_by_db(tenant, UserKey::Username, username))
            .await
    }

    async fn set_password_hash(
        &self,
        tenant: &TenantId,
        id: &UserId,
        hash: String,
    ) -> StoreResult<bool> {
        self.run(self.set_password_hash_db(tenant, id, hash)).await
    }

    async fn set_user_status(
        &self,
        tenant: &TenantId,
        id: &UserId,
        status: UserStatus,
    ) -> StoreResult<bool> {
        self.run(self.set_user_status_db(tenant, id, status)).await
    }

    async fn find_user_by_external_id(
        &self,
        tenant: &TenantId,
        external_id: &str,
    ) -> StoreResult<Option<User>> {
        self.run(self.find_user_by_db(tenant, UserKey::ExternalId, external_id))
            .await
    }

    async fn list_users(&self, tenant: &TenantId, query: &UserQuery) -> StoreResult<Vec<User>> {
        self.run(self.list_users_db(tenant, query)).await
    }

    async fn set_user_role(
        &self,
        tenant: &TenantId,
        id: &UserId,
        role: Option<Role>,
    ) -> StoreResult<bool> {
        self.run(self.set_user_role_db(tenant, id, role)).await
    }

    async fn set_sso(&self, tenant: &TenantId, settings: SsoSettings) -> StoreResult<()> {
        self.run(self.set_sso_db(tenant, settings)).await
    }

    async fn get_sso(&self, tenant: &TenantId) -> StoreResult<Option<SsoSettings>> {
        self.run(self.get_sso_db(tenant)).await
    }

    async fn create_partner_secret(&self, secret: PartnerSecret) -> StoreResult<()> {
        self.run(self.create_partner_secret_db(secret)).await
    }

    async fn get_partner_secret(&self, secret_id: &str) -> StoreResult<Option<PartnerSecret>> {
        self.run(self.get_partner_secret_db(secret_id)).await
    }

    async fn delete_partner_secret(&self, tenant: &TenantId, secret_id: &str) -> StoreResult<bool> {
        self.run(self.delete_partner_secret_db(tenant, secret_id))
            .await
    }

    async fn list_partner_secrets(&self, tenant: &TenantId) -> StoreResult<Vec<PartnerSecret>> {
        self.run(self.list_partner_secrets_db(tenant)).await
    }

    async fn create_client(&self, client: ServiceClient) -> StoreResult<()> {
        self.run(self.create_client_db(client)).await
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ServiceClient>> {
        self.run(self.get_client_db(client_id)).await
    }

    async fn list_clients(&self, tenant: &TenantId) -> StoreResult<Vec<ServiceClient>> {
        self.run(self.list_clients_db(tenant)).await
    }

    async fn load_keys(&self) -> StoreResult<Vec<StoredKey>> {
        self.run(self.load_keys_db()).await
    }

    async fn init_keys(&self, keys: Vec<StoredKey>) -> StoreResult<Vec<StoredKey>> {
        self.run(self.init_keys_db(keys)).await
    }

    async fn replace_keys(&self, keys: Vec<StoredKey>) -> StoreResult<()> {
        self.run(self.replace_keys_db(keys)).await
    }

    /// Group commit: the appends that arrive while a batch is being written wait, and the
    /// next batch writes them all in one statement (one commit), in the order they came;
    /// each caller returns once its events are committed, with the batch's outcome. One batch
    /// is written at a time, by a task of its own, so a caller that goes away (a dropped
    /// request) takes no one's events with it.
    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let (done, outcome) = tokio::sync::oneshot::channel();
        lock(&self.inner.audit.waiting).push((events, done));
        let store = self.clone();
        tokio::spawn(async move { store.write_audit_batch().await });
        // The batch before this one and this one each take at most the deadline: past it,
        // answer as any operation that took too long does (the events may still commit).
        match tokio::time::timeout(self.inner.deadline, outcome).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(StoreError::Unavailable(
                "the audit batch was not written (shutting down)".into(),
            )),
            Err(_) => Err(StoreError::Unavailable(format!(
                "audit events not committed within {:?}",
                self.inner.deadline
            ))),
        }
    }

    async fn purge_audit(&self, before: UnixTime) -> StoreResult<u64> {
        self.run(self.purge_audit_db(before)).await
    }

    async fn find_audit(
        &self,
        tenant: &TenantId,
        query: &AuditQuery,
    ) -> StoreResult<Vec<AuditEvent>> {
        self.run(self.find_audit_db(tenant, query)).await
    }

    async fn count_audit(
        &self,
        tenant: &TenantId,
        since: UnixTime,
        until: UnixTime,
        bucket: u32,
    ) -> StoreResult<Vec<AuditCount>> {
        self.run(self.count_audit_db(tenant, since, until, bucket))
            .await
    }
}

/// At most this many audit events go in one batch (one append's events are never split): a
/// slow server's backlog is written in statements of bounded size.
const AUDIT_BATCH: usize = 1024;

/// Audit appends waiting to be written, each with the channel its outcome goes back on, and
/// the turn of the one batch being written.
#[derive(Default)]
pub(crate) struct AuditQueue {
    waiting: std::sync::Mutex<Vec<AuditAppend>>,
    turn: tokio::sync::Mutex<()>,
}

type AuditAppend = (
    Vec<AuditEvent>,
    tokio::sync::oneshot::Sender<StoreResult<()>>,
);

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Appends the events `audit` builds from a write's outcome, in the write's transaction.
pub(crate) async fn insert_audit_with<T: ?Sized>(
    c: &mut PgConnection,
    audit: &AuditWith<T>,
    outcome: &T,
) -> DbResult<()> {
    match audit {
        Some(build) => insert_audit(c, &build(outcome)).await,
        None => Ok(()),
    }
}

/// Inserts audit events on `c`: one statement; ids are assigned in the order given.
async fn insert_audit(c: &mut PgConnection, events: &[AuditEvent]) -> DbResult<()> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| audit_insert_sql(1));
    if events.is_empty() {
        return Ok(());
    }
    bind_audit(sqlx::query(&SQL), events).execute(c).await?;
    Ok(())
}

/// `INSERT INTO audit_events …` of the events bound by [`bind_audit`] as parameters
/// `$first` to `$first + 10`: a statement of its own, or a data-modifying `WITH` clause of a
/// write's statement (its events then commit with it, without a round trip of their own).
pub(crate) fn audit_insert_sql(first: usize) -> String {
    let p: Vec<String> = (first..first + 11).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO audit_events (tenant_id, kind, user_id, session_id, activity_id,
                                   correlation_id, ip, user_agent, reason, at, actor)
         SELECT tenant_id, kind, user_id::uuid, session_id, activity_id, correlation_id,
                ip, user_agent, reason, at, actor
         FROM unnest({}::text[], {}::text[], {}::text[], {}::text[], {}::text[],
                     {}::text[], {}::text[], {}::text[], {}::text[], {}::bigint[],
                     {}::text[])
              WITH ORDINALITY AS e (tenant_id, kind, user_id, session_id, activity_id,
                                    correlation_id, ip, user_agent, reason, at, actor, ord)
         ORDER BY ord",
        p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10]
    )
}

/// Binds `events` as the eleven arrays [`audit_insert_sql`] reads, after `q`'s parameters.
pub(crate) fn bind_audit<'q>(
    q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    events: &[AuditEvent],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let text = |f: fn(&AuditEvent) -> Option<String>| events.iter().map(f).collect::<Vec<_>>();
    q.bind(text(|e| Some(e.tenant_id.as_str().to_owned())))
        .bind(text(|e| Some(e.kind.as_str().to_owned())))
        .bind(text(|e| e.user_id.map(|u| u.to_string())))
        .bind(text(|e| {
            e.session_id.as_ref().map(|s| s.as_str().to_owned())
        }))
        .bind(text(|e| Some(e.activity_id.clone())))
        .bind(text(|e| e.correlation_id.clone()))
        .bind(text(|e| e.ip.clone()))
        .bind(text(|e| e.user_agent.clone()))
        .bind(text(|e| e.reason.clone()))
        .bind(events.iter().map(|e| e.at).collect::<Vec<i64>>())
        .bind(text(|e| e.actor.clone()))
}
