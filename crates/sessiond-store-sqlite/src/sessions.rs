//! The `SessionStore` operations, each a function over one connection. Writers run inside the
//! writer's transaction, so each function is atomic as a whole.

use crate::changes;
use crate::codec::{enum_col, hash_col, opt_hash_col, session_id_col, tenant_col, uuid_col};
use crate::error::{DbResult, bad_column};
use crate::filter::Filter;
use rusqlite::{Connection, OptionalExtension, Row, named_params};
use sessiond_store::{
    AuthMethod, NewSession, RefreshRecord, RevokeReason, RotateOutcome, Rotated, Rotation,
    RotationStep, Session, SessionId, SessionLimit, SessionQuery, SessionState, StateFilter,
    StoreError, TenantId, TokenHash, UnixTime, UserId,
};

/// The columns `session_from_row` reads, in its order. A session stored before V7 has no
/// `auth_time`: it is its `created_at`.
macro_rules! session_columns {
    () => {
        "id, tenant_id, user_id, customer_id, auth_method, created_at, last_seen_at, \
         absolute_expires_at, idle_ttl, user_agent, ip, label, state, revoke_reason, state_at, \
         ifnull(auth_time, created_at)"
    };
}

/// True for a session row active at `:now`: the SQL twin of `Session::is_active_at`.
macro_rules! active_at_now {
    () => {
        "(state = 'active' AND :now < absolute_expires_at \
          AND (idle_ttl IS NULL OR :now < last_seen_at + idle_ttl))"
    };
}

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    let state = match row.get_ref(12)?.as_str()? {
        "active" => SessionState::Active,
        "revoked" => SessionState::Revoked {
            reason: enum_col(row, 13, "revoke reason", RevokeReason::parse)?,
            at: row.get(14)?,
        },
        "expired" => SessionState::Expired { at: row.get(14)? },
        other => return Err(bad_column(12, "session state", other)),
    };
    Ok(Session {
        id: session_id_col(row, 0)?,
        tenant_id: tenant_col(row, 1)?,
        user_id: uuid_col(row, 2)?,
        customer_id: uuid_col(row, 3)?,
        auth_method: enum_col(row, 4, "auth method", AuthMethod::parse)?,
        created_at: row.get(5)?,
        auth_time: row.get(15)?,
        last_seen_at: row.get(6)?,
        absolute_expires_at: row.get(7)?,
        idle_ttl: row.get(8)?,
        device: sessiond_store::DeviceInfo {
            user_agent: row.get(9)?,
            ip: row.get(10)?,
            label: row.get(11)?,
        },
        state,
    })
}

/// `(state, revoke_reason, state_at)` columns of a state.
fn state_columns(state: &SessionState) -> (&'static str, Option<&'static str>, Option<UnixTime>) {
    match *state {
        SessionState::Active => ("active", None, None),
        SessionState::Revoked { reason, at } => ("revoked", Some(reason.as_str()), Some(at)),
        SessionState::Expired { at } => ("expired", None, Some(at)),
    }
}

pub(crate) fn create(
    c: &Connection,
    new: &NewSession,
    limit: SessionLimit,
    now: UnixTime,
) -> DbResult<Vec<SessionId>> {
    let s = &new.session;
    let evict = match limit {
        SessionLimit::Unlimited => Vec::new(),
        SessionLimit::Reject(max) => {
            if active_oldest_first(c, &s.tenant_id, &s.user_id, now)?.len() >= max as usize {
                return Err(StoreError::LimitReached.into());
            }
            Vec::new()
        }
        SessionLimit::EvictOldest(max) => {
            let active = active_oldest_first(c, &s.tenant_id, &s.user_id, now)?;
            let excess = (active.len() + 1).saturating_sub(max.max(1) as usize);
            active.into_iter().take(excess).collect()
        }
    };
    for id in &evict {
        let displaced = c
            .prepare_cached(concat!(
                "UPDATE sessions SET state = 'revoked', revoke_reason = :reason, state_at = :now
                 WHERE id = :id RETURNING ",
                session_columns!()
            ))?
            .query_row(
                named_params! {
                    ":id": id.as_str(),
                    ":reason": RevokeReason::Displaced.as_str(),
                    ":now": now,
                },
                session_from_row,
            )?;
        changes::ended(c, &displaced, RevokeReason::Displaced)?;
    }
    insert(c, s)?;
    if let Some(r) = &new.refresh {
        insert_refresh(c, &r.hash, &s.tenant_id, &s.id, r.expires_at)?;
    }
    Ok(evict)
}

fn active_oldest_first(
    c: &Connection,
    tenant: &TenantId,
    user: &UserId,
    now: UnixTime,
) -> DbResult<Vec<SessionId>> {
    let mut stmt = c.prepare_cached(concat!(
        "SELECT id FROM sessions WHERE tenant_id = :tenant AND user_id = :user AND ",
        active_at_now!(),
        " ORDER BY created_at, seq"
    ))?;
    let ids = stmt
        .query_map(
            named_params! {":tenant": tenant.as_str(), ":user": user.to_string(), ":now": now},
            |row| session_id_col(row, 0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// Inserts the session after every other in creation order (`seq`: one writer, so the next
/// number is the largest plus one).
fn insert(c: &Connection, s: &Session) -> DbResult<()> {
    let (state, reason, state_at) = state_columns(&s.state);
    c.prepare_cached(
        "INSERT INTO sessions (id, tenant_id, user_id, customer_id, auth_method, created_at,
                               last_seen_at, absolute_expires_at, idle_ttl, user_agent, ip,
                               label, state, revoke_reason, state_at, auth_time, seq)
         VALUES (:id, :tenant, :user, :customer, :auth_method, :created_at, :last_seen_at,
                 :absolute_expires_at, :idle_ttl, :user_agent, :ip, :label, :state,
                 :revoke_reason, :state_at, :auth_time,
                 (SELECT ifnull(max(seq), 0) + 1 FROM sessions))",
    )?
    .execute(named_params! {
        ":id": s.id.as_str(),
        ":tenant": s.tenant_id.as_str(),
        ":user": s.user_id.to_string(),
        ":customer": s.customer_id.to_string(),
        ":auth_method": s.auth_method.as_str(),
        ":created_at": s.created_at,
        ":last_seen_at": s.last_seen_at,
        ":absolute_expires_at": s.absolute_expires_at,
        ":idle_ttl": s.idle_ttl,
        ":user_agent": s.device.user_agent,
        ":ip": s.device.ip,
        ":label": s.device.label,
        ":state": state,
        ":revoke_reason": reason,
        ":state_at": state_at,
        ":auth_time": s.auth_time,
    })?;
    Ok(())
}

pub(crate) fn get(c: &Connection, tenant: &TenantId, id: &SessionId) -> DbResult<Option<Session>> {
    let session = c
        .prepare_cached(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = :id AND tenant_id = :tenant"
        ))?
        .query_row(
            named_params! {":id": id.as_str(), ":tenant": tenant.as_str()},
            session_from_row,
        )
        .optional()?;
    Ok(session)
}

/// The session a refresh token points at, whatever the tenant: `Rotation::step` judges that.
fn get_any_tenant(c: &Connection, id: &SessionId) -> DbResult<Option<Session>> {
    let session = c
        .prepare_cached(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = :id"
        ))?
        .query_row(named_params! {":id": id.as_str()}, session_from_row)
        .optional()?;
    Ok(session)
}

pub(crate) fn touch(
    c: &Connection,
    tenant: &TenantId,
    id: &SessionId,
    now: UnixTime,
) -> DbResult<()> {
    c.prepare_cached(concat!(
        "UPDATE sessions SET last_seen_at = :now
         WHERE id = :id AND tenant_id = :tenant AND last_seen_at < :now AND ",
        active_at_now!()
    ))?
    .execute(named_params! {":id": id.as_str(), ":tenant": tenant.as_str(), ":now": now})?;
    Ok(())
}

/// Moves `auth_time` and `last_seen_at` forward to `now` if the session is active; not
/// logged (nothing a node caches depends on it).
pub(crate) fn reauthenticate(
    c: &Connection,
    tenant: &TenantId,
    id: &SessionId,
    now: UnixTime,
) -> DbResult<Option<Session>> {
    let session = c
        .prepare_cached(concat!(
            "UPDATE sessions SET auth_time = max(ifnull(auth_time, created_at), :now),
                                 last_seen_at = max(last_seen_at, :now)
             WHERE id = :id AND tenant_id = :tenant AND ",
            active_at_now!(),
            " RETURNING ",
            session_columns!()
        ))?
        .query_row(
            named_params! {":id": id.as_str(), ":tenant": tenant.as_str(), ":now": now},
            session_from_row,
        )
        .optional()?;
    Ok(session)
}

pub(crate) fn revoke(
    c: &Connection,
    tenant: &TenantId,
    id: &SessionId,
    reason: RevokeReason,
    now: UnixTime,
) -> DbResult<Option<Session>> {
    let session = c
        .prepare_cached(concat!(
            "UPDATE sessions SET state = 'revoked', revoke_reason = :reason, state_at = :now
             WHERE id = :id AND tenant_id = :tenant AND ",
            active_at_now!(),
            " RETURNING ",
            session_columns!()
        ))?
        .query_row(
            named_params! {
                ":id": id.as_str(),
                ":tenant": tenant.as_str(),
                ":reason": reason.as_str(),
                ":now": now,
            },
            session_from_row,
        )
        .optional()?;
    if let Some(s) = &session {
        changes::ended(c, s, reason)?;
    }
    Ok(session)
}

/// Revokes the user's active sessions but `keep`, logging each (oldest first) and then,
/// without `keep`, the user's cut-off.
pub(crate) fn revoke_user(
    c: &Connection,
    tenant: &TenantId,
    user: &UserId,
    reason: RevokeReason,
    keep: Option<&SessionId>,
    now: UnixTime,
) -> DbResult<Vec<Session>> {
    let mut stmt = c.prepare_cached(concat!(
        "UPDATE sessions SET state = 'revoked', revoke_reason = :reason, state_at = :now
         WHERE tenant_id = :tenant AND user_id = :user AND (:keep IS NULL OR id <> :keep) AND ",
        active_at_now!(),
        " RETURNING ",
        session_columns!()
    ))?;
    let mut revoked: Vec<Session> = stmt
        .query_map(
            named_params! {
                ":tenant": tenant.as_str(),
                ":user": user.to_string(),
                ":keep": keep.map(SessionId::as_str),
                ":reason": reason.as_str(),
                ":now": now,
            },
            session_from_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    revoked.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    for s in &revoked {
        changes::ended(c, s, reason)?;
    }
    if keep.is_none() && !revoked.is_empty() {
        changes::user_sessions_ended(c, tenant, user, now, reason)?;
    }
    Ok(revoked)
}

pub(crate) fn mark_expired(
    c: &Connection,
    tenant: &TenantId,
    id: &SessionId,
    now: UnixTime,
) -> DbResult<bool> {
    let expired = c
        .prepare_cached(concat!(
            "UPDATE sessions SET state = 'expired', state_at = :now
             WHERE id = :id AND tenant_id = :tenant AND state = 'active' AND NOT ",
            active_at_now!(),
            " RETURNING ",
            session_columns!()
        ))?
        .query_row(
            named_params! {":id": id.as_str(), ":tenant": tenant.as_str(), ":now": now},
            session_from_row,
        )
        .optional()?;
    if let Some(s) = &expired {
        changes::expired(c, s)?;
    }
    Ok(expired.is_some())
}

/// Records the timeouts of up to `batch` sessions active in state but past a timeout at
/// `now`, logging each (oldest first). The partial index `sessions_active_by_expiry` (V9)
/// bounds the search to active sessions; the idle condition (`last_seen_at + idle_ttl`) is
/// checked on each of them, a scan of the active sessions at worst. One writer: a session is
/// never recorded twice.
pub(crate) fn expire_sessions(
    c: &Connection,
    now: UnixTime,
    batch: usize,
) -> DbResult<Vec<Session>> {
    let mut stmt = c.prepare_cached(concat!(
        "UPDATE sessions SET state = 'expired', state_at = :now
         WHERE id IN (SELECT id FROM sessions
                      WHERE state = 'active' AND NOT ",
        active_at_now!(),
        " ORDER BY absolute_expires_at LIMIT :batch) RETURNING ",
        session_columns!()
    ))?;
    let mut expired: Vec<Session> = stmt
        .query_map(
            named_params! {":now": now, ":batch": i64::try_from(batch).unwrap_or(i64::MAX)},
            session_from_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    expired.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    for s in &expired {
        changes::expired(c, s)?;
    }
    Ok(expired)
}

pub(crate) fn count_active(c: &Connection, now: UnixTime) -> DbResult<u64> {
    let n: i64 = c
        .prepare_cached(concat!(
            "SELECT COUNT(*) FROM sessions WHERE ",
            active_at_now!()
        ))?
        .query_row(named_params! {":now": now}, |row| row.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(crate) fn find(
    c: &Connection,
    tenant: &TenantId,
    query: &SessionQuery,
    now: UnixTime,
) -> DbResult<Vec<Session>> {
    let mut f = Filter::new(
        concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE tenant_id = :tenant"
        ),
        ":tenant",
        tenant.as_str().to_owned(),
    );
    if let Some(user) = query.user_id {
        f.and("user_id = :user", ":user", user.to_string());
    }
    match query.state {
        None => {}
        Some(StateFilter::Active) => f.and(active_at_now!(), ":now", now),
        Some(StateFilter::Revoked) => f.and_const("state = 'revoked'"),
        Some(StateFilter::Expired) => f.and(
            concat!(
                "(state = 'expired' OR (state = 'active' AND NOT ",
                active_at_now!(),
                "))"
            ),
            ":now",
            now,
        ),
    }
    if let Some(cursor) = &query.before {
        // The sessions after the cursor's in the listing's order (newest first). If the
        // cursor's session is gone (or not the tenant's), its place is before every session
        // created in its second: seq numbers start at 1.
        f.and_with(
            "(created_at, seq) < (:before_at, ifnull(
                 (SELECT seq FROM sessions WHERE tenant_id = :tenant AND id = :before_id), 0))",
            [
                (":before_at", cursor.created_at.into()),
                (":before_id", cursor.id.as_str().to_owned().into()),
            ],
        );
    }
    f.finish("created_at DESC, seq DESC", query.limit);
    f.query(c, session_from_row)
}

// ---------------------------------------------------------------------------------------
// Refresh tokens

fn insert_refresh(
    c: &Connection,
    hash: &TokenHash,
    tenant: &TenantId,
    session: &SessionId,
    expires_at: UnixTime,
) -> DbResult<()> {
    c.prepare_cached(
        "INSERT INTO refresh_tokens (hash, tenant_id, session_id, expires_at)
         VALUES (:hash, :tenant, :session, :expires_at)",
    )?
    .execute(named_params! {
        ":hash": hash.0,
        ":tenant": tenant.as_str(),
        ":session": session.as_str(),
        ":expires_at": expires_at,
    })?;
    Ok(())
}

fn refresh_from_row(row: &Row<'_>) -> rusqlite::Result<RefreshRecord> {
    let rotated_at: Option<UnixTime> = row.get(4)?;
    let successor = opt_hash_col(row, 5)?;
    let sealed: Option<Vec<u8>> = row.get(6)?;
    let rotated = match (rotated_at, successor, sealed) {
        (None, None, None) => None,
        (Some(at), Some(successor), Some(sealed_successor)) => Some(Rotated {
            at,
            successor,
            sealed_successor,
        }),
        _ => return Err(bad_column(4, "rotation", "partial")),
    };
    Ok(RefreshRecord {
        hash: hash_col(row, 0)?,
        tenant_id: tenant_col(row, 1)?,
        session_id: session_id_col(row, 2)?,
        expires_at: row.get(3)?,
        rotated,
    })
}

pub(crate) fn get_refresh(c: &Connection, hash: &TokenHash) -> DbResult<Option<RefreshRecord>> {
    let record = c
        .prepare_cached(
            "SELECT hash, tenant_id, session_id, expires_at, rotated_at, successor,
                    sealed_successor
             FROM refresh_tokens WHERE hash = :hash",
        )?
        .query_row(named_params! {":hash": hash.0}, refresh_from_row)
        .optional()?;
    Ok(record)
}

/// Does the token exist and is it not rotated yet?
fn is_current(c: &Connection, hash: &TokenHash) -> DbResult<bool> {
    let current = c
        .prepare_cached("SELECT rotated_at IS NULL FROM refresh_tokens WHERE hash = :hash")?
        .query_row(named_params! {":hash": hash.0}, |row| row.get::<_, bool>(0))
        .optional()?;
    Ok(current == Some(true))
}

pub(crate) fn rotate(c: &Connection, r: &Rotation) -> DbResult<RotateOutcome> {
    let Some(presented) = get_refresh(c, &r.presented)? else {
        return Ok(RotateOutcome::Invalid);
    };
    let Some(session) = get_any_tenant(c, &presented.session_id)? else {
        return Ok(RotateOutcome::Invalid);
    };
    let successor_is_current = match &presented.rotated {
        Some(rotated) => is_current(c, &rotated.successor)?,
        None => false,
    };
    Ok(match r.step(&presented, &session, successor_is_current) {
        RotationStep::Invalid => RotateOutcome::Invalid,
        RotationStep::SessionInactive => RotateOutcome::SessionInactive { session },
        RotationStep::Rotate => {
            insert_refresh(
                c,
                &r.successor.hash,
                &r.tenant_id,
                &session.id,
                r.successor.expires_at,
            )?;
            c.prepare_cached(
                "UPDATE refresh_tokens
                 SET rotated_at = :now, successor = :successor, sealed_successor = :sealed
                 WHERE hash = :hash",
            )?
            .execute(named_params! {
                ":hash": r.presented.0,
                ":now": r.now,
                ":successor": r.successor.hash.0,
                ":sealed": r.sealed_successor,
            })?;
            c.prepare_cached(
                "UPDATE sessions SET last_seen_at = max(last_seen_at, :now) WHERE id = :id",
            )?
            .execute(named_params! {":id": session.id.as_str(), ":now": r.now})?;
            RotateOutcome::Rotated {
                session: Session {
                    last_seen_at: session.last_seen_at.max(r.now),
                    ..session
                },
            }
        }
        RotationStep::Replay => RotateOutcome::Replayed {
            session,
            sealed_successor: presented
                .rotated
                .map(|rotated| rotated.sealed_successor)
                .unwrap_or_default(),
        },
        RotationStep::Reuse => {
            match revoke(
                c,
                &r.tenant_id,
                &session.id,
                RevokeReason::ReuseDetected,
                r.now,
            )? {
                Some(revoked) => RotateOutcome::Reused {
                    session: revoked,
                    revoked: true,
                },
                None => RotateOutcome::Reused {
                    session,
                    revoked: false,
                },
            }
        }
    })
}

// ---------------------------------------------------------------------------------------
// Single-use nonces

/// The most expired nonces one call purges, so a backlog never stalls a writer batch.
const NONCE_PURGE_BATCH: i64 = 256;

/// A nonce is expired from `expires_at` on. The upsert re-records an expired one in place,
/// so the answer never depends on how far the purge has got.
pub(crate) fn consume_nonce(
    c: &Connection,
    tenant: &TenantId,
    nonce: &str,
    expires_at: UnixTime,
    now: UnixTime,
) -> DbResult<bool> {
    c.prepare_cached(
        "DELETE FROM nonces WHERE rowid IN
             (SELECT rowid FROM nonces WHERE expires_at <= :now LIMIT :batch)",
    )?
    .execute(named_params! {":now": now, ":batch": NONCE_PURGE_BATCH})?;
    let recorded = c
        .prepare_cached(
            "INSERT INTO nonces (tenant_id, nonce, expires_at)
             VALUES (:tenant, :nonce, :expires_at)
             ON CONFLICT (tenant_id, nonce) DO UPDATE SET expires_at = excluded.expires_at
             WHERE nonces.expires_at <= :now",
        )?
        .execute(named_params! {
            ":tenant": tenant.as_str(),
            ":nonce": nonce,
            ":expires_at": expires_at,
            ":now": now,
        })?;
    Ok(recorded > 0)
}
