//! The `SessionStore` operations. Each is one transaction (or one statement); revocations
//! append their `SessionEnded` entries, recorded timeouts their `SessionExpired` entries, to
//! the change log in the same transaction.
//!
//! Locks: creations under a limit and `revoke_user_sessions` take a transaction-scoped
//! advisory lock of the user first; rotations lock the refresh token row, then its session
//! row; purges delete tokens before their sessions (the same order); the timeout sweep locks
//! session rows with `SKIP LOCKED`, so it never waits on one; the change log's head
//! row is always the last lock a transaction takes. So no two operations wait on each other
//! in a cycle.

use crate::PgStore;
use crate::changes::{ended, timed_out};
use crate::codec::{hash, parse_enum, seconds, tenant, uuid};
use crate::error::{DbResult, bad_value};
use crate::identity::{bind_audit, insert_audit_with};
use async_trait::async_trait;
use sessiond_store::{
    AuditWith, AuthMethod, Change, DeviceInfo, NewSession, RefreshRecord, RevokeReason,
    RotateOutcome, Rotated, Rotation, RotationStep, Session, SessionId, SessionLimit, SessionQuery,
    SessionState, SessionStore, StateFilter, StoreError, StoreResult, TenantId, TokenHash,
    UnixTime, UserId,
};
use sqlx::postgres::{PgRow, Postgres};
use sqlx::{PgConnection, QueryBuilder, Row};

/// The columns `session_from_row` reads, in its order. A session stored before V4 has no
/// `auth_time`: it is its `created_at`.
macro_rules! session_columns {
    () => {
        session_columns!("")
    };
    ($t:literal) => {
        concat!(
            $t,
            "id, ",
            $t,
            "tenant_id, ",
            $t,
            "user_id::text, ",
            $t,
            "customer_id::text, ",
            $t,
            "auth_method, ",
            $t,
            "created_at, ",
            $t,
            "last_seen_at, ",
            $t,
            "absolute_expires_at, ",
            $t,
            "idle_ttl, ",
            $t,
            "user_agent, ",
            $t,
            "ip, ",
            $t,
            "label, ",
            $t,
            "state, ",
            $t,
            "revoke_reason, ",
            $t,
            "state_at, COALESCE(",
            $t,
            "auth_time, ",
            $t,
            "created_at)"
        )
    };
}

/// True for a session row active at `$now`: the SQL twin of `Session::is_active_at`. The
/// literal `state = 'active'` lets the planner use the partial index `sessions_active`.
macro_rules! active_at {
    ($now:literal) => {
        concat!(
            "(state = 'active' AND ",
            $now,
            " < absolute_expires_at AND (idle_ttl IS NULL OR ",
            $now,
            " < last_seen_at + idle_ttl))"
        )
    };
}

/// Sessions whose absolute expiry is longer ago than this are purged; more recently ended
/// ones stay listable.
const PURGE_AFTER: i64 = 86_400;

fn session_from_row(row: &PgRow) -> DbResult<Session> {
    let state: String = row.try_get(12)?;
    let state_at: Option<i64> = row.try_get(14)?;
    let state = match (state.as_str(), state_at) {
        ("active", None) => SessionState::Active,
        ("revoked", Some(at)) => {
            let reason: Option<String> = row.try_get(13)?;
            let reason = reason.unwrap_or_default();
            SessionState::Revoked {
                reason: parse_enum("revoke reason", &reason, RevokeReason::parse)?,
                at,
            }
        }
        ("expired", Some(at)) => SessionState::Expired { at },
        (other, _) => return Err(bad_value("session state", other)),
    };
    let auth_method: String = row.try_get(4)?;
    let idle_ttl: Option<i64> = row.try_get(8)?;
    Ok(Session {
        id: SessionId::from_generated(row.try_get(0)?),
        tenant_id: tenant(row.try_get(1)?)?,
        user_id: uuid(row.try_get(2)?)?,
        customer_id: uuid(row.try_get(3)?)?,
        auth_method: parse_enum("auth method", &auth_method, AuthMethod::parse)?,
        created_at: row.try_get(5)?,
        auth_time: row.try_get(15)?,
        last_seen_at: row.try_get(6)?,
        absolute_expires_at: row.try_get(7)?,
        idle_ttl: idle_ttl.map(seconds).transpose()?,
        device: DeviceInfo {
            user_agent: row.try_get(9)?,
            ip: row.try_get(10)?,
            label: row.try_get(11)?,
        },
        state,
    })
}

fn sessions_from_rows(rows: &[PgRow]) -> DbResult<Vec<Session>> {
    rows.iter().map(session_from_row).collect()
}

/// `(state, revoke_reason, state_at)` columns of a state.
fn state_columns(state: &SessionState) -> (&'static str, Option<&'static str>, Option<UnixTime>) {
    match *state {
        SessionState::Active => ("active", None, None),
        SessionState::Revoked { reason, at } => ("revoked", Some(reason.as_str()), Some(at)),
        SessionState::Expired { at } => ("expired", None, Some(at)),
    }
}

async fn insert_session(c: &mut PgConnection, s: &Session) -> DbResult<()> {
    let (state, reason, state_at) = state_columns(&s.state);
    sqlx::query(
        "INSERT INTO sessions (id, tenant_id, user_id, customer_id, auth_method, created_at,
                               last_seen_at, absolute_expires_at, idle_ttl, user_agent, ip,
                               label, state, revoke_reason, state_at, auth_time)
         VALUES ($1, $2, $3::uuid, $4::uuid, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                 $16)",
    )
    .bind(s.id.as_str())
    .bind(s.tenant_id.as_str())
    .bind(s.user_id.to_string())
    .bind(s.customer_id.to_string())
    .bind(s.auth_method.as_str())
    .bind(s.created_at)
    .bind(s.last_seen_at)
    .bind(s.absolute_expires_at)
    .bind(s.idle_ttl.map(i64::from))
    .bind(s.device.user_agent.as_deref())
    .bind(s.device.ip.as_deref())
    .bind(s.device.label.as_deref())
    .bind(state)
    .bind(reason)
    .bind(state_at)
    .bind(s.auth_time)
    .execute(c)
    .await?;
    Ok(())
}

async fn insert_refresh(
    c: &mut PgConnection,
    hash: &TokenHash,
    tenant: &TenantId,
    session: &SessionId,
    expires_at: UnixTime,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (hash, tenant_id, session_id, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(hash.0.as_slice())
    .bind(tenant.as_str())
    .bind(session.as_str())
    .bind(expires_at)
    .execute(c)
    .await?;
    Ok(())
}

/// The user's sessions active at `now`, oldest (first created) first.
async fn active_oldest_first(
    c: &mut PgConnection,
    tenant: &TenantId,
    user: &UserId,
    now: UnixTime,
) -> DbResult<Vec<SessionId>> {
    let ids: Vec<String> = sqlx::query_scalar(concat!(
        "SELECT id FROM sessions WHERE tenant_id = $1 AND user_id = $2::uuid AND ",
        active_at!("$3"),
        " ORDER BY created_at, seq"
    ))
    .bind(tenant.as_str())
    .bind(user.to_string())
    .bind(now)
    .fetch_all(c)
    .await?;
    Ok(ids.into_iter().map(SessionId::from_generated).collect())
}

/// Revokes those of `ids` that are active at `now`; returns them in the order of `ids`.
async fn revoke_ids(
    c: &mut PgConnection,
    ids: &[SessionId],
    reason: RevokeReason,
    now: UnixTime,
) -> DbResult<Vec<Session>> {
    let rows = sqlx::query(concat!(
        "UPDATE sessions SET state = 'revoked', revoke_reason = $2, state_at = $3
         WHERE id = ANY($1) AND ",
        active_at!("$3"),
        " RETURNING ",
        session_columns!()
    ))
    .bind(
        ids.iter()
            .map(|id| id.as_str().to_owned())
            .collect::<Vec<_>>(),
    )
    .bind(reason.as_str())
    .bind(now)
    .fetch_all(c)
    .await?;
    let mut revoked = sessions_from_rows(&rows)?;
    revoked.sort_by_key(|s| ids.iter().position(|id| *id == s.id));
    Ok(revoked)
}

/// Revokes one session of `tenant` if it is active at `now`.
async fn revoke_one(
    c: &mut PgConnection,
    tenant: &TenantId,
    id: &SessionId,
    reason: RevokeReason,
    now: UnixTime,
) -> DbResult<Option<Session>> {
    let row = sqlx::query(concat!(
        "UPDATE sessions SET state = 'revoked', revoke_reason = $3, state_at = $4
         WHERE id = $1 AND tenant_id = $2 AND ",
        active_at!("$4"),
        " RETURNING ",
        session_columns!()
    ))
    .bind(id.as_str())
    .bind(tenant.as_str())
    .bind(reason.as_str())
    .bind(now)
    .fetch_optional(c)
    .await?;
    row.as_ref().map(session_from_row).transpose()
}

fn refresh_from_row(row: &PgRow) -> DbResult<RefreshRecord> {
    refresh_from_columns(row, 0)
}

/// A refresh token from `refresh_columns!` starting at column `at` of `row`.
fn refresh_from_columns(row: &PgRow, at: usize) -> DbResult<RefreshRecord> {
    let rotated_at: Option<i64> = row.try_get(at + 4)?;
    let successor: Option<Vec<u8>> = row.try_get(at + 5)?;
    let sealed: Option<Vec<u8>> = row.try_get(at + 6)?;
    let rotated = match (rotated_at, successor, sealed) {
        (None, None, None) => None,
        (Some(at), Some(successor), Some(sealed_successor)) => Some(Rotated {
            at,
            successor: hash(successor)?,
            sealed_successor,
        }),
        _ => return Err(bad_value("rotation", "partial")),
    };
    Ok(RefreshRecord {
        hash: hash(row.try_get(at)?)?,
        tenant_id: tenant(row.try_get(at + 1)?)?,
        session_id: SessionId::from_generated(row.try_get(at + 2)?),
        expires_at: row.try_get(at + 3)?,
        rotated,
    })
}

/// How many columns `session_columns!` names.
const SESSION_COLUMNS: usize = 16;

/// A rotation's write ($1 successor hash, $2 tenant, $3 session, $4 successor expiry, $5 now,
/// $6 sealed successor, $7 presented hash): the successor's row, the presented token marked
/// rotated and the session's activity, in one statement returning the session. Its `WITH`
/// clauses, which [`ROTATE_AUDITED`] extends, and its final update.
const ROTATE_WITH: &str = "WITH successor AS (
         INSERT INTO refresh_tokens (hash, tenant_id, session_id, expires_at)
         VALUES ($1, $2, $3, $4)
     ), presented AS (
         UPDATE refresh_tokens
         SET rotated_at = $5, successor = $1, sealed_successor = $6
         WHERE hash = $7
     )";
const ROTATE_UPDATE: &str = concat!(
    " UPDATE sessions SET last_seen_at = GREATEST(last_seen_at, $5)
     WHERE id = $3 RETURNING ",
    session_columns!()
);
static ROTATE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{ROTATE_WITH}{ROTATE_UPDATE}"));
/// [`ROTATE`] with the rotation's audit events bound as $8 to $18 (see `bind_audit`).
static ROTATE_AUDITED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{ROTATE_WITH}, audit AS ({}){ROTATE_UPDATE}",
        crate::identity::audit_insert_sql(8)
    )
});

/// The columns `refresh_from_row` reads, in its order.
macro_rules! refresh_columns {
    () => {
        refresh_columns!("")
    };
    ($t:literal) => {
        concat!(
            $t,
            "hash, ",
            $t,
            "tenant_id, ",
            $t,
            "session_id, ",
            $t,
            "expires_at, ",
            $t,
            "rotated_at, ",
            $t,
            "successor, ",
            $t,
            "sealed_successor"
        )
    };
}

impl PgStore {
    /// Serialises the session-limit checks of one user until the transaction ends.
    async fn lock_user(
        &self,
        c: &mut PgConnection,
        tenant: &TenantId,
        user: &UserId,
    ) -> DbResult<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(self.lock_name(&format!("user:{tenant}:{user}")))
            .execute(c)
            .await?;
        Ok(())
    }

    async fn create_db(
        &self,
        new: NewSession,
        limit: SessionLimit,
        now: UnixTime,
        audit: AuditWith<[SessionId]>,
    ) -> DbResult<Vec<SessionId>> {
        let s = &new.session;
        let mut tx = self.pool().begin().await?;
        let evict = match limit {
            SessionLimit::Unlimited => Vec::new(),
            SessionLimit::Reject(max) => {
                self.lock_user(&mut tx, &s.tenant_id, &s.user_id).await?;
                let active = active_oldest_first(&mut tx, &s.tenant_id, &s.user_id, now).await?;
                if active.len() >= max as usize {
                    tx.rollback().await?;
                    return Err(StoreError::LimitReached.into());
                }
                Vec::new()
            }
            SessionLimit::EvictOldest(max) => {
                self.lock_user(&mut tx, &s.tenant_id, &s.user_id).await?;
                let active = active_oldest_first(&mut tx, &s.tenant_id, &s.user_id, now).await?;
                let excess = (active.len() + 1).saturating_sub(max.max(1) as usize);
                active.into_iter().take(excess).collect()
            }
        };
        let evicted = if evict.is_empty() {
            Vec::new()
        } else {
            revoke_ids(&mut tx, &evict, RevokeReason::Displaced, now).await?
        };
        // A taken id or token hash fails here, and the whole transaction (evictions
        // included) rolls back.
        insert_session(&mut tx, s).await?;
        if let Some(r) = &new.refresh {
            insert_refresh(&mut tx, &r.hash, &s.tenant_id, &s.id, r.expires_at).await?;
        }
        let changes: Vec<Change> = evicted
            .iter()
            .map(|e| ended(e, RevokeReason::Displaced))
            .collect();
        let evicted: Vec<SessionId> = evicted.into_iter().map(|e| e.id).collect();
        insert_audit_with(&mut tx, &audit, &evicted[..]).await?;
        self.commit_logged(tx, &changes).await?;
        Ok(evicted)
    }

    async fn get_db(&self, tenant: &TenantId, id: &SessionId) -> DbResult<Option<Session>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(id.as_str())
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_db(&self, tenant: &TenantId, id: &SessionId, now: UnixTime) -> DbResult<()> {
        sqlx::query(concat!(
            "UPDATE sessions SET last_seen_at = $3
             WHERE id = $1 AND tenant_id = $2 AND last_seen_at < $3 AND ",
            active_at!("$3")
        ))
        .bind(id.as_str())
        .bind(tenant.as_str())
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// One statement on the session's row; not logged (nothing a node caches depends on it).
    async fn reauthenticate_db(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
    ) -> DbResult<Option<Session>> {
        let row = sqlx::query(concat!(
            "UPDATE sessions SET auth_time = GREATEST(COALESCE(auth_time, created_at), $3),
                                 last_seen_at = GREATEST(last_seen_at, $3)
             WHERE id = $1 AND tenant_id = $2 AND ",
            active_at!("$3"),
            " RETURNING ",
            session_columns!()
        ))
        .bind(id.as_str())
        .bind(tenant.as_str())
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn rotate_db(
        &self,
        r: Rotation,
        audit: AuditWith<RotateOutcome>,
    ) -> DbResult<RotateOutcome> {
        let mut tx = self.pool().begin().await?;
        // One statement reads and locks the token row and then its session's (row locks are
        // taken in the order of the FROM list): racing rotations of one token take turns, and
        // each decides on what the previous one committed. A token has a session (a foreign
        // key): no row is no token.
        let row = sqlx::query(concat!(
            "SELECT ",
            session_columns!("s."),
            ", ",
            refresh_columns!("t."),
            " FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
             WHERE t.hash = $1 FOR NO KEY UPDATE OF t, s"
        ))
        .bind(r.presented.0.as_slice())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(RotateOutcome::Invalid);
        };
        let session = session_from_row(&row)?;
        let presented = refresh_from_columns(&row, SESSION_COLUMNS)?;
        let successor_is_current = match &presented.rotated {
            None => false,
            Some(rotated) => {
                let current: Option<bool> = sqlx::query_scalar(
                    "SELECT rotated_at IS NULL FROM refresh_tokens WHERE hash = $1",
                )
                .bind(rotated.successor.0.as_slice())
                .fetch_optional(&mut *tx)
                .await?;
                current == Some(true)
            }
        };
        let (outcome, changes) = match r.step(&presented, &session, successor_is_current) {
            RotationStep::Invalid => (RotateOutcome::Invalid, Vec::new()),
            RotationStep::SessionInactive => {
                (RotateOutcome::SessionInactive { session }, Vec::new())
            }
            RotationStep::Rotate => {
                // One statement: store the successor (a taken hash conflicts and rolls back),
                // mark the presented token rotated, count the rotation as activity, and
                // append the rotation's audit events (built from the outcome the update
                // gives: the session with `last_seen_at` moved forward).
                let mut after = session;
                after.last_seen_at = after.last_seen_at.max(r.now);
                let outcome = RotateOutcome::Rotated { session: after };
                let events = audit.as_ref().map(|build| build(&outcome));
                let sql = match &events {
                    Some(e) if !e.is_empty() => &**ROTATE_AUDITED,
                    _ => &**ROTATE,
                };
                let q = sqlx::query(sql)
                    .bind(r.successor.hash.0.as_slice())
                    .bind(r.tenant_id.as_str())
                    .bind(presented.session_id.as_str())
                    .bind(r.successor.expires_at)
                    .bind(r.now)
                    .bind(r.sealed_successor.as_slice())
                    .bind(r.presented.0.as_slice());
                let q = match &events {
                    Some(e) if !e.is_empty() => bind_audit(q, e),
                    _ => q,
                };
                let row = q.fetch_one(&mut *tx).await?;
                let session = session_from_row(&row)?;
                self.commit_logged(tx, &[]).await?;
                return Ok(RotateOutcome::Rotated { session });
            }
            RotationStep::Replay => (
                RotateOutcome::Replayed {
                    session,
                    sealed_successor: presented
                        .rotated
                        .map(|rotated| rotated.sealed_successor)
                        .unwrap_or_default(),
                },
                Vec::new(),
            ),
            RotationStep::Reuse => {
                let reason = RevokeReason::ReuseDetected;
                match revoke_one(&mut tx, &r.tenant_id, &session.id, reason, r.now).await? {
                    Some(revoked) => {
                        let change = ended(&revoked, reason);
                        let outcome = RotateOutcome::Reused {
                            session: revoked,
                            revoked: true,
                        };
                        (outcome, vec![change])
                    }
                    None => (
                        RotateOutcome::Reused {
                            session,
                            revoked: false,
                        },
                        Vec::new(),
                    ),
                }
            }
        };
        insert_audit_with(&mut tx, &audit, &outcome).await?;
        self.commit_logged(tx, &changes).await?;
        Ok(outcome)
    }

    async fn revoke_db(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        reason: RevokeReason,
        now: UnixTime,
        audit: AuditWith<[Session]>,
    ) -> DbResult<Option<Session>> {
        let mut tx = self.pool().begin().await?;
        let revoked = revoke_one(&mut tx, tenant, id, reason, now).await?;
        let changes: Vec<Change> = revoked.iter().map(|s| ended(s, reason)).collect();
        insert_audit_with(&mut tx, &audit, revoked.as_slice()).await?;
        self.commit_logged(tx, &changes).await?;
        Ok(revoked)
    }

    async fn revoke_user_db(
        &self,
        tenant: &TenantId,
        user: &UserId,
        reason: RevokeReason,
        keep: Option<&SessionId>,
        now: UnixTime,
        audit: AuditWith<[Session]>,
    ) -> DbResult<Vec<Session>> {
        let mut tx = self.pool().begin().await?;
        // Several rows of one user: the lock that evictions take too, so two multi-row
        // updates of one user never lock rows in opposite orders (a deadlock).
        self.lock_user(&mut tx, tenant, user).await?;
        let rows = sqlx::query(concat!(
            "UPDATE sessions SET state = 'revoked', revoke_reason = $4, state_at = $5
             WHERE tenant_id = $1 AND user_id = $2::uuid AND ($3::text IS NULL OR id <> $3)
               AND ",
            active_at!("$5"),
            " RETURNING ",
            session_columns!()
        ))
        .bind(tenant.as_str())
        .bind(user.to_string())
        .bind(keep.map(SessionId::as_str))
        .bind(reason.as_str())
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut revoked = sessions_from_rows(&rows)?;
        revoked.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        let mut changes: Vec<Change> = revoked.iter().map(|s| ended(s, reason)).collect();
        if keep.is_none() && !revoked.is_empty() {
            changes.push(Change::UserSessionsEnded {
                tenant: tenant.clone(),
                user: *user,
                before: now,
                reason,
            });
        }
        insert_audit_with(&mut tx, &audit, &revoked[..]).await?;
        self.commit_logged(tx, &changes).await?;
        Ok(revoked)
    }

    async fn mark_expired_db(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
        audit: AuditWith<bool>,
    ) -> DbResult<bool> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(concat!(
            "UPDATE sessions SET state = 'expired', state_at = $3
             WHERE id = $1 AND tenant_id = $2 AND state = 'active' AND NOT ",
            active_at!("$3"),
            " RETURNING ",
            session_columns!()
        ))
        .bind(id.as_str())
        .bind(tenant.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let expired = row.as_ref().map(session_from_row).transpose()?;
        let changes: Vec<Change> = expired.iter().map(timed_out).collect();
        insert_audit_with(&mut tx, &audit, &expired.is_some()).await?;
        self.commit_logged(tx, &changes).await?;
        Ok(expired.is_some())
    }

    /// Records the timeouts of up to `batch` sessions active in state but past a timeout at
    /// `now`, in one transaction, logging each (oldest first). `FOR UPDATE SKIP LOCKED`:
    /// concurrent sweeps take disjoint rows and never wait on each other or on a session
    /// being revoked; a row updated meanwhile is re-checked (`state = 'active'`). The partial
    /// index `sessions_active` bounds the search to active sessions; the idle condition
    /// (`last_seen_at + idle_ttl`) is checked on each of them, a scan of the active sessions
    /// at worst.
    async fn expire_sessions_db(&self, now: UnixTime, batch: usize) -> DbResult<Vec<Session>> {
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        let mut tx = self.pool().begin().await?;
        let rows = sqlx::query(concat!(
            "WITH due AS (
                 SELECT id FROM sessions WHERE state = 'active' AND NOT ",
            active_at!("$1"),
            " ORDER BY absolute_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
             )
             UPDATE sessions SET state = 'expired', state_at = $1
             WHERE id IN (SELECT id FROM due) AND state = 'active' RETURNING ",
            session_columns!()
        ))
        .bind(now)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        let mut expired = sessions_from_rows(&rows)?;
        expired.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        let changes: Vec<Change> = expired.iter().map(timed_out).collect();
        self.commit_logged(tx, &changes).await?;
        Ok(expired)
    }

    async fn find_db(
        &self,
        tenant: &TenantId,
        query: &SessionQuery,
        now: UnixTime,
    ) -> DbResult<Vec<Session>> {
        let mut q = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE tenant_id = "
        ));
        q.push_bind(tenant.as_str().to_owned());
        if let Some(user) = query.user_id {
            q.push(" AND user_id = ");
            q.push_bind(user.to_string());
            q.push("::uuid");
        }
        let push_active = |q: &mut QueryBuilder<Postgres>| {
            q.push("(state = 'active' AND ");
            q.push_bind(now);
            q.push(" < absolute_expires_at AND (idle_ttl IS NULL OR ");
            q.push_bind(now);
            q.push(" < last_seen_at + idle_ttl))");
        };
        match query.state {
            None => {}
            Some(StateFilter::Active) => {
                q.push(" AND ");
                push_active(&mut q);
            }
            Some(StateFilter::Revoked) => {
                q.push(" AND state = 'revoked'");
            }
            Some(StateFilter::Expired) => {
                q.push(" AND (state = 'expired' OR (state = 'active' AND NOT ");
                push_active(&mut q);
                q.push("))");
            }
        }
        if let Some(cursor) = &query.before {
            // Below the cursor's place in the order; a session that is gone (or another
            // tenant's) has no `seq`, and 0 is below every one: created before its time.
            q.push(" AND (created_at, seq) < (");
            q.push_bind(cursor.created_at);
            q.push(", COALESCE((SELECT c.seq FROM sessions c WHERE c.id = ");
            q.push_bind(cursor.id.as_str().to_owned());
            q.push(" AND c.tenant_id = ");
            q.push_bind(tenant.as_str().to_owned());
            q.push("), 0))");
        }
        q.push(" ORDER BY created_at DESC, seq DESC LIMIT ");
        q.push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX));
        let rows = q.build().fetch_all(self.pool()).await?;
        sessions_from_rows(&rows)
    }

    /// A nonce is expired from `expires_at` on: the upsert re-records an expired one in place,
    /// so the answer never depends on purges (`purge_expired` deletes expired nonces).
    async fn consume_nonce_db(
        &self,
        tenant: &TenantId,
        nonce: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> DbResult<bool> {
        let done = sqlx::query(
            "INSERT INTO nonces (tenant_id, nonce, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at
             WHERE nonces.expires_at <= $4",
        )
        .bind(tenant.as_str())
        .bind(nonce)
        .bind(expires_at)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn count_active_db(&self, now: UnixTime) -> DbResult<u64> {
        let n: i64 = sqlx::query_scalar(concat!(
            "SELECT count(*) FROM sessions WHERE ",
            active_at!("$1")
        ))
        .bind(now)
        .fetch_one(self.pool())
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn get_refresh_db(&self, hash: &TokenHash) -> DbResult<Option<RefreshRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            refresh_columns!(),
            " FROM refresh_tokens WHERE hash = $1"
        ))
        .bind(hash.0.as_slice())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(refresh_from_row).transpose()
    }

    async fn ping_db(&self) -> DbResult<()> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }

    /// One node at a time (the others get 0 at once): deletes up to `batch` sessions whose
    /// absolute expiry is more than a day old, with their refresh tokens, and up to `batch`
    /// expired nonces. Tokens go before their sessions, the order rotations lock them in.
    async fn purge_expired_db(&self, now: UnixTime, batch: usize) -> DbResult<u64> {
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        let mut tx = self.pool().begin().await?;
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(self.lock_name("purge"))
                .fetch_one(&mut *tx)
                .await?;
        if !locked {
            tx.rollback().await?;
            return Ok(0);
        }
        let victims: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM sessions WHERE absolute_expires_at < $1
             ORDER BY absolute_expires_at LIMIT $2",
        )
        .bind(now.saturating_sub(PURGE_AFTER))
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        let mut purged = 0;
        if !victims.is_empty() {
            purged += sqlx::query("DELETE FROM refresh_tokens WHERE session_id = ANY($1)")
                .bind(&victims)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            purged += sqlx::query("DELETE FROM sessions WHERE id = ANY($1)")
                .bind(&victims)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        purged += sqlx::query(
            "DELETE FROM nonces WHERE (tenant_id, nonce) IN (
                 SELECT tenant_id, nonce FROM nonces WHERE expires_at <= $1 LIMIT $2
                 FOR UPDATE SKIP LOCKED
             )",
        )
        .bind(now)
        .bind(batch)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // No counter is kept longer than an hour past its latest hit (the longest
        // `forget_after` sessiond uses is 15 minutes).
        purged += sqlx::query(
            "DELETE FROM counters WHERE key IN (
                 SELECT key FROM counters WHERE last < $1 LIMIT $2 FOR UPDATE SKIP LOCKED
             )",
        )
        .bind(now.saturating_sub(3_600))
        .bind(batch)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(purged)
    }
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(
        &self,
        new: NewSession,
        limit: SessionLimit,
        now: UnixTime,
        audit: AuditWith<[SessionId]>,
    ) -> StoreResult<Vec<SessionId>> {
        self.run(self.create_db(new, limit, now, audit)).await
    }

    async fn get_session(&self, tenant: &TenantId, id: &SessionId) -> StoreResult<Option<Session>> {
        self.run(self.get_db(tenant, id)).await
    }

    async fn touch_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
    ) -> StoreResult<()> {
        self.run(self.touch_db(tenant, id, now)).await
    }

    async fn reauthenticate(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
    ) -> StoreResult<Option<Session>> {
        self.run(self.reauthenticate_db(tenant, id, now)).await
    }

    async fn rotate_refresh(
        &self,
        rotation: Rotation,
        audit: AuditWith<RotateOutcome>,
    ) -> StoreResult<RotateOutcome> {
        self.run(self.rotate_db(rotation, audit)).await
    }

    async fn revoke_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        reason: RevokeReason,
        now: UnixTime,
        audit: AuditWith<[Session]>,
    ) -> StoreResult<Option<Session>> {
        self.run(self.revoke_db(tenant, id, reason, now, audit))
            .await
    }

    async fn revoke_user_sessions(
        &self,
        tenant: &TenantId,
        user: &UserId,
        reason: RevokeReason,
        keep: Option<&SessionId>,
        now: UnixTime,
        audit: AuditWith<[Session]>,
    ) -> StoreResult<Vec<Session>> {
        self.run(self.revoke_user_db(tenant, user, reason, keep, now, audit))
            .await
    }

    async fn expire_sessions(&self, now: UnixTime, batch: usize) -> StoreResult<Vec<Session>> {
        self.run(self.expire_sessions_db(now, batch)).await
    }

    async fn mark_expired(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
        audit: AuditWith<bool>,
    ) -> StoreResult<bool> {
        self.run(self.mark_expired_db(tenant, id, now, audit)).await
    }

    async fn find_sessions(
        &self,
        tenant: &TenantId,
        query: &SessionQuery,
        now: UnixTime,
    ) -> StoreResult<Vec<Session>> {
        self.run(self.find_db(tenant, query, now)).await
    }

    async fn consume_nonce(
        &self,
        tenant: &TenantId,
        nonce: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool> {
        self.run(self.consume_nonce_db(tenant, nonce, expires_at, now))
            .await
    }

    async fn count_active_sessions(&self, now: UnixTime) -> StoreResult<u64> {
        self.run(self.count_active_db(now)).await
    }

    async fn get_refresh(&self, hash: &TokenHash) -> StoreResult<Option<RefreshRecord>> {
        self.run(self.get_refresh_db(hash)).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.run(self.ping_db()).await
    }

    async fn purge_expired(&self, now: UnixTime, batch: usize) -> StoreResult<u64> {
        self.run(self.purge_expired_db(now, batch)).await
    }
}

#[cfg(test)]
mod tests {
    /// The columns of a list, counting only the commas outside parentheses.
    fn columns(list: &str) -> usize {
        let mut depth = 0i32;
        let mut n = 1;
        for c in list.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => n += 1,
                _ => {}
            }
        }
        n
    }

    #[test]
    fn the_rotation_reads_its_columns_where_they_are() {
        assert_eq!(columns(session_columns!()), super::SESSION_COLUMNS);
        assert_eq!(columns(session_columns!("s.")), super::SESSION_COLUMNS);
        assert_eq!(columns(refresh_columns!("t.")), 7);
    }
}
