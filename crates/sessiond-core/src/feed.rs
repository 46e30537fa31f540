//! The revocation feed (`GET /oauth2/revocations`): what an offline verifier must refuse
//! besides what a token's signature and claims say, derived from the change logs (DESIGN §11).
//!
//! Every node keeps the same view: it reads each log from the oldest entry still retained (so
//! a node that just started knows every revocation younger than the logs' retention), follows
//! it, and keeps each entry until no token it could refuse is still valid ([`HORIZON`]). A
//! cursor is a position in every partition of every log, so any node resumes any node's
//! cursor. The view stays small: a logout of all a user's sessions is one cut-off entry, which
//! replaces the entries of the sessions it covers.

use crate::clock::Clock;
use sessiond_proto::feed::{Cutoff, FeedEvent, KeysChanged, SessionRevoked};
use sessiond_store::{
    Change, ChangeLog, LogEntry, LogRead, SessionId, StoreResult, TenantId, UnixTime,
};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

/// How long an entry is kept after it happened: the longest lifetime of a session token, plus
/// the largest leeway a verifier may allow on `exp` (60 s), plus 60 s for clocks that differ
/// between the nodes and the store. The change logs must be kept at least as
/// long (the server's janitor does).
pub const HORIZON: i64 = crate::token::MAX_TOKEN_TTL as i64 + 120;

/// Entries read per partition per call.
const BATCH: usize = 1_000;
/// The view reads its logs at least this often.
const SWEEP: Duration = Duration::from_millis(250);
/// A view that has not completed a sweep for this long stops sending heartbeats: verifiers
/// then see the silence and stop trusting their copy.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// A cursor ahead of this node is waited for this long, then treated as one it cannot resume.
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

/// A position in every partition of every log, in a fixed order. On the wire: `s1.` and the
/// sequence numbers joined by dots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(Vec<u64>);

impl Cursor {
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("s1.")?;
        if s.len() > 16 * 1024 {
            return None;
        }
        rest.split('.')
            .map(|n| n.parse::<u64>().ok())
            .collect::<Option<Vec<_>>>()
            .map(Self)
    }

    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(3 + self.0.len() * 4);
        s.push_str("s1");
        for n in &self.0 {
            s.push('.');
            s.push_str(&n.to_string());
        }
        s
    }
}

#[derive(Debug, Clone)]
struct Item {
    /// Arrival number: items only ever join at the back, so these ascend through the deque.
    n: u64,
    slot: usize,
    seq: u64,
    /// `None` for deployment-wide entries (keys).
    tenant: Option<String>,
    /// A revoked session's `auth_time` (the newest its tokens carry), when the log says it.
    auth_time: Option<UnixTime>,
    until: UnixTime,
    event: FeedEvent,
}

#[derive(Default)]
struct View {
    /// Bumped when the view had to be rebuilt: every subscriber starts again with a reset.
    generation: u64,
    /// Whether the first read from the oldest entries is done.
    ready: bool,
    /// Cursors at or after these are resumable.
    start: Vec<u64>,
    /// Where the view has read to.
    pos: Vec<u64>,
    items: VecDeque<Item>,
    /// The arrival number of the next item.
    next_n: u64,
    /// The latest cut-off of each (tenant, user): its `before` and arrival number. What it
    /// covers is left out of what subscribers are sent (it stays in `items` until it expires).
    cutoffs: HashMap<String, HashMap<uuid::Uuid, (UnixTime, u64)>>,
}

impl View {
    /// Applies one log entry of `slot`. `offset` turns the log's wall-clock times into the
    /// engine's clock (they differ only under a test clock).
    fn apply(&mut self, slot: usize, entry: LogEntry, now: UnixTime, offset: i64) {
        self.pos[slot] = entry.seq;
        let n = self.next_n;
        self.next_n += 1;
        let at = entry.at + offset;
        let ended = |tenant: TenantId, session: SessionId, user, auth_time, until| {
            let event = FeedEvent::Session(SessionRevoked {
                tid: tenant.as_str().to_owned(),
                sid: session.as_str().to_owned(),
                sub: user,
                at,
                until,
            });
            (Some(tenant.as_str().to_owned()), auth_time, until, event)
        };
        let (tenant, auth_time, until, event) = match entry.change {
            Change::SessionEnded {
                tenant,
                session,
                user,
                auth_time,
                ..
            } => ended(tenant, session, user, auth_time, at + HORIZON),
            // An idle timeout can come before a token's `exp`: verifiers must hear of it, until
            // no token of the session can be valid (its timeout plus the longest lifetime). No
            // token outlives its session's absolute lifetime: that end needs no entry.
            Change::SessionExpired {
                tenant,
                session,
                user,
                auth_time,
                idle: true,
                timed_out_at,
            } => {
                // (Session times are the engine's clock already.)
                let until = timed_out_at.min(at) + HORIZON;
                ended(tenant, session, user, Some(auth_time), until)
            }
            Change::UserSessionsEnded {
                tenant,
                user,
                before,
                ..
            } => {
                if before + HORIZON < now {
                    return;
                }
                let tid = tenant.as_str().to_owned();
                let latest = self
                    .cutoffs
                    .entry(tid.clone())
                    .or_default()
                    .entry(user)
                    .or_insert((before, n));
                if before >= latest.0 {
                    *latest = (before, n);
                }
                let until = before + HORIZON;
                let event = FeedEvent::Cutoff(Cutoff {
                    tid: tid.clone(),
                    sub: user,
                    before,
                    until,
                });
                (Some(tid), None, until, event)
            }
            Change::KeyringChanged => {
                // Only the latest key change matters: it says "fetch the keys again".
                self.items
                    .retain(|i| !matches!(i.event, FeedEvent::Keys(_)));
                let event = FeedEvent::Keys(KeysChanged { at });
                (None, None, at + HORIZON, event)
            }
            _ => return,
        };
        if until < now {
            return;
        }
        self.items.push_back(Item {
            n,
            slot,
            seq: entry.seq,
            tenant,
            auth_time,
            until,
            event,
        });
    }

    /// Whether subscribers are sent `i`: not if a later cut-off of its user covers it (a
    /// session whose tokens all carry an `auth_time` before the cut-off and that ended
    /// before it, or an earlier cut-off).
    fn shown(&self, i: &Item) -> bool {
        let latest = |tid: &str, sub: uuid::Uuid| self.cutoffs.get(tid).and_then(|m| m.get(&sub));
        match &i.event {
            FeedEvent::Session(s) => match (latest(&s.tid, s.sub), i.auth_time) {
                (Some(&(before, n)), Some(auth_time)) => !(auth_time < before && i.n < n),
                _ => true,
            },
            FeedEvent::Cutoff(c) => latest(&c.tid, c.sub).is_none_or(|&(_, n)| n == i.n),
            _ => true,
        }
    }

    fn expire(&mut self, now: UnixTime) {
        let cutoffs = &mut self.cutoffs;
        self.items.retain(|i| {
            let keep = i.until >= now;
            if let (false, FeedEvent::Cutoff(c)) = (keep, &i.event)
                && let Some(users) = cutoffs.get_mut(&c.tid)
            {
                if users.get(&c.sub).is_some_and(|&(_, n)| n == i.n) {
                    users.remove(&c.sub);
                }
                if users.is_empty() {
                    cutoffs.remove(&c.tid);
                }
            }
            keep
        });
    }

    fn visible(i: &Item, tenant: &str) -> bool {
        i.tenant.as_deref().is_none_or(|t| t == tenant)
    }

    /// Everything in force for `tenant`, as of `pos`. Key changes are left out: a client
    /// that starts over fetches the keys anyway.
    fn snapshot(&self, tenant: &str) -> Vec<FeedEvent> {
        self.items
            .iter()
            .filter(|i| i.tenant.as_deref() == Some(tenant) && self.shown(i))
            .map(|i| i.event.clone())
            .collect()
    }

    fn resumable(&self, c: &Cursor) -> Resume {
        if !self.ready {
            // A view still reading its logs for the first time may yet reach the cursor.
            return Resume::Later;
        }
        if c.0.len() != self.pos.len() {
            return Resume::No;
        }
        if c.0.iter().zip(&self.start).any(|(c, s)| c < s) {
            return Resume::No;
        }
        if c.0.iter().zip(&self.pos).any(|(c, p)| c > p) {
            return Resume::Later;
        }
        Resume::Yes
    }
}

/// This node has not read as far as the cursor it was given (it is behind, or cannot read its
/// logs): the client should retry, here or on another node, with the same cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behind;

enum Resume {
    Yes,
    /// The cursor is ahead of this node: wait for it to read further.
    Later,
    No,
}

/// What the feed asks of its node before it announces a key change: to hold the keyring that
/// change made (so a verifier that fetches the JWKS on `keys` gets the new one from this node).
#[async_trait::async_trait]
pub trait KeyringSource: Send + Sync {
    async fn reload_keyring(&self) -> crate::CoreResult<()>;
}

/// The revocation view of one node. Build it with [`Feed::spawn`].
pub struct Feed {
    logs: Vec<Arc<dyn ChangeLog>>,
    /// (log, partition) of every cursor position.
    slots: Vec<(usize, usize)>,
    clock: Arc<dyn Clock>,
    view: RwLock<View>,
    moved: tokio::sync::watch::Sender<u64>,
    /// When the last complete sweep started; a new subscriber waits on it for its first read.
    swept: tokio::sync::watch::Sender<Option<Instant>>,
    /// Woken by the node's own change-log follower, which holds the store's hints.
    poke: tokio::sync::Notify,
    /// Whether to wait on the logs' hints itself (no follower holds them).
    own_hints: bool,
    /// Set at shutdown: every stream ends.
    closed: std::sync::atomic::AtomicBool,
    keys: Option<Arc<dyn KeyringSource>>,
}

impl Feed {
    /// Starts following `logs` (from their oldest retained entries) until the feed is dropped.
    /// `own_hints`: wait on the logs' hints (true when no change-log follower runs on this
    /// node, as with SQLite); otherwise the follower calls [`Feed::poke`].
    /// `keys`: reloaded before a key change is announced.
    pub fn spawn(
        logs: Vec<Arc<dyn ChangeLog>>,
        clock: Arc<dyn Clock>,
        own_hints: bool,
        keys: Option<Arc<dyn KeyringSource>>,
    ) -> Arc<Self> {
        let slots = logs
            .iter()
            .enumerate()
            .flat_map(|(l, log)| (0..log.partitions()).map(move |p| (l, p)))
            .collect();
        let feed = Arc::new(Self {
            logs,
            slots,
            clock,
            view: RwLock::new(View::default()),
            moved: tokio::sync::watch::channel(0).0,
            swept: tokio::sync::watch::channel(None).0,
            poke: tokio::sync::Notify::new(),
            own_hints,
            closed: std::sync::atomic::AtomicBool::new(false),
            keys,
        });
        tokio::spawn(follow(Arc::downgrade(&feed)));
        feed
    }

    /// Ends every subscription (the node is shutting down: its clients resume elsewhere).
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.moved.send_modify(|n| *n += 1);
    }

    /// Something may have been logged: read now.
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// Has the view read every log within [`FRESH_FOR`]?
    pub fn is_fresh(&self) -> bool {
        self.last_sweep().is_some_and(|t| t.elapsed() <= FRESH_FOR)
    }

    /// When the last complete sweep started.
    fn last_sweep(&self) -> Option<Instant> {
        *self.swept.borrow()
    }

    fn read_view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_view(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A subscription for `tenant`, resuming `cursor` if this node can: a cursor older than
    /// what this node keeps, of another layout, or past the logs' head (still not reached by
    /// a sweep that started after the call), starts over (a reset). A cursor that a node which
    /// cannot read its logs has not reached within [`CATCH_UP_WAIT`] gives [`Behind`]:
    /// starting over from that node's older state would make the client forget what it has.
    ///
    /// The view is asked to read its logs now: the subscription's `synced` waits for a sweep
    /// that started after this call (see [`Subscription::next`]).
    pub async fn subscribe(
        self: &Arc<Self>,
        tenant: String,
        cursor: Option<Cursor>,
    ) -> Result<Subscription, Behind> {
        let moved = self.moved.subscribe();
        let mut swept = self.swept.subscribe();
        let began = Instant::now();
        self.poke();
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        let resume = loop {
            // Read before the view: what a sweep completed by then has read is in the view.
            let swept_since = self.last_sweep().is_some_and(|t| t > began);
            let (r, ready) = {
                let v = self.read_view();
                let r = match &cursor {
                    Some(c) => v.resumable(c),
                    None => Resume::No,
                };
                (r, v.ready)
            };
            if !matches!(r, Resume::Later) {
                break r;
            }
            // A complete sweep that started after the client came and still did not reach
            // its cursor: the cursor is past the logs' head (another deployment, or a store
            // that lost entries), so the client starts over.
            if ready && swept_since {
                break Resume::No;
            }
            // A node that cannot read its logs sends the client away instead.
            if tokio::time::Instant::now() >= deadline {
                return Err(Behind);
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), swept.changed()).await;
        };
        let generation = self.read_view().generation;
        let cursor = match (resume, cursor) {
            (Resume::Yes, Some(c)) => c,
            _ => Cursor(Vec::new()),
        };
        Ok(Subscription {
            feed: Arc::clone(self),
            tenant,
            cursor,
            generation,
            started: false,
            seen: None,
            moved,
            began,
            swept,
        })
    }

    async fn sweep(&self) -> StoreResult<bool> {
        let started = Instant::now();
        let (ready, mut pos) = {
            let v = self.read_view();
            (v.ready, v.pos.clone())
        };
        let now = self.clock.now();
        // The logs stamp entries with the wall clock; tokens use the engine's clock.
        let offset = now - sessiond_store::wall_clock();
        if !ready {
            let start = self.oldest().await?;
            let mut v = self.write_view();
            v.generation += 1;
            v.items.clear();
            v.cutoffs.clear();
            v.start = start.clone();
            v.pos = start.clone();
            pos = start;
            drop(v);
        }
        let mut changed = !ready;
        for (l, log) in self.logs.iter().enumerate() {
            let mut pending: Vec<usize> = (0..self.slots.len())
                .filter(|&s| self.slots[s].0 == l)
                .collect();
            while !pending.is_empty() {
                let ask: Vec<(usize, u64)> =
                    pending.iter().map(|&s| (self.slots[s].1, pos[s])).collect();
                let reads = log.read_log(&ask, BATCH).await?;
                let keys_changed = reads.iter().any(|r| match r {
                    LogRead::Entries(es) => es
                        .iter()
                        .any(|e| matches!(e.change, Change::KeyringChanged)),
                    LogRead::Gone { .. } => false,
                });
                if let Some(keys) = self.keys.as_ref().filter(|_| keys_changed) {
                    keys.reload_keyring().await.map_err(|e| {
                        sessiond_store::StoreError::Backend(format!("keyring reload: {e}"))
                    })?;
                }
                let mut again = Vec::new();
                let mut v = self.write_view();
                for (&s, r) in pending.iter().zip(reads) {
                    match r {
                        LogRead::Entries(entries) => {
                            if entries.len() >= BATCH {
                                again.push(s);
                            }
                            for e in entries {
                                v.apply(s, e, now, offset);
                                changed = true;
                            }
                            pos[s] = v.pos[s];
                        }
                        LogRead::Gone { .. } => {
                            tracing::warn!(
                                log = l,
                                "the revocation feed cannot resume a change log; rebuilding it"
                            );
                            v.ready = false;
                            return Ok(true);
                        }
                    }
                }
                drop(v);
                pending = again;
            }
        }
        {
            let mut v = self.write_view();
            let before = v.items.len();
            v.expire(now);
            changed |= v.items.len() != before;
            v.ready = true;
        }
        self.swept.send_replace(Some(started));
        Ok(changed)
    }

    /// The oldest resumable cursor of every slot: a binary search with reads of one entry,
    /// all partitions of a log at once.
    async fn oldest(&self) -> StoreResult<Vec<u64>> {
        let mut out = vec![0u64; self.slots.len()];
        for (l, log) in self.logs.iter().enumerate() {
            let slots: Vec<usize> = (0..self.slots.len())
                .filter(|&s| self.slots[s].0 == l)
                .collect();
            let first: Vec<(usize, u64)> = slots.iter().map(|&s| (self.slots[s].1, 0)).collect();
            // Gone below the oldest retained entry, readable from it up to the head: the
            // answer lies in (lo, hi].
            let mut search: Vec<(usize, u64, u64)> = Vec::new();
            for (&s, r) in slots.iter().zip(log.read_log(&first, 1).await?) {
                if let LogRead::Gone { head } = r {
                    search.push((s, 0, head));
                }
            }
            while !search.is_empty() {
                let probes: Vec<(usize, u64)> = search
                    .iter()
                    .map(|&(s, lo, hi)| (self.slots[s].1, lo + (hi - lo) / 2))
                    .collect();
                let reads = log.read_log(&probes, 1).await?;
                for (entry, r) in search.iter_mut().zip(reads) {
                    let mid = entry.1 + (entry.2 - entry.1) / 2;
                    match r {
                        LogRead::Gone { .. } => entry.1 = mid,
                        LogRead::Entries(_) => entry.2 = mid,
                    }
                }
                search.retain(|&(s, lo, hi)| {
                    if hi - lo <= 1 {
                        out[s] = hi;
                        false
                    } else {
                        true
                    }
                });
            }
        }
        Ok(out)
    }
}

async fn follow(feed: Weak<Feed>) {
    let mut failures = 0u32;
    loop {
        let Some(f) = feed.upgrade() else {
            return;
        };
        match f.sweep().await {
            Ok(changed) => {
                if failures > 0 {
                    tracing::info!("the revocation feed reads its change logs again");
                }
                failures = 0;
                if changed {
                    f.moved.send_modify(|n| *n += 1);
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, "the revocation feed cannot read a change log; heartbeats stop until it can");
                }
            }
        }
        match f.logs.first().filter(|_| f.own_hints && failures == 0) {
            Some(log) => {
                tokio::select! {
                    _ = log.wait_hint(SWEEP) => {}
                    _ = f.poke.notified() => {}
                }
            }
            None => {
                let _ = tokio::time::timeout(SWEEP, f.poke.notified()).await;
            }
        }
        drop(f);
    }
}

/// One client's position in the feed.
pub struct Subscription {
    feed: Arc<Feed>,
    tenant: String,
    cursor: Cursor,
    generation: u64,
    started: bool,
    /// The arrival number up to which the view has been looked at (after the first call).
    seen: Option<u64>,
    moved: tokio::sync::watch::Receiver<u64>,
    /// When the client came: `synced` waits for a sweep that started after this.
    began: Instant,
    swept: tokio::sync::watch::Receiver<Option<Instant>>,
}

impl Subscription {
    /// Has the feed been closed (see [`Feed::close`])? The stream should end.
    pub fn is_closed(&self) -> bool {
        self.feed.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// What the view holds for this subscriber now; `None` before the view is complete, and
    /// on the first call, before a sweep that started after the client came.
    fn collect(&mut self) -> Option<Vec<(String, FeedEvent)>> {
        // Read before the view: what a sweep completed by then has read is in the view.
        let swept_since = self.feed.last_sweep().is_some_and(|t| t > self.began);
        let v = self.feed.read_view();
        // Nothing — not even `synced` — from a view that is incomplete or has not read its
        // logs lately: the client must not take it for current. Nor before the view has read
        // the logs since the client came: `synced` says that everything in force has been
        // sent, which includes every entry committed before the stream opened, here or on
        // another node.
        let current = swept_since && self.feed.is_fresh();
        if !v.ready || (!self.started && !current) {
            return None;
        }
        let mut out = Vec::new();
        let fresh_start = !self.started && self.cursor.0.is_empty();
        if fresh_start || v.generation != self.generation {
            self.generation = v.generation;
            self.cursor = Cursor(v.pos.clone());
            // Until `synced` the ids are empty: a client cut off in the middle of the
            // snapshot has no cursor to resume from (which would skip the rest), so it starts
            // over.
            out.push((String::new(), FeedEvent::Reset));
            out.extend(
                v.snapshot(&self.tenant)
                    .into_iter()
                    .map(|e| (String::new(), e)),
            );
            out.push((self.cursor.encode(), FeedEvent::Synced));
        } else {
            // After the first call only what arrived since is new: a suffix of the deque.
            let from = self
                .seen
                .map_or(0, |seen| v.items.partition_point(|i| i.n <= seen));
            for i in v.items.range(from..) {
                if i.seq > self.cursor.0.get(i.slot).copied().unwrap_or(u64::MAX)
                    && View::visible(i, &self.tenant)
                    && v.shown(i)
                {
                    if let Some(c) = self.cursor.0.get_mut(i.slot) {
                        *c = i.seq;
                    }
                    out.push((self.cursor.encode(), i.event.clone()));
                }
            }
            self.cursor = Cursor(v.pos.clone());
            if !self.started {
                out.push((self.cursor.encode(), FeedEvent::Synced));
            }
        }
        self.seen = v.next_n.checked_sub(1);
        Some(out)
    }

    /// The next events with the cursor after each, waiting at most `heartbeat` for something
    /// to happen. The first call answers once the view has completed a read of its logs that
    /// started after [`Feed::subscribe`] (at once, usually: the subscription asked for it):
    /// what came after the cursor, or a reset and everything in force; then `synced`. So an
    /// entry committed before the subscription, on any node, comes before `synced`. Until
    /// then calls give nothing. A call on which nothing happened gives a heartbeat, if the
    /// view is fresh — and nothing otherwise (a stale node falls silent).
    pub async fn next(&mut self, heartbeat: Duration) -> Vec<(String, FeedEvent)> {
        if self.started {
            let _ = tokio::time::timeout(heartbeat, self.moved.changed()).await;
        }
        let now_ms = self.feed.clock.now() * 1000;
        let mut collected = self.collect();
        if collected.is_none() && !self.started {
            // Wait for a read of the logs that started after the client came (for a new
            // view, its first read).
            let _ = tokio::time::timeout(heartbeat, self.swept.changed()).await;
            collected = self.collect();
        }
        // Nothing to say before the view is complete, not even a heartbeat.
        let Some(mut out) = collected else {
            return Vec::new();
        };
        self.started = true;
        if out.is_empty() && self.feed.is_fresh() {
            out.push((self.cursor.encode(), FeedEvent::Heartbeat { now: now_ms }));
        }
        out
    }
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("slots", &self.slots.len())
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sessiond_store::{RevokeReason, SessionId, TenantId};

    const NOW: i64 = 1_000_000;

    /// A session id whose random part starts with `n`.
    fn sid(n: u8) -> SessionId {
        let mut random = [0u8; 15];
        random[0] = n;
        SessionId::generate(sessiond_store::Route(0), random)
    }

    fn ended(seq: u64, n: u8, user: uuid::Uuid, created: i64) -> LogEntry {
        LogEntry {
            seq,
            at: NOW,
            change: Change::SessionEnded {
                tenant: TenantId::parse("t").unwrap(),
                session: sid(n),
                user,
                reason: RevokeReason::Logout,
                auth_time: Some(created),
            },
        }
    }

    fn cutoff(seq: u64, user: uuid::Uuid, before: i64) -> LogEntry {
        LogEntry {
            seq,
            at: NOW,
            change: Change::UserSessionsEnded {
                tenant: TenantId::parse("t").unwrap(),
                user,
                before,
                reason: RevokeReason::LogoutAll,
            },
        }
    }

    fn view(slots: usize) -> View {
        View {
            ready: true,
            start: vec![0; slots],
            pos: vec![0; slots],
            ..View::default()
        }
    }

    fn names(events: &[FeedEvent]) -> Vec<&'static str> {
        events.iter().map(FeedEvent::name).collect()
    }

    #[test]
    fn a_cutoff_replaces_the_sessions_it_covers_and_only_those() {
        let alice = uuid::Uuid::from_u128(1);
        let bob = uuid::Uuid::from_u128(2);
        let mut v = view(1);
        v.apply(0, ended(1, 1, alice, NOW - 10), NOW, 0);
        v.apply(0, ended(2, 2, alice, NOW), NOW, 0);
        v.apply(0, ended(3, 3, bob, NOW - 10), NOW, 0);
        v.apply(0, cutoff(4, alice, NOW), NOW, 0);
        let snap = v.snapshot("t");
        assert_eq!(names(&snap), ["session", "session", "cutoff"]);
        let sids: Vec<String> = snap
            .iter()
            .filter_map(|e| match e {
                FeedEvent::Session(s) => Some(s.sid.clone()),
                _ => None,
            })
            .collect();
        let want = [sid(2).as_str().to_owned(), sid(3).as_str().to_owned()];
        assert_eq!(sids, want, "created in the cut-off's second stays");
        // A session created before the cut-off but ended after it (a login that raced the
        // logout-all) is listed: the cut-off may expire before that session's tokens.
        v.apply(0, ended(5, 5, alice, NOW - 5), NOW, 0);
        assert_eq!(v.snapshot("t").len(), 4);
        // A later cut-off replaces the earlier one.
        v.apply(0, cutoff(6, alice, NOW + 5), NOW, 0);
        let snap = v.snapshot("t");
        assert_eq!(names(&snap), ["session", "cutoff"]);
        assert_eq!(v.pos, [6]);
        // The cut-offs expire with their `until`, and the index with them.
        v.expire(NOW + 5 + HORIZON + 1);
        assert!(v.cutoffs.is_empty() && v.items.is_empty());
        assert!(v.snapshot("other").is_empty(), "scoped to the tenant");
    }

    /// An idle timeout can come before a token's `exp`, so it is announced like a revocation;
    /// the end of a session's absolute lifetime cannot (no token outlives it), so it is not.
    #[test]
    fn idle_timeouts_are_announced_and_absolute_ones_are_not() {
        let alice = uuid::Uuid::from_u128(1);
        let expired = |seq: u64, n: u8, idle: bool| LogEntry {
            seq,
            at: NOW,
            change: Change::SessionExpired {
                tenant: TenantId::parse("t").unwrap(),
                session: sid(n),
                user: alice,
                auth_time: NOW - 100,
                idle,
                timed_out_at: NOW - 10,
            },
        };
        let mut v = view(1);
        v.apply(0, expired(1, 1, true), NOW, 0);
        v.apply(0, expired(2, 2, false), NOW, 0);
        let snap = v.snapshot("t");
        assert_eq!(names(&snap), ["session"]);
        assert!(matches!(&snap[0], FeedEvent::Session(s) if s.sid == sid(1).as_str()));
        match &snap[0] {
            FeedEvent::Session(s) => assert_eq!(s.until, NOW - 10 + HORIZON, "from its timeout"),
            other => panic!("{other:?}"),
        }
        // A later cut-off of the user covers it, as it covers a revocation.
        v.apply(0, cutoff(3, alice, NOW), NOW, 0);
        assert_eq!(names(&v.snapshot("t")), ["cutoff"]);
        assert_eq!(v.pos, [3]);
        // A timeout noticed only after every token of the session expired is not listed.
        let mut late = expired(4, 4, true);
        if let Change::SessionExpired { timed_out_at, .. } = &mut late.change {
            *timed_out_at = NOW - HORIZON - 1;
        }
        v.apply(0, late, NOW, 0);
        assert_eq!(v.snapshot("t").len(), 1);
    }

    #[test]
    fn entries_expire_after_the_horizon() {
        let mut v = view(1);
        v.apply(0, ended(1, 1, uuid::Uuid::from_u128(1), NOW), NOW, 0);
        v.expire(NOW + HORIZON);
        assert_eq!(v.items.len(), 1);
        v.expire(NOW + HORIZON + 1);
        assert!(v.items.is_empty());
        // An entry read long after it was written (a node that just started) keeps its own
        // `until`, and one already past it is not kept at all.
        let mut old = ended(2, 2, uuid::Uuid::from_u128(1), NOW - 200);
        old.at = NOW - 100;
        v.apply(0, old, NOW, 0);
        match &v.items[0].event {
            FeedEvent::Session(s) => assert_eq!(s.until, NOW - 100 + HORIZON),
            other => panic!("{other:?}"),
        }
        v.apply(
            0,
            ended(3, 3, uuid::Uuid::from_u128(1), NOW),
            NOW + HORIZON + 10,
            0,
        );
        assert_eq!(v.items.len(), 1);
    }

    #[test]
    fn cursors_resume_within_what_the_view_holds() {
        let mut v = view(2);
        v.start = vec![5, 0];
        v.pos = vec![9, 3];
        let c = |s: &str| Cursor::parse(s).unwrap();
        assert!(matches!(v.resumable(&c("s1.5.0")), Resume::Yes));
        assert!(matches!(v.resumable(&c("s1.9.3")), Resume::Yes));
        assert!(matches!(v.resumable(&c("s1.4.3")), Resume::No), "purged");
        assert!(
            matches!(v.resumable(&c("s1.9")), Resume::No),
            "another layout"
        );
        assert!(matches!(v.resumable(&c("s1.10.3")), Resume::Later), "ahead");
        v.ready = false;
        assert!(matches!(v.resumable(&c("s1.9.3")), Resume::Later));
        assert_eq!(c("s1.9.3").encode(), "s1.9.3");
        for bad in ["", "s1", "s1.", "s1.x", "s2.1", "s1.-1", "1.2"] {
            assert!(Cursor::parse(bad).is_none(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_subscriber_gets_what_came_after_its_cursor_in_order() {
        use crate::testkit::{Cluster, login_alice};
        let c = Cluster::start(1, None).await;
        let ctx = c.with_alice().await;
        let e = &c.nodes[0];
        let feed = e.start_feed(vec![c.store.clone()], false);
        let mut sub = feed.subscribe("t1".into(), None).await.unwrap();
        let first = sub.next(Duration::from_millis(300)).await;
        let first: Vec<FeedEvent> = first.into_iter().map(|(_, e)| e).collect();
        assert_eq!(names(&first), ["reset", "synced"]);
        let hb = sub.next(Duration::from_millis(300)).await;
        assert!(
            matches!(hb[..], [(_, FeedEvent::Heartbeat { .. })]),
            "{hb:?}"
        );
        let resume_at = hb[0].0.clone();
        for _ in 0..2 {
            let issued = login_alice(e, &ctx).await;
            e.logout(&ctx, &issued.session_token).await.unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 2 {
            for (_, e) in sub.next(Duration::from_millis(300)).await {
                if !matches!(e, FeedEvent::Heartbeat { .. }) {
                    got.push(e);
                }
            }
        }
        assert_eq!(names(&got), ["session", "session"]);
        let mut again = feed
            .subscribe("t1".into(), Cursor::parse(&resume_at))
            .await
            .unwrap();
        let replay: Vec<FeedEvent> = again
            .next(Duration::from_millis(300))
            .await
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        assert_eq!(
            replay[..2],
            got[..],
            "a resumed cursor gets the same entries"
        );
        assert_eq!(names(&replay), ["session", "session", "synced"]);
        let mut other = feed
            .subscribe("t2".into(), Cursor::parse(&resume_at))
            .await
            .unwrap();
        let nothing = other.next(Duration::from_millis(300)).await;
        assert_eq!(
            nothing.len(),
            1,
            "another tenant sees only synced: {nothing:?}"
        );
        assert!(!sub.is_closed());
        feed.close();
        assert!(
            sub.is_closed() && other.is_closed(),
            "shutdown ends every stream"
        );
    }

    /// `synced` comes after a read of the logs that started once the client came: an entry
    /// committed before the subscription comes before it, though the view had not read it
    /// yet (nothing pokes this view when something is logged: left alone, it reads every
    /// 250 ms).
    #[tokio::test]
    async fn synced_comes_after_everything_committed_before_the_subscription() {
        use crate::testkit::{Cluster, login_alice};
        async fn first(sub: &mut Subscription) -> Vec<(String, FeedEvent)> {
            for _ in 0..20 {
                let got = sub.next(Duration::from_millis(300)).await;
                if !got.is_empty() {
                    return got;
                }
            }
            panic!("nothing within 6 s");
        }
        let c = Cluster::start(1, None).await;
        let ctx = c.with_alice().await;
        let e = &c.nodes[0];
        let feed = Feed::spawn(vec![c.store.clone()], c.clock.clone(), false, None);
        let mut sub = feed.subscribe("t1".into(), None).await.unwrap();
        let got = first(&mut sub).await;
        let mut cursor = got.last().unwrap().0.clone();
        for logouts in 1..=3 {
            let issued = login_alice(e, &ctx).await;
            e.logout(&ctx, &issued.session_token).await.unwrap();
            let mut resumed = feed
                .subscribe("t1".into(), Cursor::parse(&cursor))
                .await
                .unwrap();
            let got = first(&mut resumed).await;
            let events: Vec<FeedEvent> = got.iter().map(|(_, e)| e.clone()).collect();
            assert_eq!(names(&events), ["session", "synced"], "resumed");
            assert!(
                matches!(&events[0], FeedEvent::Session(s) if s.sid == issued.session.id.as_str())
            );
            let issued = login_alice(e, &ctx).await;
            e.logout(&ctx, &issued.session_token).await.unwrap();
            let mut anew = feed.subscribe("t1".into(), None).await.unwrap();
            let got = first(&mut anew).await;
            let events: Vec<FeedEvent> = got.iter().map(|(_, e)| e.clone()).collect();
            assert_eq!(events.len(), 2 * logouts + 2, "started over: {events:?}");
            assert!(matches!(events.last(), Some(FeedEvent::Synced)));
            assert!(
                matches!(&events[events.len() - 2], FeedEvent::Session(s) if s.sid == issued.session.id.as_str())
            );
            cursor = got.last().unwrap().0.clone();
        }
    }

    /// A change log that can be made to fail (the store going away).
    struct Flaky {
        inner: Arc<sessiond_store::memory::MemoryStore>,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl ChangeLog for Flaky {
        fn partitions(&self) -> usize {
            self.inner.partitions()
        }
        async fn read_log(
            &self,
            cursors: &[(usize, u64)],
            limit: usize,
        ) -> StoreResult<Vec<LogRead>> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(sessiond_store::StoreError::Unavailable("down".into()));
            }
            self.inner.read_log(cursors, limit).await
        }
        async fn wait_hint(&self, max_wait: Duration) -> Vec<usize> {
            self.inner.wait_hint(max_wait).await
        }
        async fn purge_log(&self, before: UnixTime, batch: usize) -> StoreResult<u64> {
            self.inner.purge_log(before, batch).await
        }
        async fn load_mark(&self, name: &str) -> StoreResult<Option<sessiond_store::Mark>> {
            self.inner.load_mark(name).await
        }
        async fn swap_mark(
            &self,
            name: &str,
            expected: Option<u64>,
            body: &str,
        ) -> StoreResult<Option<u64>> {
            self.inner.swap_mark(name, expected, body).await
        }
    }

    #[tokio::test]
    async fn a_feed_that_cannot_read_its_log_falls_silent() {
        let log = Arc::new(Flaky {
            inner: Arc::new(sessiond_store::memory::MemoryStore::new()),
            down: false.into(),
        });
        let feed = Feed::spawn(
            vec![log.clone()],
            Arc::new(crate::ManualClock::new(NOW)),
            true,
            None,
        );
        let mut sub = feed.subscribe("t".into(), None).await.unwrap();
        assert_eq!(sub.next(Duration::from_millis(300)).await.len(), 2);
        let hb = sub.next(Duration::from_millis(300)).await;
        assert!(matches!(hb[..], [(_, FeedEvent::Heartbeat { .. })]));
        log.down.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(FRESH_FOR + Duration::from_millis(100)).await;
        for _ in 0..3 {
            let quiet = sub.next(Duration::from_millis(100)).await;
            assert!(
                quiet.is_empty(),
                "no heartbeat from a stale view: {quiet:?}"
            );
        }
        // A client that connects now is told nothing, not even `synced`; one whose cursor is
        // ahead of this node is sent away rather than reset to this node's older state.
        let mut newcomer = feed.subscribe("t".into(), None).await.unwrap();
        assert!(newcomer.next(Duration::from_millis(100)).await.is_empty());
        let ahead = feed.subscribe("t".into(), Some(Cursor(vec![1_000]))).await;
        assert_eq!(ahead.err(), Some(Behind));
        log.down.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut back = false;
        for _ in 0..20 {
            if !sub.next(Duration::from_millis(100)).await.is_empty() {
                back = true;
                break;
            }
        }
        assert!(back, "heartbeats resume once the log answers");
    }

    #[tokio::test]
    async fn a_new_view_starts_at_the_oldest_entry_kept() {
        use crate::testkit::{Cluster, login_alice};
        let c = Cluster::start(1, None).await;
        let ctx = c.with_alice().await;
        let e = &c.nodes[0];
        for _ in 0..5 {
            let issued = login_alice(e, &ctx).await;
            e.logout(&ctx, &issued.session_token).await.unwrap();
        }
        let head = match c.store.read_log(&[(0, 0)], 100).await.unwrap().pop() {
            Some(LogRead::Entries(all)) => all.last().unwrap().seq,
            other => panic!("{other:?}"),
        };
        // The oldest entries are purged: a node starting now reads from what is left.
        let purged = c
            .store
            .purge_log(i64::MAX, (head - 2) as usize)
            .await
            .unwrap();
        assert_eq!(purged, head - 2);
        let feed = Feed::spawn(vec![c.store.clone()], c.clock.clone(), true, None);
        let mut sub = feed.subscribe("t1".into(), None).await.unwrap();
        let got: Vec<FeedEvent> = sub
            .next(Duration::from_millis(500))
            .await
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        assert_eq!(names(&got), ["reset", "session", "session", "synced"]);
        assert_eq!(feed.read_view().start, [head - 2]);
        let old = Cursor(vec![head - 3]);
        let mut stale = feed.subscribe("t1".into(), Some(old)).await.unwrap();
        let again = stale.next(Duration::from_millis(300)).await;
        assert!(
            matches!(again[0].1, FeedEvent::Reset),
            "a purged cursor starts over"
        );
    }

    /// A keyring that takes a while to reload, and says when it has.
    struct SlowKeys(std::sync::atomic::AtomicBool);

    #[async_trait::async_trait]
    impl KeyringSource for SlowKeys {
        async fn reload_keyring(&self) -> crate::CoreResult<()> {
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_key_change_is_announced_only_once_the_node_holds_the_new_keys() {
        use crate::testkit::Cluster;
        let c = Cluster::start(1, None).await;
        let keys = Arc::new(SlowKeys(false.into()));
        let feed = Feed::spawn(
            vec![c.store.clone()],
            c.clock.clone(),
            true,
            Some(keys.clone()),
        );
        let mut sub = feed.subscribe("t1".into(), None).await.unwrap();
        while sub.next(Duration::from_millis(300)).await.is_empty() {}
        c.nodes[0].rotate_keys().await.unwrap();
        loop {
            let got = sub.next(Duration::from_millis(300)).await;
            if got.iter().any(|(_, e)| matches!(e, FeedEvent::Keys(_))) {
                break;
            }
        }
        assert!(
            keys.0.load(std::sync::atomic::Ordering::SeqCst),
            "announced before the keyring was reloaded"
        );
    }
}
