//! [`Counters`]: rate-limit and backoff counters shared by every node, one row per counter,
//! each hit one upsert.

use crate::PgStore;
use crate::error::DbResult;
use async_trait::async_trait;
use sessiond_store::{Counters, Hits, StoreResult, UnixTime};
use sqlx::Row;

fn hits(count: i64, last: i64) -> Hits {
    Hits {
        count: u64::try_from(count).unwrap_or(0),
        last,
    }
}

impl PgStore {
    async fn hit_db(&self, key: &str, forget_after: u32, now: UnixTime) -> DbResult<Hits> {
        let row = sqlx::query(
            "INSERT INTO counters (key, count, last) VALUES ($1, 1, $2)
             ON CONFLICT (key) DO UPDATE SET
                 count = CASE WHEN $2 - counters.last >= $3 THEN 1
                              ELSE counters.count + 1 END,
                 last = CASE WHEN $2 - counters.last >= $3 THEN $2
                             ELSE GREATEST(counters.last, $2) END
             RETURNING count, last",
        )
        .bind(key)
        .bind(now)
        .bind(i64::from(forget_after))
        .fetch_one(self.pool())
        .await?;
        Ok(hits(row.try_get(0)?, row.try_get(1)?))
    }

    async fn peek_db(&self, key: &str, forget_after: u32, now: UnixTime) -> DbResult<Hits> {
        let row = sqlx::query("SELECT count, last FROM counters WHERE key = $1")
            .bind(key)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => {
                let h = hits(r.try_get(0)?, r.try_get(1)?);
                if now - h.last >= i64::from(forget_after) {
                    Hits::default()
                } else {
                    h
                }
            }
            None => Hits::default(),
        })
    }

    async fn reset_db(&self, key: &str) -> DbResult<()> {
        sqlx::query("DELETE FROM counters WHERE key = $1")
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Counters for PgStore {
    async fn hit(&self, key: &str, forget_after: u32, now: UnixTime) -> StoreResult<Hits> {
        self.run(self.hit_db(key, forget_after, now)).await
    }

    async fn peek(&self, key: &str, forget_after: u32, now: UnixTime) -> StoreResult<Hits> {
        self.run(self.peek_db(key, forget_after, now)).await
    }

    async fn reset(&self, key: &str) -> StoreResult<()> {
        self.run(self.reset_db(key)).await
    }
}
