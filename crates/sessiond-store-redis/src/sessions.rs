//! [`SessionStore`] on Redis: one script per read-modify-write of a user (see `lua/`), plus
//! the per-tenant index for tenant-wide listing and counting.

use crate::keys::hex;
use crate::record::{self, Fields};
use crate::{RedisStore, scripts};
use async_trait::async_trait;
use redis::Value;
use sessiond_store::{
    AuditWith, NewSession, RefreshRecord, RevokeReason, RotateOutcome, Rotation, Route, Session,
    SessionId, SessionLimit, SessionQuery, SessionStore, StoreError, StoreResult, TenantId,
    TokenHash, UnixTime, UserId,
};
use std::collections::{BTreeMap, HashSet};

/// Members read from a tenant index per round trip.
const PAGE: usize = 256;

/// Index scores per second of `created_at` (`TICKS` in lua/common.lua, see `index_score`).
const TICKS: i64 = 1_048_576;

fn caller_bug(what: &str) -> StoreError {
    StoreError::Backend(format!("routing mismatch: {what}"))
}

/// Redis is never the identity store, so it keeps no audit trail: a caller that hands a write
/// its audit events (see [`AuditWith`]) would lose them, and is refused before anything is
/// written.
fn no_audit_trail<T: ?Sized>(audit: &AuditWith<T>) -> StoreResult<()> {
    match audit {
        Some(_) => Err(StoreError::Backend(
            "the Redis store keeps no audit trail: append the events to the identity store".into(),
        )),
        None => Ok(()),
    }
}

fn status(reply: &mut std::vec::IntoIter<Value>) -> StoreResult<String> {
    reply
        .next()
        .map(record::string)
        .unwrap_or_else(|| Err(StoreError::Backend("empty script reply".into())))
}

/// `sid, session fields` from a script reply.
fn session_from(reply: &mut std::vec::IntoIter<Value>) -> StoreResult<Session> {
    let (Some(id), Some(fields)) = (reply.next(), reply.next()) else {
        return Err(StoreError::Backend("short script reply".into()));
    };
    let id = SessionId::from_generated(record::string(id)?);
    record::parse_session(id, &record::fields(fields)?)
}

/// Seconds during which an index member without a record is not pruned (see `prune`).
const PRUNE_GRACE: i64 = 300;

impl RedisStore {
    /// Reads sessions by id (any routes), grouped by route so each group is on one slot.
    /// `None` where the record is gone.
    async fn load_sessions(&self, ids: &[SessionId]) -> StoreResult<Vec<Option<Session>>> {
        let mut by_route: BTreeMap<Route, Vec<usize>> = BTreeMap::new();
        for (i, id) in ids.iter().enumerate() {
            by_route.entry(id.route()).or_default().push(i);
        }
        let groups = by_route
            .values()
            .map(|idx| {
                let mut p = redis::pipe();
                for &i in idx {
                    p.hgetall(self.keys().session(&ids[i]));
                }
                p
            })
            .collect();
        let replies = self.pipelines(groups).await?;
        let mut out = vec![None; ids.len()];
        for (idx, replies) in by_route.values().zip(replies) {
            for (&i, reply) in idx.iter().zip(replies) {
                let f = record::fields(reply)?;
                if !f.is_empty() {
                    out[i] = Some(record::parse_session(ids[i].clone(), &f)?);
                }
            }
        }
        Ok(out)
    }

    /// Best effort: drops index members whose session is gone, unless they were added in
    /// the last [`PRUNE_GRACE`] seconds (before `now`): `create_session` adds the member
    /// before its script writes the record, so a young member without a record may be a
    /// create in flight.
    async fn prune(&self, index: &str, gone: Vec<SessionId>, now: UnixTime) {
        if gone.is_empty() {
            return;
        }
        let mut inv = scripts::PRUNE.prepare_invoke();
        inv.key(index).arg(now.saturating_sub(PRUNE_GRACE));
        for id in &gone {
            inv.arg(id.as_str());
        }
        if let Err(e) = self.invoke(&inv).await {
            tracing::debug!(error = %e, "pruning a session index failed");
        }
    }

    /// Scores the session in its tenant's index after the others of its second (see
    /// `index_score` in lua/common.lua); `mode` "nx": only if not a member yet. 1 if scored.
    async fn index_in_tenant(&self, index: &str, s: &Session, mode: &str) -> StoreResult<i64> {
        let mut inv = scripts::INDEX.prepare_invoke();
        inv.key(index)
            .arg(s.created_at)
            .arg(s.id.as_str())
            .arg(mode);
        record::int_value(self.invoke(&inv).await?)
    }

    /// Where a listing of `index` starts (a ZREVRANGEBYSCORE max): at the top, or strictly
    /// below the cursor's session (`query.before`). That session's score is read from the
    /// same index (so on the same slot); if it is no longer a member, the listing goes on
    /// with the sessions created before the cursor's `created_at`.
    async fn start_below(&self, index: &str, query: &SessionQuery) -> StoreResult<String> {
        let Some(cursor) = &query.before else {
            return Ok("+inf".to_owned());
        };
        let score: Option<f64> = self
            .query(redis::cmd("ZSCORE").arg(index).arg(cursor.id.as_str()))
            .await?;
        Ok(match score {
            Some(score) => format!("({score}"),
            None => format!("({}", cursor.created_at.saturating_mul(TICKS)),
        })
    }

    /// Sessions of an index (newest first) matching the query, pruning the gone ones.
    async fn list_index(
        &self,
        index: &str,
        tenant: &TenantId,
        query: &SessionQuery,
        now: UnixTime,
    ) -> StoreResult<Vec<Session>> {
        let mut found = Vec::new();
        let mut gone = Vec::new();
        // Paged by score: each page restarts at the last score seen (inclusive) and skips
        // the members already seen there, so concurrent removals cannot make it skip any.
        let mut max = self.start_below(index, query).await?;
        let mut at_max: HashSet<String> = HashSet::new();
        while found.len() < query.limit {
            let count = PAGE + at_max.len();
            let page: Vec<(String, f64)> = self
                .query(
                    redis::cmd("ZREVRANGEBYSCORE")
                        .arg(index)
                        .arg(&max)
                        .arg("-inf")
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(count),
                )
                .await?;
            let exhausted = page.len() < count;
            let fresh: Vec<(String, f64)> = page
                .into_iter()
                .filter(|(m, _)| !at_max.contains(m))
                .collect();
            let Some(&(_, last)) = fresh.last() else {
                break;
            };
            let ids: Vec<SessionId> = fresh
                .iter()
                .map(|(m, _)| SessionId::from_generated(m.clone()))
                .collect();
            let sessions = self.load_sessions(&ids).await?;
            for (id, s) in ids.into_iter().zip(sessions) {
                match s {
                    None => gone.push(id),
                    Some(s)
                        if found.len() < query.limit
                            && &s.tenant_id == tenant
                            && query.matches(&s, now) =>
                    {
                        found.push(s)
                    }
                    Some(_) => {}
                }
            }
            let last_max = std::mem::replace(&mut max, format!("{last}"));
            if max != last_max {
                at_max.clear();
            }
            at_max.extend(
                fresh
                    .into_iter()
                    .filter(|(_, s)| *s == last)
                    .map(|(m, _)| m),
            );
            if exhausted {
                break;
            }
        }
        self.prune(index, gone, now).await;
        Ok(found)
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create_session(
        &self,
        new: NewSession,
        limit: SessionLimit,
        now: UnixTime,
        audit: AuditWith<[SessionId]>,
    ) -> StoreResult<Vec<SessionId>> {
        no_audit_trail(&audit)?;
        let s = &new.session;
        let route = Route::of_user(&s.user_id);
        if s.id.route() != route {
            return Err(caller_bug("the session id is not on its user's route"));
        }
        if let Some(r) = &new.refresh
            && Route::of_hash(&r.hash) != route
        {
            return Err(caller_bug("the refresh token is not on its user's route"));
        }
        let keys = self.keys();
        let tenant_index = keys.tenant_index(&s.tenant_id);

        // The tenant index first, so a listing never misses a session that exists.
        let (_, added): (Value, i64) = futures_util::future::try_join(
            self.query(
                redis::cmd("SADD")
                    .arg(keys.tenants())
                    .arg(s.tenant_id.as_str()),
            ),
            self.index_in_tenant(&tenant_index, s, "nx"),
        )
        .await?;

        let (kind, max) = match limit {
            SessionLimit::Unlimited => ("u", 0),
            SessionLimit::EvictOldest(n) => ("e", n),
            SessionLimit::Reject(n) => ("r", n),
        };
        let mut inv = scripts::CREATE.prepare_invoke();
        inv.key(keys.session(&s.id))
            .key(keys.user_index(&s.tenant_id, &s.user_id))
            .key(keys.log(route))
            .key(keys.logseq(route))
            .key(keys.timeouts(route));
        if let Some(r) = &new.refresh {
            inv.key(keys.refresh(&r.hash));
        }
        inv.arg(keys.base(route))
            .arg(now)
            .arg(kind)
            .arg(max)
            .arg(s.id.as_str())
            .arg(keys.channel())
            .arg(route.0)
            .arg(new.refresh.as_ref().map_or(0, |r| r.expires_at));
        for (name, value) in record::session_fields(s) {
            inv.arg(name).arg(value);
        }
        let outcome = match self.invoke(&inv).await {
            Err(e @ StoreError::Unavailable(_)) => return Err(e), // it may have happened
            Err(e) => Err(e),
            Ok(reply) => {
                let mut reply = record::array(reply)?.into_iter();
                match status(&mut reply)?.as_str() {
                    "ok" => reply
                        .map(|v| record::string(v).map(SessionId::from_generated))
                        .collect::<StoreResult<Vec<_>>>(),
                    "conflict" => Err(StoreError::Conflict),
                    "limit" => Err(StoreError::LimitReached),
                    other => Err(StoreError::Backend(format!("create: {other}"))),
                }
            }
        };
        match (&outcome, added == 1) {
            // This create added the member and wrote nothing: take it back.
            (Err(_), true) => {
                let removed = self
                    .query::<Value>(redis::cmd("ZREM").arg(&tenant_index).arg(s.id.as_str()))
                    .await;
                if let Err(e) = removed {
                    tracing::debug!(error = %e, "unindexing a failed create failed");
                }
            }
            // A member left by an earlier session of the same id (gone since): rescore it.
            (Ok(_), false) => {
                self.index_in_tenant(&tenant_index, s, "rescore").await?;
            }
            _ => {}
        }
        outcome
    }

    async fn get_session(&self, tenant: &TenantId, id: &SessionId) -> StoreResult<Option<Session>> {
        let f: Value = self
            .query(redis::cmd("HGETALL").arg(self.keys().session(id)))
            .await?;
        let f = record::fields(f)?;
        if f.is_empty() {
            return Ok(None);
        }
        let s = record::parse_session(id.clone(), &f)?;
        Ok((&s.tenant_id == tenant).then_some(s))
    }

    async fn touch_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
    ) -> StoreResult<()> {
        let mut inv = scripts::TOUCH.prepare_invoke();
        inv.key(self.keys().session(id))
            .key(self.keys().timeouts(id.route()))
            .arg(tenant.as_str())
            .arg(now)
            .arg(id.as_str());
        self.invoke(&inv).await.map(|_| ())
    }

    async fn reauthenticate(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
    ) -> StoreResult<Option<Session>> {
        let mut inv = scripts::REAUTHENTICATE.prepare_invoke();
        inv.key(self.keys().session(id))
            .key(self.keys().timeouts(id.route()))
            .arg(tenant.as_str())
            .arg(now)
            .arg(id.as_str());
        let f = record::fields(self.invoke(&inv).await?)?;
        if f.is_empty() {
            return Ok(None);
        }
        record::parse_session(id.clone(), &f).map(Some)
    }

    async fn rotate_refresh(
        &self,
        r: Rotation,
        audit: AuditWith<RotateOutcome>,
    ) -> StoreResult<RotateOutcome> {
        no_audit_trail(&audit)?;
        let route = Route::of_hash(&r.presented);
        if Route::of_hash(&r.successor.hash) != route {
            return Err(caller_bug(
                "the successor token is not on the presented one's route",
            ));
        }
        let keys = self.keys();
        let mut inv = scripts::ROTATE.prepare_invoke();
        inv.key(keys.refresh(&r.presented))
            .key(keys.refresh(&r.successor.hash))
            .key(keys.log(route))
            .key(keys.logseq(route))
            .key(keys.timeouts(route))
            .arg(keys.base(route))
            .arg(r.tenant_id.as_str())
            .arg(r.now)
            .arg(r.grace_seconds)
            .arg(hex(&r.successor.hash))
            .arg(r.successor.expires_at)
            .arg(&r.sealed_successor[..])
            .arg(keys.channel())
            .arg(route.0);
        let mut reply = record::array(self.invoke(&inv).await?)?.into_iter();
        Ok(match status(&mut reply)?.as_str() {
            "invalid" => RotateOutcome::Invalid,
            "conflict" => return Err(StoreError::Conflict),
            "inactive" => RotateOutcome::SessionInactive {
                session: session_from(&mut reply)?,
            },
            "rotated" => RotateOutcome::Rotated {
                session: session_from(&mut reply)?,
            },
            "replayed" => RotateOutcome::Replayed {
                session: session_from(&mut reply)?,
                sealed_successor: reply
                    .next()
                    .map(record::bytes)
                    .transpose()?
                    .unwrap_or_default(),
            },
            "reused" => RotateOutcome::Reused {
                session: session_from(&mut reply)?,
                revoked: reply.next().map(record::int_value).transpose()? == Some(1),
            },
            other => return Err(StoreError::Backend(format!("rotate: {other}"))),
        })
    }

    async fn revoke_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        reason: RevokeReason,
        now: UnixTime,
        audit: AuditWith<[Session]>,
    ) -> StoreResult<Option<Session>> {
        no_audit_trail(&audit)?;
        let keys = self.keys();
        let route = id.route();
        let mut inv = scripts::REVOKE.prepare_invoke();
        inv.key(keys.session(id))
            .key(keys.log(route))
            .key(keys.logseq(route))
            .key(keys.timeouts(route))
            .arg(tenant.as_str())
            .arg(reason.as_str())
            .arg(now)
            .arg(id.as_str())
            .arg(keys.channel())
            .arg(route.0);
        let f = record::fields(self.invoke(&inv).await?)?;
        if f.is_empty() {
            return Ok(None);
        }
        record::parse_session(id.clone(), &f).map(Some)
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
        no_audit_trail(&audit)?;
        let keys = self.keys();
        let route = Route::of_user(user);
        let mut inv = scripts::REVOKE_USER.prepare_invoke();
        inv.key(keys.user_index(tenant, user))
            .key(keys.log(route))
            .key(keys.logseq(route))
            .key(keys.timeouts(route))
            .arg(keys.base(route))
            .arg(tenant.as_str())
            .arg(reason.as_str())
            .arg(now)
            .arg(keep.map_or("", SessionId::as_str))
            .arg(keys.channel())
            .arg(route.0)
            .arg(user.to_string());
        record::array(self.invoke(&inv).await?)?
            .into_iter()
            .map(|pair| session_from(&mut record::array(pair)?.into_iter()))
            .collect()
    }

    async fn mark_expired(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
        audit: AuditWith<bool>,
    ) -> StoreResult<bool> {
        no_audit_trail(&audit)?;
        let keys = self.keys();
        let route = id.route();
        let mut inv = scripts::MARK_EXPIRED.prepare_invoke();
        inv.key(keys.session(id))
            .key(keys.timeouts(route))
            .key(keys.log(route))
            .key(keys.logseq(route))
            .arg(tenant.as_str())
            .arg(now)
            .arg(id.as_str())
            .arg(keys.channel())
            .arg(route.0);
        Ok(record::int_value(self.invoke(&inv).await?)? == 1)
    }

    /// Counts the due members of every route's timeouts zset (one pipelined round), then
    /// sweeps the routes that have any, in route order, one script per route and call (see
    /// lua/expire.lua), until `batch` sessions are recorded or no member is due.
    async fn expire_sessions(&self, now: UnixTime, batch: usize) -> StoreResult<Vec<Session>> {
        let mut expired = Vec::new();
        if batch == 0 {
            return Ok(expired);
        }
        let keys = self.keys();
        let routes: Vec<Route> = (0..=u8::MAX).map(Route).collect();
        let groups = routes
            .iter()
            .map(|&route| {
                let mut p = redis::pipe();
                p.cmd("ZCOUNT")
                    .arg(keys.timeouts(route))
                    .arg("-inf")
                    .arg(now);
                p
            })
            .collect();
        let counts = self.pipelines(groups).await?;
        for (&route, count) in routes.iter().zip(counts) {
            let due = count
                .into_iter()
                .next()
                .map(record::int_value)
                .transpose()?;
            if due.unwrap_or(0) == 0 {
                continue;
            }
            loop {
                let limit = batch - expired.len();
                let mut inv = scripts::EXPIRE.prepare_invoke();
                inv.key(keys.timeouts(route))
                    .key(keys.log(route))
                    .key(keys.logseq(route))
                    .arg(keys.base(route))
                    .arg(now)
                    .arg(limit)
                    .arg(keys.channel())
                    .arg(route.0);
                let mut reply = record::array(self.invoke(&inv).await?)?.into_iter();
                let looked_at = reply
                    .next()
                    .map(record::int_value)
                    .transpose()?
                    .unwrap_or(0);
                for pair in reply {
                    expired.push(session_from(&mut record::array(pair)?.into_iter())?);
                }
                if expired.len() >= batch {
                    return Ok(expired);
                }
                if usize::try_from(looked_at).unwrap_or(0) < limit {
                    break;
                }
            }
        }
        Ok(expired)
    }

    async fn find_sessions(
        &self,
        tenant: &TenantId,
        query: &SessionQuery,
        now: UnixTime,
    ) -> StoreResult<Vec<Session>> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        // A user's sessions have an index of their own, on one slot.
        let index = match &query.user_id {
            Some(user) => self.keys().user_index(tenant, user),
            None => self.keys().tenant_index(tenant),
        };
        self.list_index(&index, tenant, query, now).await
    }

    async fn consume_nonce(
        &self,
        tenant: &TenantId,
        nonce: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut inv = scripts::NONCE.prepare_invoke();
        inv.key(self.keys().nonce(tenant, nonce))
            .arg(expires_at)
            .arg(now);
        Ok(record::int_value(self.invoke(&inv).await?)? == 1)
    }

    async fn count_active_sessions(&self, now: UnixTime) -> StoreResult<u64> {
        let tenants: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys().tenants()))
            .await?;
        let mut active = 0u64;
        for tenant in tenants {
            let Ok(tenant) = TenantId::parse(&tenant) else {
                continue;
            };
            let index = self.keys().tenant_index(&tenant);
            let mut start = 0usize;
            let mut gone = Vec::new();
            loop {
                let members: Vec<String> = self
                    .query(
                        redis::cmd("ZRANGE")
                            .arg(&index)
                            .arg(start)
                            .arg(start + PAGE * 4 - 1),
                    )
                    .await?;
                start += members.len();
                let ids: Vec<SessionId> =
                    members.into_iter().map(SessionId::from_generated).collect();
                let (n, dead) = self.count_active_of(&ids, now).await?;
                active += n;
                gone.extend(dead);
                if ids.len() < PAGE * 4 {
                    break;
                }
            }
            self.prune(&index, gone, now).await;
        }
        Ok(active)
    }

    async fn get_refresh(&self, hash: &TokenHash) -> StoreResult<Option<RefreshRecord>> {
        let f: Value = self
            .query(redis::cmd("HGETALL").arg(self.keys().refresh(hash)))
            .await?;
        let f: Fields = record::fields(f)?;
        if f.is_empty() {
            return Ok(None);
        }
        record::parse_refresh(*hash, &f).map(Some)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.ping_server().await
    }
}

impl RedisStore {
    /// How many of `ids` are active at `now`, and which are gone.
    async fn count_active_of(
        &self,
        ids: &[SessionId],
        now: UnixTime,
    ) -> StoreResult<(u64, Vec<SessionId>)> {
        let mut by_route: BTreeMap<Route, Vec<&SessionId>> = BTreeMap::new();
        for id in ids {
            by_route.entry(id.route()).or_default().push(id);
        }
        let groups = by_route
            .values()
            .map(|ids| {
                let mut p = redis::pipe();
                for id in ids {
                    p.cmd("HMGET")
                        .arg(self.keys().session(id))
                        .arg(&["st", "ls", "ax", "it"]);
                }
                p
            })
            .collect();
        let replies = self.pipelines(groups).await?;
        let (mut active, mut gone) = (0, Vec::new());
        for (ids, replies) in by_route.values().zip(replies) {
            for (id, reply) in ids.iter().zip(replies) {
                let st = record::array(reply)?
                    .into_iter()
                    .map(record::opt_string)
                    .collect::<StoreResult<Vec<_>>>()?;
                if st.iter().all(Option::is_none) {
                    gone.push((*id).clone());
                } else if record::active_at(&st, now) {
                    active += 1;
                }
            }
        }
        Ok((active, gone))
    }
}
