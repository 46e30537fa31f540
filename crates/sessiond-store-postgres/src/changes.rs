//! The change log: appended in the same transaction as each change, read by every node.
//!
//! Sequence numbers come from the one row of `sessiond_log_head`
//! (`UPDATE ... SET seq = seq + n RETURNING seq`), taken as the last step before commit. The
//! row lock serialises logging transactions until they commit, so numbers are consecutive
//! (a rollback gives them back) and become visible in order: a reader that has seen `N` can
//! never later find a committed `N - 1`. After a commit the new head is handed to one hint
//! sender task per store, which coalesces whatever is queued into one `pg_notify`: a NOTIFY
//! inside the logging transaction would serialise commits on the notify queue.
//!
//! Beside the log, `sessiond_log_marks` keeps named marks, each replaced by one conditional
//! statement: a second writer from the same version waits for the first one's row lock, then
//! finds the version changed and writes nothing.

use crate::PgStore;
use crate::error::{DbError, DbResult};
use async_trait::async_trait;
use sessiond_store::{Change, Session};
use sessiond_store::{ChangeLog, LogEntry, LogRead, Mark, StoreError, StoreResult, UnixTime};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, Postgres};
use sqlx::{PgConnection, Row, Transaction};
use std::time::Duration;
use tokio::time::Instant;

/// The NOTIFY channel of a schema's log (a hash of the schema if the name would be too long
/// for an identifier).
pub(crate) fn channel_name(schema: &str) -> String {
    let name = format!("sessiond_log_{schema}");
    if name.len() <= 63 {
        return name;
    }
    // FNV-1a: only to shorten the name, collisions merely wake a listener for nothing.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in schema.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("sessiond_log_{h:016x}")
}

/// A `SessionEnded` entry for a session this transaction revoked.
pub(crate) fn ended(s: &Session, reason: sessiond_store::RevokeReason) -> Change {
    Change::SessionEnded {
        tenant: s.tenant_id.clone(),
        session: s.id.clone(),
        user: s.user_id,
        reason,
        auth_time: Some(s.auth_time),
    }
}

/// A `SessionExpired` entry for a session whose timeout this transaction recorded.
pub(crate) fn timed_out(s: &Session) -> Change {
    Change::session_expired(s)
}

/// Appends `changes` in the caller's transaction; returns the last sequence number.
async fn append(conn: &mut PgConnection, changes: &[Change]) -> DbResult<u64> {
    let json = changes
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()?;
    let n = i64::try_from(json.len()).unwrap_or(i64::MAX);
    let last: Option<i64> = sqlx::query_scalar(
        "WITH head AS (
             UPDATE sessiond_log_head
             SET seq = seq + $1, at = GREATEST(at, floor(extract(epoch FROM now()))::bigint)
             RETURNING seq, at
         ), entries AS (
             INSERT INTO sessiond_log (seq, at, change)
             SELECT head.seq - $1 + c.ord, head.at, c.change::jsonb
             FROM head, unnest($2::text[]) WITH ORDINALITY AS c (change, ord)
             RETURNING seq
         )
         SELECT max(seq) FROM entries",
    )
    .bind(n)
    .bind(json)
    .fetch_one(conn)
    .await?;
    last.and_then(|s| u64::try_from(s).ok())
        .ok_or_else(|| StoreError::Backend("the change log has no head row".into()).into())
}

impl PgStore {
    /// Appends `changes` (if any) as the transaction's last step, commits, and then hints
    /// the other nodes.
    pub(crate) async fn commit_logged(
        &self,
        mut tx: Transaction<'static, Postgres>,
        changes: &[Change],
    ) -> DbResult<()> {
        if changes.is_empty() {
            tx.commit().await?;
            return Ok(());
        }
        let last = append(&mut tx, changes).await?;
        tx.commit().await?;
        self.inner.hints.send_if_modified(|head| {
            let newer = last > *head;
            *head = (*head).max(last);
            newer
        });
        Ok(())
    }

    async fn read_partition(&self, after: u64, limit: usize) -> DbResult<LogRead> {
        let after_i = i64::try_from(after).unwrap_or(i64::MAX);
        // Asks for one entry at least: an empty answer must mean "nothing after the cursor".
        let fetch = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        // One statement, one snapshot: the head and the entries agree.
        let rows = sqlx::query(
            "SELECT h.seq, l.seq, l.at, l.change::text
             FROM sessiond_log_head h
             LEFT JOIN LATERAL (
                 SELECT seq, at, change FROM sessiond_log
                 WHERE seq > $1 ORDER BY seq LIMIT $2
             ) l ON TRUE
             ORDER BY l.seq",
        )
        .bind(after_i)
        .bind(fetch)
        .fetch_all(self.pool())
        .await?;
        let head: i64 = match rows.first() {
            Some(row) => row.try_get(0)?,
            None => return Err(StoreError::Backend("the change log has no head row".into()).into()),
        };
        let head = u64::try_from(head).unwrap_or(0);
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(seq) = row.try_get::<Option<i64>, _>(1)? else {
                continue;
            };
            let change: String = row.try_get(3)?;
            entries.push(LogEntry {
                seq: u64::try_from(seq).unwrap_or(0),
                at: row.try_get(2)?,
                change: serde_json::from_str(&change)?,
            });
        }
        let next = after.saturating_add(1);
        let purged = after < head && entries.first().is_none_or(|e| e.seq > next);
        // A cursor past the head: the log went back (a restore); the reader cannot resume.
        if purged || after > head {
            return Ok(LogRead::Gone { head });
        }
        entries.truncate(limit);
        Ok(LogRead::Entries(entries))
    }

    async fn purge_log_db(&self, before: UnixTime, batch: usize) -> DbResult<u64> {
        // `at` never decreases along `seq`, so this deletes a prefix of the log: no reader
        // can skip over a hole.
        let done = sqlx::query(
            "DELETE FROM sessiond_log WHERE seq IN (
                 SELECT seq FROM sessiond_log WHERE at < $1 ORDER BY seq LIMIT $2
             )",
        )
        .bind(before)
        .bind(i64::try_from(batch).unwrap_or(i64::MAX))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    async fn load_mark_db(&self, name: &str) -> DbResult<Option<Mark>> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT version, body FROM sessiond_log_marks WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|(version, body)| Mark {
            version: u64::try_from(version).unwrap_or(0),
            body,
        }))
    }

    async fn swap_mark_db(
        &self,
        name: &str,
        expected: Option<u64>,
        body: &str,
    ) -> DbResult<Option<u64>> {
        let version: Option<i64> = match expected {
            None => {
                sqlx::query_scalar(
                    "INSERT INTO sessiond_log_marks (name, version, body) VALUES ($1, 1, $2)
                     ON CONFLICT (name) DO NOTHING RETURNING version",
                )
                .bind(name)
                .bind(body)
                .fetch_optional(self.pool())
                .await?
            }
            Some(expected) => {
                // A version past i64::MAX was never stored.
                let Ok(expected) = i64::try_from(expected) else {
                    return Ok(None);
                };
                sqlx::query_scalar(
                    "UPDATE sessiond_log_marks SET version = version + 1, body = $3
                     WHERE name = $1 AND version = $2 RETURNING version",
                )
                .bind(name)
                .bind(expected)
                .bind(body)
                .fetch_optional(self.pool())
                .await?
            }
        };
        Ok(version.and_then(|v| u64::try_from(v).ok()))
    }

    /// Waits on the LISTEN connection (opened on first use, reopened after an error) for
    /// the next hint.
    async fn next_hint(&self) -> DbResult<()> {
        let mut slot = self.inner.listener.lock().await;
        let listener = match slot.as_mut() {
            Some(l) => l,
            None => slot.insert(self.listen().await?),
        };
        match listener.recv().await {
            Ok(_) => {
                // Several commits may have hinted: one wake-up is enough for all of them.
                while listener.next_buffered().is_some() {}
                Ok(())
            }
            Err(e) => {
                *slot = None;
                Err(e.into())
            }
        }
    }

    async fn listen(&self) -> DbResult<PgListener> {
        // A pool of its own, so the LISTEN connection never takes one of the store's.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(self.inner.acquire_timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(self.inner.connect.clone());
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(&self.inner.channel).await?;
        Ok(listener)
    }
}

/// Starts the task that turns committed sequence numbers into NOTIFYs: whatever was
/// committed while one NOTIFY was on its way goes out as the next one. It stops when the
/// store (every clone) is dropped.
pub(crate) fn spawn_hint_sender(pool: PgPool, channel: String) -> tokio::sync::watch::Sender<u64> {
    let (tx, mut rx) = tokio::sync::watch::channel(0u64);
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let head = *rx.borrow_and_update();
            let sent = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&channel)
                .bind(head.to_string())
                .execute(&pool)
                .await;
            if let Err(e) = sent {
                // A lost hint costs latency only: followers poll too.
                tracing::debug!(error = %e, "cannot send a change log hint");
            }
        }
    });
    tx
}

#[async_trait]
impl ChangeLog for PgStore {
    fn partitions(&self) -> usize {
        1
    }

    async fn read_log(&self, cursors: &[(usize, u64)], limit: usize) -> StoreResult<Vec<LogRead>> {
        self.run(async {
            let mut reads = Vec::with_capacity(cursors.len());
            for &(partition, after) in cursors {
                if partition != 0 {
                    return Err(DbError::Store(StoreError::Backend(format!(
                        "no change log partition {partition}"
                    ))));
                }
                reads.push(self.read_partition(after, limit).await?);
            }
            Ok(reads)
        })
        .await
    }

    async fn wait_hint(&self, max_wait: Duration) -> Vec<usize> {
        let deadline = Instant::now() + max_wait;
        match tokio::time::timeout_at(deadline, self.next_hint()).await {
            Ok(Ok(())) => vec![0],
            Ok(Err(e)) => {
                tracing::debug!(error = ?e, "change log hints unavailable");
                // A dead server must not turn the follower's wait into a busy loop.
                tokio::time::sleep_until(deadline).await;
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    async fn purge_log(&self, before: UnixTime, batch: usize) -> StoreResult<u64> {
        self.run(self.purge_log_db(before, batch)).await
    }

    async fn load_mark(&self, name: &str) -> StoreResult<Option<Mark>> {
        self.run(self.load_mark_db(name)).await
    }

    async fn swap_mark(
        &self,
        name: &str,
        expected: Option<u64>,
        body: &str,
    ) -> StoreResult<Option<u64>> {
        self.run(self.swap_mark_db(name, expected, body)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_fit_an_identifier() {
        assert_eq!(channel_name("public"), "sessiond_log_public");
        let long = "s".repeat(63);
        let name = channel_name(&long);
        assert!(name.len() <= 63, "{name}");
        assert_ne!(name, channel_name(&"t".repeat(63)));
    }
}
