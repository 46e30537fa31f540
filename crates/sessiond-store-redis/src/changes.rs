//! [`ChangeLog`] on Redis: one partition per [`Route`], a ZSET scored by sequence number
//! (members `<seq>:<at>:<change json>`, appended by the session scripts) with its last
//! sequence number beside it; hints are `PUBLISH`ed on `<prefix>changes` with the route.
//! Marks are one hash each (`<prefix>{m:<name>}`), swapped by lua/mark.lua.

use crate::{RedisStore, record, scripts, within};
use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use redis::aio::{PubSubSink, PubSubStream};
use sessiond_store::{
    Change, ChangeLog, LogEntry, LogRead, Mark, Route, StoreError, StoreResult, UnixTime,
};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

fn bad(what: &str) -> StoreError {
    StoreError::Backend(format!("unexpected change log data: {what}"))
}

fn route_of(partition: usize) -> StoreResult<Route> {
    u8::try_from(partition)
        .map(Route)
        .map_err(|_| StoreError::Backend(format!("no change log partition {partition}")))
}

/// `seq` and `at` of a member, and the rest (the change).
fn split(member: &[u8]) -> StoreResult<(u64, UnixTime, &[u8])> {
    let mut parts = member.splitn(3, |&b| b == b':');
    let mut num = |what| {
        parts
            .next()
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|p| p.parse::<i64>().ok())
            .ok_or_else(|| bad(what))
    };
    let seq = u64::try_from(num("seq")?).map_err(|_| bad("seq"))?;
    let at = num("at")?;
    Ok((seq, at, parts.next().ok_or_else(|| bad("change"))?))
}

fn entry(member: &[u8]) -> StoreResult<LogEntry> {
    let (seq, at, json) = split(member)?;
    let change: Change = serde_json::from_slice(json).map_err(|e| bad(&format!("change: {e}")))?;
    Ok(LogEntry { seq, at, change })
}

impl RedisStore {
    /// [`ChangeLog::swap_mark`] by the call `token`.
    async fn swap_mark_as(
        &self,
        name: &str,
        expected: Option<u64>,
        body: &str,
        token: &str,
    ) -> StoreResult<Option<u64>> {
        let mut inv = scripts::MARK.prepare_invoke();
        inv.key(self.keys().mark(name))
            .arg(expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(body)
            .arg(token);
        let version = record::int_value(self.invoke(&inv).await?)?;
        Ok(u64::try_from(version).ok().filter(|&v| v > 0))
    }

    /// The last sequence number of each cursor's partition (0 for one never written).
    async fn log_heads(&self, cursors: &[(usize, u64)]) -> StoreResult<Vec<u64>> {
        let keys = self.keys();
        let names = cursors
            .iter()
            .map(|&(p, _)| route_of(p).map(|r| keys.logseq(r)))
            .collect::<StoreResult<Vec<_>>>()?;
        let values: Vec<Option<i64>> = if self.is_cluster() {
            let groups = names
                .iter()
                .map(|k| {
                    let mut pipe = redis::pipe();
                    pipe.get(k);
                    pipe
                })
                .collect();
            self.pipelines(groups)
                .await?
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .next()
                        .map(record::int_value)
                        .transpose()
                        .map(|v| v.filter(|&n| n != 0))
                })
                .collect::<StoreResult<_>>()?
        } else if names.is_empty() {
            Vec::new()
        } else {
            self.query(redis::cmd("MGET").arg(&names)).await?
        };
        values
            .into_iter()
            .map(|v| u64::try_from(v.unwrap_or(0)).map_err(|_| bad("head")))
            .collect()
    }
}

#[async_trait]
impl ChangeLog for RedisStore {
    fn partitions(&self) -> usize {
        Route::COUNT
    }

    async fn read_log(&self, cursors: &[(usize, u64)], limit: usize) -> StoreResult<Vec<LogRead>> {
        // The heads first (one MGET standalone, one GET per route on a Cluster), then a range
        // only where a partition moved: an idle sweep of every partition costs one command
        // standalone. Entries appended after a head was read are seen by the next read.
        let heads = self.log_heads(cursors).await?;
        let moved: Vec<(usize, u64)> = cursors
            .iter()
            .zip(&heads)
            .filter(|&(&(_, after), &head)| head > after)
            .map(|(&c, _)| c)
            .collect();
        let keys = self.keys();
        // At least one entry is read, to tell a purged cursor from an idle one.
        let fetch = limit.max(1);
        let groups = moved
            .iter()
            .map(|&(p, after)| {
                let route = route_of(p)?;
                let mut pipe = redis::pipe();
                pipe.cmd("ZRANGEBYSCORE")
                    .arg(keys.log(route))
                    .arg(format!("({after}"))
                    .arg("+inf")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(fetch);
                Ok(pipe)
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let mut ranges = self.pipelines(groups).await?.into_iter();
        cursors
            .iter()
            .zip(heads)
            .map(|(&(_, after), head)| {
                if head == after {
                    return Ok(LogRead::Entries(Vec::new()));
                }
                if head < after {
                    // A cursor past the head: the log went back (Redis lost data).
                    return Ok(LogRead::Gone { head });
                }
                let mut entries = ranges
                    .next()
                    .ok_or_else(|| bad("a range missing"))?
                    .into_iter()
                    .next()
                    .map(record::array)
                    .transpose()?
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| entry(&record::bytes(m)?))
                    .collect::<StoreResult<Vec<_>>>()?;
                // Consecutive numbering: a gap after the cursor (or nothing at all although
                // the head is past it) is a purge.
                let gone = entries.first().is_none_or(|first| first.seq > after + 1);
                Ok(if gone {
                    let last = entries.last().map_or(0, |e| e.seq);
                    LogRead::Gone {
                        head: head.max(last),
                    }
                } else {
                    entries.truncate(limit);
                    LogRead::Entries(entries)
                })
            })
            .collect()
    }

    async fn wait_hint(&self, max_wait: Duration) -> Vec<usize> {
        self.inner.hints.wait(max_wait).await
    }

    async fn purge_log(&self, before: UnixTime, batch: usize) -> StoreResult<u64> {
        if batch == 0 {
            return Ok(0);
        }
        let keys = self.keys();
        let groups = (0..=u8::MAX)
            .map(|r| {
                let mut pipe = redis::pipe();
                pipe.cmd("ZRANGE").arg(keys.log(Route(r))).arg(0).arg(0);
                pipe
            })
            .collect();
        let oldest = self.pipelines(groups).await?;
        let mut left = batch as u64;
        let mut purged = 0;
        for (r, reply) in (0..=u8::MAX).zip(oldest) {
            if left == 0 {
                break;
            }
            let first = reply.into_iter().next().map(record::array).transpose()?;
            let Some(first) = first.and_then(|f| f.into_iter().next()) else {
                continue;
            };
            if split(&record::bytes(first)?)?.1 >= before {
                continue;
            }
            let log = keys.log(Route(r));
            let members: Vec<Vec<u8>> = self
                .query(redis::cmd("ZRANGE").arg(&log).arg(0).arg(left - 1))
                .await?;
            let mut last = None;
            for m in &members {
                let (seq, at, _) = split(m)?;
                if at >= before {
                    break;
                }
                last = Some(seq);
            }
            if let Some(last) = last {
                // By score, so that concurrent purges cannot remove newer entries.
                let n: u64 = self
                    .query(
                        redis::cmd("ZREMRANGEBYSCORE")
                            .arg(&log)
                            .arg("-inf")
                            .arg(last),
                    )
                    .await?;
                purged += n;
                left = left.saturating_sub(n);
            }
        }
        Ok(purged)
    }

    async fn load_mark(&self, name: &str) -> StoreResult<Option<Mark>> {
        let (version, body): (Option<u64>, Option<String>) = self
            .query(
                redis::cmd("HMGET")
                    .arg(self.keys().mark(name))
                    .arg("v")
                    .arg("b"),
            )
            .await?;
        Ok(version.map(|version| Mark {
            version,
            body: body.unwrap_or_default(),
        }))
    }

    /// One script on the mark's slot. Each call carries a token of its own, so that a call
    /// re-sent after it was applied is answered as applied, not as lost to another writer.
    async fn swap_mark(
        &self,
        name: &str,
        expected: Option<u64>,
        body: &str,
    ) -> StoreResult<Option<u64>> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.swap_mark_as(name, expected, body, &token).await
    }
}

/// The hint subscription: created on first use, re-created after an error.
pub(crate) struct Hints {
    /// Where to subscribe: the server, or any node of a Cluster (which broadcasts PUBLISH).
    urls: Vec<String>,
    channel: String,
    deadline: Duration,
    sub: tokio::sync::Mutex<Option<Subscription>>,
}

struct Subscription {
    sink: PubSubSink,
    stream: PubSubStream,
    checked: Instant,
}

/// How long a quiet subscription goes before it is checked with a PING.
const CHECK_EVERY: Duration = Duration::from_secs(30);

impl Hints {
    pub(crate) fn new(urls: Vec<String>, channel: String, deadline: Duration) -> Self {
        Self {
            urls,
            channel,
            deadline,
            sub: tokio::sync::Mutex::new(None),
        }
    }

    async fn open(&self) -> StoreResult<Subscription> {
        let mut last = StoreError::Unavailable("no Redis node to subscribe to".into());
        for url in &self.urls {
            let opened = async {
                let client = redis::Client::open(url.as_str()).map_err(crate::map_err)?;
                let (mut sink, stream) = within(self.deadline, client.get_async_pubsub())
                    .await?
                    .split();
                within(self.deadline, sink.subscribe(&self.channel)).await?;
                Ok::<_, StoreError>(Subscription {
                    sink,
                    stream,
                    checked: Instant::now(),
                })
            };
            match opened.await {
                Ok(sub) => return Ok(sub),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub(crate) async fn wait(&self, max_wait: Duration) -> Vec<usize> {
        let deadline = Instant::now() + max_wait;
        let Ok(mut guard) = tokio::time::timeout_at(deadline, self.sub.lock()).await else {
            return Vec::new();
        };
        let failed = |error: String| {
            tracing::debug!(%error, "change hints unavailable");
            tokio::time::sleep_until(deadline)
        };
        if guard.is_none() {
            match tokio::time::timeout_at(deadline, self.open()).await {
                Ok(Ok(sub)) => *guard = Some(sub),
                Ok(Err(e)) => {
                    drop(guard);
                    failed(e.to_string()).await;
                    return Vec::new();
                }
                Err(_) => return Vec::new(),
            }
        }
        let Some(sub) = guard.as_mut() else {
            return Vec::new();
        };
        if sub.checked.elapsed() >= CHECK_EVERY {
            match tokio::time::timeout_at(deadline, sub.sink.ping::<redis::Value>()).await {
                Ok(Ok(_)) => sub.checked = Instant::now(),
                Ok(Err(e)) => {
                    *guard = None;
                    drop(guard);
                    failed(e.to_string()).await;
                    return Vec::new();
                }
                Err(_) => return Vec::new(),
            }
        }
        let mut routes = BTreeSet::new();
        let mut add = |msg: redis::Msg| {
            if let Ok(r) = msg.get_payload::<String>()
                && let Ok(r) = r.parse::<usize>()
                && r < Route::COUNT
            {
                routes.insert(r);
            }
        };
        match tokio::time::timeout_at(deadline, sub.stream.next()).await {
            Err(_) => return Vec::new(),
            Ok(None) => {
                *guard = None;
                drop(guard);
                failed("the subscription closed".into()).await;
                return Vec::new();
            }
            Ok(Some(msg)) => add(msg),
        }
        sub.checked = Instant::now();
        // Everything else already queued.
        loop {
            match sub.stream.next().now_or_never() {
                Some(Some(msg)) => add(msg),
                Some(None) => {
                    *guard = None;
                    break;
                }
                None => break,
            }
        }
        routes.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn members_parse_into_entries() {
        let json = r#"{"user":"67e55044-10b1-426f-9247-bb680e5fe0c8","kind":"session_ended","tenant":"t","session":"AAAAAAAAAAAAAAAAAAAAAA","reason":"logout"}"#;
        let e = entry(format!("12:1700000000:{json}").as_bytes()).unwrap();
        assert_eq!((e.seq, e.at), (12, 1_700_000_000));
        assert!(
            matches!(
                e.change,
                Change::SessionEnded {
                    auth_time: None,
                    ..
                }
            ),
            "a member written before `created` was logged still reads"
        );
        let json = r#"{"user":"67e55044-10b1-426f-9247-bb680e5fe0c8","kind":"session_ended","tenant":"t","session":"AAAAAAAAAAAAAAAAAAAAAA","reason":"logout","created":1700000000}"#;
        let e = entry(format!("13:1700000001:{json}").as_bytes()).unwrap();
        assert!(
            matches!(
                e.change,
                Change::SessionEnded {
                    auth_time: Some(1_700_000_000),
                    ..
                }
            ),
            "a member of an older sessiond calls it `created`"
        );
        let json = r#"{"user":"67e55044-10b1-426f-9247-bb680e5fe0c8","kind":"session_ended","tenant":"t","session":"AAAAAAAAAAAAAAAAAAAAAA","reason":"logout","auth_time":1700000005}"#;
        let e = entry(format!("13:1700000001:{json}").as_bytes()).unwrap();
        assert!(matches!(
            e.change,
            Change::SessionEnded {
                auth_time: Some(1_700_000_005),
                ..
            }
        ));
        let json = r#"{"user":"67e55044-10b1-426f-9247-bb680e5fe0c8","kind":"user_sessions_ended","tenant":"t","reason":"logout_all","before":1700000002}"#;
        let e = entry(format!("14:1700000002:{json}").as_bytes()).unwrap();
        assert!(matches!(
            e.change,
            Change::UserSessionsEnded {
                before: 1_700_000_002,
                ..
            }
        ));
        assert!(entry(b"x:1:{}").is_err());
    }

    /// The client library re-sends a script whose connection broke before the answer came
    /// back: the repeat of an applied swap answers as the first, another writer still fails.
    /// Needs standalone Redis (127.0.0.1:6379, or `SESSIOND_TEST_REDIS`).
    #[tokio::test]
    async fn a_resent_swap_answers_as_the_first() {
        let url = std::env::var("SESSIOND_TEST_REDIS")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let opts = crate::RedisOptions {
            prefix: format!("sdt:{}:marks:", std::process::id()),
            ..crate::RedisOptions::default()
        };
        let store = RedisStore::connect(&url, opts).await.unwrap();
        let name = uuid::Uuid::new_v4().simple().to_string();
        for (expected, token, won) in [
            (None, "a", Some(1)),
            (None, "a", Some(1)),
            (None, "b", None),
            (Some(1), "c", Some(2)),
            (Some(1), "c", Some(2)),
            (Some(1), "d", None),
            (Some(1), "a", None),
        ] {
            let got = store
                .swap_mark_as(&name, expected, token, token)
                .await
                .unwrap();
            assert_eq!(got, won, "{expected:?} by {token}");
        }
        let mark = store.load_mark(&name).await.unwrap();
        assert_eq!(
            mark,
            Some(Mark {
                version: 2,
                body: "c".into()
            })
        );
        store
            .query::<i64>(redis::cmd("DEL").arg(store.keys().mark(&name)))
            .await
            .unwrap();
    }
}
