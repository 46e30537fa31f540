//! [`Counters`]: rate-limit and backoff counters shared by every node, one small hash per
//! counter (`<prefix>{c:<key>}`), changed by one script.

use crate::{RedisStore, record, scripts};
use async_trait::async_trait;
use redis::Value;
use sessiond_store::{Counters, Hits, StoreResult, UnixTime};

fn hits(v: Value) -> StoreResult<Hits> {
    let Value::Array(pair) = v else {
        return Ok(Hits::default());
    };
    let mut it = pair.into_iter();
    let count = it.next().map(record::int_value).transpose()?.unwrap_or(0);
    let last = it.next().map(record::int_value).transpose()?.unwrap_or(0);
    Ok(Hits {
        count: u64::try_from(count).unwrap_or(0),
        last,
    })
}

#[async_trait]
impl Counters for RedisStore {
    async fn hit(&self, key: &str, forget_after: u32, now: UnixTime) -> StoreResult<Hits> {
        let mut inv = scripts::COUNTER.prepare_invoke();
        inv.key(self.keys().counter(key)).arg(now).arg(forget_after);
        hits(self.invoke(&inv).await?)
    }

    async fn peek(&self, key: &str, forget_after: u32, now: UnixTime) -> StoreResult<Hits> {
        let v: Value = self
            .query(
                redis::cmd("HMGET")
                    .arg(self.keys().counter(key))
                    .arg("count")
                    .arg("last"),
            )
            .await?;
        let h = hits(v)?;
        Ok(if now - h.last >= i64::from(forget_after) {
            Hits::default()
        } else {
            h
        })
    }

    async fn reset(&self, key: &str) -> StoreResult<()> {
        self.query::<i64>(redis::cmd("DEL").arg(self.keys().counter(key)))
            .await
            .map(|_| ())
    }
}
