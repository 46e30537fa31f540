//! The `IdentityStore` operations: tenants, users, signing keys and the audit trail.

use crate::changes::log;
use crate::codec::{
    enum_col, hash_col, opt_enum_col, opt_uuid_col, session_id_col, tenant_col, uuid_col,
};
use crate::error::DbResult;
use crate::filter::Filter;
use rusqlite::{Connection, OptionalExtension, Row, named_params};
use sessiond_store::{
    AuditCount, AuditEvent, AuditKind, AuditQuery, AuditWith, Change, KeyState, PartnerSecret,
    PolicyOverrides, Profile, Role, ServiceClient, SsoSettings, StoredKey, Tenant, TenantId,
    UnixTime, User, UserId, UserQuery, UserStatus,
};

fn tenant_from_row(row: &Row<'_>) -> rusqlite::Result<Tenant> {
    let overrides: String = row.get(3)?;
    Ok(Tenant {
        id: tenant_col(row, 0)?,
        name: row.get(1)?,
        profile: enum_col(row, 2, "profile", Profile::parse)?,
        overrides: serde_json::from_str(&overrides).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?,
        created_at: row.get(4)?,
    })
}

pub(crate) fn create_tenant(c: &Connection, t: &Tenant) -> DbResult<()> {
    c.prepare_cached(
        "INSERT INTO tenants (id, name, profile, overrides, created_at)
         VALUES (:id, :name, :profile, :overrides, :created_at)",
    )?
    .execute(named_params! {
        ":id": t.id.as_str(),
        ":name": t.name,
        ":profile": t.profile.as_str(),
        ":overrides": serde_json::to_string(&t.overrides)?,
        ":created_at": t.created_at,
    })?;
    Ok(())
}

pub(crate) fn get_tenant(c: &Connection, id: &TenantId) -> DbResult<Option<Tenant>> {
    let tenant = c
        .prepare_cached(
            "SELECT id, name, profile, overrides, created_at FROM tenants WHERE id = :id",
        )?
        .query_row(named_params! {":id": id.as_str()}, tenant_from_row)
        .optional()?;
    Ok(tenant)
}

/// Up to `limit` tenants with an id above `after`, by id (BINARY collation: byte order).
pub(crate) fn list_tenants(
    c: &Connection,
    after: Option<&TenantId>,
    limit: usize,
) -> DbResult<Vec<Tenant>> {
    let mut f = Filter::new(
        "SELECT id, name, profile, overrides, created_at FROM tenants WHERE id > :after",
        ":after",
        after.map_or("", TenantId::as_str).to_owned(),
    );
    f.finish("id", limit);
    f.query(c, tenant_from_row)
}

pub(crate) fn set_tenant_policy(
    c: &Connection,
    id: &TenantId,
    overrides: &PolicyOverrides,
) -> DbResult<Option<Tenant>> {
    let tenant = c
        .prepare_cached(
            "UPDATE tenants SET overrides = :overrides WHERE id = :id
             RETURNING id, name, profile, overrides, created_at",
        )?
        .query_row(
            named_params! {":id": id.as_str(), ":overrides": serde_json::to_string(overrides)?},
            tenant_from_row,
        )
        .optional()?;
    if tenant.is_some() {
        log(c, &Change::TenantChanged { tenant: id.clone() })?;
    }
    Ok(tenant)
}

/// Logs that a user changed, if one did.
fn user_changed(c: &Connection, tenant: &TenantId, id: &UserId, changed: usize) -> DbResult<bool> {
    if changed == 0 {
        return Ok(false);
    }
    log(
        c,
        &Change::UserChanged {
            tenant: tenant.clone(),
            user: *id,
        },
    )?;
    Ok(true)
}

macro_rules! user_columns {
    () => {
        "tenant_id, id, customer_id, username, password_hash, external_id, status, created_at,
         role"
    };
}

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        tenant_id: tenant_col(row, 0)?,
        id: uuid_col(row, 1)?,
        customer_id: uuid_col(row, 2)?,
        username: row.get(3)?,
        password_hash: row.get(4)?,
        external_id: row.get(5)?,
        status: enum_col(row, 6, "user status", UserStatus::parse)?,
        created_at: row.get(7)?,
        role: opt_enum_col(row, 8, "role", Role::parse)?,
    })
}

pub(crate) fn create_user(c: &Connection, u: &User) -> DbResult<()> {
    c.prepare_cached(
        "INSERT INTO users (tenant_id, id, customer_id, username, password_hash, external_id,
                            status, created_at, role)
         VALUES (:tenant, :id, :customer, :username, :password_hash, :external_id, :status,
                 :created_at, :role)",
    )?
    .execute(named_params! {
        ":tenant": u.tenant_id.as_str(),
        ":id": u.id.to_string(),
        ":customer": u.customer_id.to_string(),
        ":username": u.username,
        ":password_hash": u.password_hash,
        ":external_id": u.external_id,
        ":status": u.status.as_str(),
        ":created_at": u.created_at,
        ":role": u.role.map(Role::as_str),
    })?;
    Ok(())
}

pub(crate) fn get_user(c: &Connection, tenant: &TenantId, id: &UserId) -> DbResult<Option<User>> {
    let user = c
        .prepare_cached(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE tenant_id = :tenant AND id = :id"
        ))?
        .query_row(
            named_params! {":tenant": tenant.as_str(), ":id": id.to_string()},
            user_from_row,
        )
        .optional()?;
    Ok(user)
}

pub(crate) fn find_user_by_username(
    c: &Connection,
    tenant: &TenantId,
    username: &str,
) -> DbResult<Option<User>> {
    let user = c
        .prepare_cached(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE tenant_id = :tenant AND username = :username"
        ))?
        .query_row(
            named_params! {":tenant": tenant.as_str(), ":username": username},
            user_from_row,
        )
        .optional()?;
    Ok(user)
}

pub(crate) fn set_password_hash(
    c: &Connection,
    tenant: &TenantId,
    id: &UserId,
    hash: &str,
) -> DbResult<bool> {
    let changed = c
        .prepare_cached(
            "UPDATE users SET password_hash = :hash WHERE tenant_id = :tenant AND id = :id",
        )?
        .execute(named_params! {
            ":tenant": tenant.as_str(),
            ":id": id.to_string(),
            ":hash": hash,
        })?;
    user_changed(c, tenant, id, changed)
}

pub(crate) fn set_user_status(
    c: &Connection,
    tenant: &TenantId,
    id: &UserId,
    status: UserStatus,
) -> DbResult<bool> {
    let changed = c
        .prepare_cached("UPDATE users SET status = :status WHERE tenant_id = :tenant AND id = :id")?
        .execute(named_params! {
            ":tenant": tenant.as_str(),
            ":id": id.to_string(),
            ":status": status.as_str(),
        })?;
    user_changed(c, tenant, id, changed)
}

pub(crate) fn set_user_role(
    c: &Connection,
    tenant: &TenantId,
    id: &UserId,
    role: Option<Role>,
) -> DbResult<bool> {
    let changed = c
        .prepare_cached("UPDATE users SET role = :role WHERE tenant_id = :tenant AND id = :id")?
        .execute(named_params! {
            ":tenant": tenant.as_str(),
            ":id": id.to_string(),
            ":role": role.map(Role::as_str),
        })?;
    user_changed(c, tenant, id, changed)
}

/// A page of the tenant's users by id. Ids are stored as hyphenated lowercase text, whose
/// byte order is the order of the UUIDs' bytes. The search is a literal substring (`instr`,
/// not `LIKE`), ASCII case-insensitive (SQLite's `lower` folds ASCII only).
pub(crate) fn list_users(
    c: &Connection,
    tenant: &TenantId,
    query: &UserQuery,
) -> DbResult<Vec<User>> {
    let mut f = Filter::new(
        concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE tenant_id = :tenant"
        ),
        ":tenant",
        tenant.as_str().to_owned(),
    );
    if let Some(after) = query.after {
        f.and("id > :after", ":after", after.to_string());
    }
    if let Some(search) = &query.search {
        f.and(
            "(instr(lower(username), lower(:search)) > 0
              OR instr(lower(external_id), lower(:search)) > 0
              OR instr(customer_id, lower(:search)) > 0)",
            ":search",
            search.clone(),
        );
    }
    f.finish("id", query.limit);
    f.query(c, user_from_row)
}

pub(crate) fn find_user_by_external_id(
    c: &Connection,
    tenant: &TenantId,
    external_id: &str,
) -> DbResult<Option<User>> {
    let user = c
        .prepare_cached(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE tenant_id = :tenant AND external_id = :external_id"
        ))?
        .query_row(
            named_params! {":tenant": tenant.as_str(), ":external_id": external_id},
            user_from_row,
        )
        .optional()?;
    Ok(user)
}

pub(crate) fn set_sso(c: &Connection, tenant: &TenantId, s: &SsoSettings) -> DbResult<()> {
    c.prepare_cached(
        "INSERT INTO sso_settings (tenant_id, issuer, audience, sealed_hs256_secret,
                                   public_key_pem, jwks_url, verify_url, sealed_verify_secret,
                                   updated_at)
         VALUES (:tenant, :issuer, :audience, :sealed_hs256_secret, :public_key_pem, :jwks_url,
                 :verify_url, :sealed_verify_secret, :updated_at)
         ON CONFLICT (tenant_id) DO UPDATE SET
             issuer = excluded.issuer,
             audience = excluded.audience,
             sealed_hs256_secret = excluded.sealed_hs256_secret,
             public_key_pem = excluded.public_key_pem,
             jwks_url = excluded.jwks_url,
             verify_url = excluded.verify_url,
             sealed_verify_secret = excluded.sealed_verify_secret,
             updated_at = excluded.updated_at",
    )?
    .execute(named_params! {
        ":tenant": tenant.as_str(),
        ":issuer": s.issuer,
        ":audience": s.audience,
        ":sealed_hs256_secret": s.sealed_hs256_secret,
        ":public_key_pem": s.public_key_pem,
        ":jwks_url": s.jwks_url,
        ":verify_url": s.verify_url,
        ":sealed_verify_secret": s.sealed_verify_secret,
        ":updated_at": s.updated_at,
    })?;
    log(
        c,
        &Change::SsoChanged {
            tenant: tenant.clone(),
        },
    )
}

pub(crate) fn get_sso(c: &Connection, tenant: &TenantId) -> DbResult<Option<SsoSettings>> {
    let settings = c
        .prepare_cached(
            "SELECT issuer, audience, sealed_hs256_secret, public_key_pem, jwks_url, verify_url,
                    sealed_verify_secret, updated_at
             FROM sso_settings WHERE tenant_id = :tenant",
        )?
        .query_row(named_params! {":tenant": tenant.as_str()}, |row| {
            Ok(SsoSettings {
                issuer: row.get(0)?,
                audience: row.get(1)?,
                sealed_hs256_secret: row.get(2)?,
                public_key_pem: row.get(3)?,
                jwks_url: row.get(4)?,
                verify_url: row.get(5)?,
                sealed_verify_secret: row.get(6)?,
                updated_at: row.get(7)?,
            })
        })
        .optional()?;
    Ok(settings)
}

pub(crate) fn create_partner_secret(c: &Connection, s: &PartnerSecret) -> DbResult<()> {
    c.prepare_cached(
        "INSERT INTO partner_secrets (secret_id, tenant_id, hash, created_at)
         VALUES (:secret_id, :tenant, :hash, :created_at)",
    )?
    .execute(named_params! {
        ":secret_id": s.secret_id,
        ":tenant": s.tenant_id.as_str(),
        ":hash": s.hash.0,
        ":created_at": s.created_at,
    })?;
    log(
        c,
        &Change::PartnerSecretChanged {
            secret_id: s.secret_id.clone(),
        },
    )
}

fn partner_secret_from_row(row: &Row<'_>) -> rusqlite::Result<PartnerSecret> {
    Ok(PartnerSecret {
        secret_id: row.get(0)?,
        tenant_id: tenant_col(row, 1)?,
        hash: hash_col(row, 2)?,
        created_at: row.get(3)?,
    })
}

/// The secret whatever its tenant: the caller learns the tenant from it.
pub(crate) fn get_partner_secret(
    c: &Connection,
    secret_id: &str,
) -> DbResult<Option<PartnerSecret>> {
    let secret = c
        .prepare_cached(
            "SELECT secret_id, tenant_id, hash, created_at
             FROM partner_secrets WHERE secret_id = :secret_id",
        )?
        .query_row(
            named_params! {":secret_id": secret_id},
            partner_secret_from_row,
        )
        .optional()?;
    Ok(secret)
}

pub(crate) fn delete_partner_secret(
    c: &Connection,
    tenant: &TenantId,
    secret_id: &str,
) -> DbResult<bool> {
    let deleted = c
        .prepare_cached(
            "DELETE FROM partner_secrets WHERE secret_id = :secret_id AND tenant_id = :tenant",
        )?
        .execute(named_params! {":secret_id": secret_id, ":tenant": tenant.as_str()})?;
    if deleted == 0 {
        return Ok(false);
    }
    log(
        c,
        &Change::PartnerSecretChanged {
            secret_id: secret_id.to_owned(),
        },
    )?;
    Ok(true)
}

/// The tenant's partner secrets, by secret id.
pub(crate) fn list_partner_secrets(
    c: &Connection,
    tenant: &TenantId,
) -> DbResult<Vec<PartnerSecret>> {
    let mut stmt = c.prepare_cached(
        "SELECT secret_id, tenant_id, hash, created_at
         FROM partner_secrets WHERE tenant_id = :tenant ORDER BY secret_id",
    )?;
    let secrets = stmt
        .query_map(
            named_params! {":tenant": tenant.as_str()},
            partner_secret_from_row,
        )?
        .collect::<Result<_, _>>()?;
    Ok(secrets)
}

pub(crate) fn create_client(c: &Connection, client: &ServiceClient) -> DbResult<()> {
    c.prepare_cached(
        "INSERT INTO service_clients
             (client_id, tenant_id, secret_hash, audience, backchannel_logout_uri, created_at)
         VALUES (:client_id, :tenant, :secret_hash, :audience, :backchannel_logout_uri,
                 :created_at)",
    )?
    .execute(named_params! {
        ":client_id": client.client_id,
        ":tenant": client.tenant_id.as_str(),
        ":secret_hash": client.secret_hash.0,
        ":audience": client.audience,
        ":backchannel_logout_uri": client.backchannel_logout_uri,
        ":created_at": client.created_at,
    })?;
    log(
        c,
        &Change::ClientChanged {
            client_id: client.client_id.clone(),
        },
    )
}

/// The columns `client_from_row` reads, in its order.
const CLIENT_COLUMNS: &str =
    "client_id, tenant_id, secret_hash, audience, backchannel_logout_uri, created_at";

fn client_from_row(row: &Row<'_>) -> rusqlite::Result<ServiceClient> {
    Ok(ServiceClient {
        client_id: row.get(0)?,
        tenant_id: tenant_col(row, 1)?,
        secret_hash: hash_col(row, 2)?,
        audience: row.get(3)?,
        backchannel_logout_uri: row.get(4)?,
        created_at: row.get(5)?,
    })
}

pub(crate) fn get_client(c: &Connection, client_id: &str) -> DbResult<Option<ServiceClient>> {
    let client = c
        .prepare_cached(&format!(
            "SELECT {CLIENT_COLUMNS} FROM service_clients WHERE client_id = :client_id"
        ))?
        .query_row(named_params! {":client_id": client_id}, client_from_row)
        .optional()?;
    Ok(client)
}

pub(crate) fn list_clients(c: &Connection, tenant: &TenantId) -> DbResult<Vec<ServiceClient>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {CLIENT_COLUMNS} FROM service_clients WHERE tenant_id = :tenant
         ORDER BY client_id"
    ))?;
    let clients = stmt
        .query_map(named_params! {":tenant": tenant.as_str()}, client_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(clients)
}

pub(crate) fn load_keys(c: &Connection) -> DbResult<Vec<StoredKey>> {
    let mut stmt = c.prepare_cached(
        "SELECT kid, alg, public, sealed_private, state, created_at, retire_at
         FROM signing_keys ORDER BY position",
    )?;
    let keys = stmt
        .query_map([], |row| {
            Ok(StoredKey {
                kid: row.get(0)?,
                alg: row.get(1)?,
                public: row.get(2)?,
                sealed_private: row.get(3)?,
                state: enum_col(row, 4, "key state", KeyState::parse)?,
                created_at: row.get(5)?,
                retire_at: row.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(keys)
}

pub(crate) fn replace_keys(c: &Connection, keys: &[StoredKey]) -> DbResult<()> {
    c.prepare_cached("DELETE FROM signing_keys")?.execute([])?;
    let mut insert = c.prepare_cached(
        "INSERT INTO signing_keys (position, kid, alg, public, sealed_private, state, created_at,
                                   retire_at)
         VALUES (:position, :kid, :alg, :public, :sealed_private, :state, :created_at, :retire_at)",
    )?;
    for (position, k) in (0_i64..).zip(keys) {
        insert.execute(named_params! {
            ":position": position,
            ":kid": k.kid,
            ":alg": k.alg,
            ":public": k.public,
            ":sealed_private": k.sealed_private,
            ":state": k.state.as_str(),
            ":created_at": k.created_at,
            ":retire_at": k.retire_at,
        })?;
    }
    log(c, &Change::KeyringChanged)
}

/// Stores `keys` as the keyring if there is none yet (in one transaction); returns the
/// keyring as stored.
pub(crate) fn init_keys(c: &Connection, keys: Vec<StoredKey>) -> DbResult<Vec<StoredKey>> {
    let existing = load_keys(c)?;
    if !existing.is_empty() {
        return Ok(existing);
    }
    replace_keys(c, &keys)?;
    Ok(keys)
}

/// Appends the events `audit` builds from a write's outcome, in the write's transaction.
pub(crate) fn append_audit_with<T: ?Sized>(
    c: &Connection,
    audit: &AuditWith<T>,
    outcome: &T,
) -> DbResult<()> {
    match audit {
        Some(build) => append_audit(c, &build(outcome)),
        None => Ok(()),
    }
}

pub(crate) fn append_audit(c: &Connection, events: &[AuditEvent]) -> DbResult<()> {
    let mut insert = c.prepare_cached(
        "INSERT INTO audit_events (tenant_id, kind, user_id, session_id, activity_id,
                                   correlation_id, ip, user_agent, reason, at, actor)
         VALUES (:tenant, :kind, :user, :session, :activity, :correlation, :ip, :user_agent,
                 :reason, :at, :actor)",
    )?;
    for e in events {
        insert.execute(named_params! {
            ":tenant": e.tenant_id.as_str(),
            ":kind": e.kind.as_str(),
            ":user": e.user_id.map(|u| u.to_string()),
            ":session": e.session_id.as_ref().map(|s| s.as_str()),
            ":activity": e.activity_id,
            ":correlation": e.correlation_id,
            ":ip": e.ip,
            ":user_agent": e.user_agent,
            ":reason": e.reason,
            ":at": e.at,
            ":actor": e.actor,
        })?;
    }
    Ok(())
}

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        id: row.get(0)?,
        tenant_id: tenant_col(row, 1)?,
        kind: enum_col(row, 2, "audit kind", AuditKind::parse)?,
        user_id: opt_uuid_col(row, 3)?,
        session_id: match row.get_ref(4)?.as_str_or_null()? {
            None => None,
            Some(_) => Some(session_id_col(row, 4)?),
        },
        activity_id: row.get(5)?,
        correlation_id: row.get(6)?,
        ip: row.get(7)?,
        user_agent: row.get(8)?,
        reason: row.get(9)?,
        at: row.get(10)?,
        actor: row.get(11)?,
    })
}

pub(crate) fn find_audit(
    c: &Connection,
    tenant: &TenantId,
    query: &AuditQuery,
) -> DbResult<Vec<AuditEvent>> {
    let mut f = Filter::new(
        "SELECT id, tenant_id, kind, user_id, session_id, activity_id, correlation_id, ip,
                user_agent, reason, at, actor
         FROM audit_events WHERE tenant_id = :tenant",
        ":tenant",
        tenant.as_str().to_owned(),
    );
    if let Some(user) = query.user_id {
        f.and("user_id = :user", ":user", user.to_string());
    }
    if let Some(session) = &query.session_id {
        f.and(
            "session_id = :session",
            ":session",
            session.as_str().to_owned(),
        );
    }
    if let Some(activity) = &query.activity_id {
        f.and("activity_id = :activity", ":activity", activity.clone());
    }
    if let Some(kind) = query.kind {
        f.and("kind = :kind", ":kind", kind.as_str().to_owned());
    }
    if let Some(since) = query.since {
        f.and("at >= :since", ":since", since);
    }
    if let Some(until) = query.until {
        f.and("at < :until", ":until", until);
    }
    if let Some(before) = query.before {
        f.and("id < :before", ":before", before);
    }
    f.finish("id DESC", query.limit);
    f.query(c, audit_from_row)
}

/// The tenant's events with `since <= at < until`, counted per bucket (starting at a
/// multiple of its width, also for times before 1970), kind and reason.
pub(crate) fn count_audit(
    c: &Connection,
    tenant: &TenantId,
    since: UnixTime,
    until: UnixTime,
    bucket: u32,
) -> DbResult<Vec<AuditCount>> {
    let mut stmt = c.prepare_cached(
        "SELECT at - (((at % :width) + :width) % :width) AS bucket, kind, reason, count(*)
         FROM audit_events
         WHERE tenant_id = :tenant AND at >= :since AND at < :until
         GROUP BY bucket, kind, reason",
    )?;
    let counts = stmt
        .query_map(
            named_params! {
                ":tenant": tenant.as_str(),
                ":since": since,
                ":until": until,
                ":width": i64::from(bucket.max(1)),
            },
            |row| {
                Ok(AuditCount {
                    bucket: row.get(0)?,
                    kind: enum_col(row, 1, "audit kind", AuditKind::parse)?,
                    reason: row.get(2)?,
                    count: row.get(3)?,
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    Ok(counts)
}
