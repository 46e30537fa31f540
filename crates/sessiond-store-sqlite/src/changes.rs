//! The change log: one partition, the table `change_log`, appended inside the writer's
//! transaction by every operation that changes state a node may cache (the changes the
//! memory store logs).
//!
//! Sequence numbers come from the one row of `change_log_head`, bumped in the same
//! transaction (and savepoint) as the change: they are consecutive from 1, a command rolled
//! back gives its numbers back, and purging entries never lowers the head. The row also keeps
//! the latest `at`, so that `at` never decreases along `seq` even if the wall clock steps
//! back, and a purge by time deletes a prefix of the log. One process writes: waiters are
//! woken in-process after a commit that moved the head (see `SqliteStore::open`).
//!
//! Beside the log, `change_log_marks` keeps named marks, each replaced by one conditional
//! statement (compare-and-swap on its version).

use crate::error::DbResult;
use rusqlite::{Connection, OptionalExtension, named_params};
use sessiond_store::{
    Change, LogEntry, LogRead, Mark, RevokeReason, Session, StoreError, TenantId, UnixTime, UserId,
};

/// Appends `change` in the caller's transaction.
pub(crate) fn log(c: &Connection, change: &Change) -> DbResult<()> {
    let json = serde_json::to_string(change)?;
    let (seq, at): (i64, UnixTime) = c
        .prepare_cached(
            "UPDATE change_log_head SET seq = seq + 1, at = max(at, :now) RETURNING seq, at",
        )?
        .query_row(named_params! {":now": sessiond_store::wall_clock()}, |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    c.prepare_cached("INSERT INTO change_log (seq, at, change) VALUES (:seq, :at, :change)")?
        .execute(named_params! {":seq": seq, ":at": at, ":change": json})?;
    Ok(())
}

/// Logs that this transaction ended the session `s`.
pub(crate) fn ended(c: &Connection, s: &Session, reason: RevokeReason) -> DbResult<()> {
    log(
        c,
        &Change::SessionEnded {
            tenant: s.tenant_id.clone(),
            session: s.id.clone(),
            user: s.user_id,
            reason,
            auth_time: Some(s.auth_time),
        },
    )
}

/// Logs that this transaction recorded the timeout of the session `s`.
pub(crate) fn expired(c: &Connection, s: &Session) -> DbResult<()> {
    log(c, &Change::session_expired(s))
}

/// Logs that every session of `user` created before `before` has ended.
pub(crate) fn user_sessions_ended(
    c: &Connection,
    tenant: &TenantId,
    user: &UserId,
    before: UnixTime,
    reason: RevokeReason,
) -> DbResult<()> {
    log(
        c,
        &Change::UserSessionsEnded {
            tenant: tenant.clone(),
            user: *user,
            before,
            reason,
        },
    )
}

/// The last sequence number written (0 for an empty log).
pub(crate) fn head(c: &Connection) -> DbResult<u64> {
    let seq: i64 = c
        .prepare_cached("SELECT seq FROM change_log_head")?
        .query_row([], |r| r.get(0))?;
    Ok(u64::try_from(seq).unwrap_or(0))
}

/// The entries after `after`, at most `limit` of them, or `Gone` if the log cannot resume
/// from `after`.
pub(crate) fn read(c: &Connection, after: u64, limit: usize) -> DbResult<LogRead> {
    let after_i = i64::try_from(after).unwrap_or(i64::MAX);
    // At least one entry, so that an empty answer means "nothing after the cursor".
    let fetch = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
    // One statement, one snapshot: the head and the entries agree.
    let mut stmt = c.prepare_cached(
        "SELECT h.seq, l.seq, l.at, l.change
         FROM change_log_head h
         LEFT JOIN (
             SELECT seq, at, change FROM change_log
             WHERE seq > :after ORDER BY seq LIMIT :fetch
         ) l ON 1
         ORDER BY l.seq",
    )?;
    let mut rows = stmt.query(named_params! {":after": after_i, ":fetch": fetch})?;
    let mut head = None;
    let mut entries = Vec::new();
    while let Some(row) = rows.next()? {
        head = Some(row.get::<_, i64>(0)?);
        let Some(seq) = row.get::<_, Option<i64>>(1)? else {
            continue;
        };
        let change: String = row.get(3)?;
        entries.push(LogEntry {
            seq: u64::try_from(seq).unwrap_or(0),
            at: row.get(2)?,
            change: serde_json::from_str(&change)?,
        });
    }
    let head = head
        .and_then(|h| u64::try_from(h).ok())
        .ok_or_else(|| StoreError::Backend("the change log has no head row".into()))?;
    let purged = after < head && entries.first().is_none_or(|e| e.seq > after + 1);
    // A cursor past the head: the log went back (a restored backup); it cannot resume.
    if purged || after > head {
        return Ok(LogRead::Gone { head });
    }
    entries.truncate(limit);
    Ok(LogRead::Entries(entries))
}

/// Deletes up to `batch` entries written before `before`; returns how many. `at` never
/// decreases along `seq`, so this deletes a prefix of the log: no reader skips a hole.
pub(crate) fn purge(c: &Connection, before: UnixTime, batch: usize) -> DbResult<u64> {
    let n = c
        .prepare_cached(
            "DELETE FROM change_log WHERE seq IN (
                 SELECT seq FROM change_log WHERE at < :before ORDER BY seq LIMIT :batch
             )",
        )?
        .execute(named_params! {
            ":before": before,
            ":batch": i64::try_from(batch).unwrap_or(i64::MAX),
        })?;
    Ok(n as u64)
}

/// The mark `name`, if it was ever stored.
pub(crate) fn load_mark(c: &Connection, name: &str) -> DbResult<Option<Mark>> {
    let mark = c
        .prepare_cached("SELECT version, body FROM change_log_marks WHERE name = :name")?
        .query_row(named_params! {":name": name}, |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    Ok(mark.map(|(version, body)| Mark {
        version: u64::try_from(version).unwrap_or(0),
        body,
    }))
}

/// Stores `body` as the mark `name` if its version is `expected` (`None`: no mark yet), in
/// one statement; returns the new version, or `None` if nothing was written.
pub(crate) fn swap_mark(
    c: &Connection,
    name: &str,
    expected: Option<u64>,
    body: &str,
) -> DbResult<Option<u64>> {
    let version: Option<i64> = match expected {
        None => c
            .prepare_cached(
                "INSERT INTO change_log_marks (name, version, body) VALUES (:name, 1, :body)
                 ON CONFLICT (name) DO NOTHING RETURNING version",
            )?
            .query_row(named_params! {":name": name, ":body": body}, |r| r.get(0))
            .optional()?,
        Some(expected) => {
            // A version past i64::MAX was never stored.
            let Ok(expected) = i64::try_from(expected) else {
                return Ok(None);
            };
            c.prepare_cached(
                "UPDATE change_log_marks SET version = version + 1, body = :body
                 WHERE name = :name AND version = :expected RETURNING version",
            )?
            .query_row(
                named_params! {":name": name, ":expected": expected, ":body": body},
                |r| r.get(0),
            )
            .optional()?
        }
    };
    Ok(version.and_then(|v| u64::try_from(v).ok()))
}
