//! The session-event dispatcher: delivers the events of [`crate::events`] from a change log,
//! at least once.
//!
//! One node per log delivers at a time: the one holding the log's [`MARK`], a lease (`until`)
//! that it renews every [`Options::renew`] by compare-and-swap, together with the cursors up
//! to which every event is done. When a holder stops renewing (it died, or lost the store),
//! another node takes over from the stored cursors. A cursor moves past an entry only when
//! every delivery of it is done — delivered, refused, or given up after [`Options::attempts`]
//! — so an event in flight when its node dies is sent again by the next holder, with the same
//! `jti`. No request waits for a delivery: a logout returns once its entry is written.

use crate::engine::Engine;
use crate::events::{Deliver, Delivery, EndReason, Ended, Outcome, Receivers};
use serde::{Deserialize, Serialize};
use sessiond_store::{Change, ChangeLog, LogRead, StoreResult, TenantId, UnixTime};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The name of the dispatcher's mark beside each log.
pub const MARK: &str = "events";
/// Entries read per partition at a time.
const BATCH: usize = 256;
/// Entries with deliveries under way beyond which the dispatcher reads no further.
const MAX_PENDING: usize = 4096;
/// Entries looked at per read pass (all partitions together).
const READ_BUDGET: usize = 1024;
/// How long (seconds) an entry whose receivers cannot be looked up holds its partition back
/// before it is skipped: longer than a store's usual outage, short of a stalled log.
const STUCK_FOR: i64 = 600;
/// How long the dispatcher waits for a hint before it reads the log anyway.
const POLL: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct Options {
    /// The wait before the second attempt; each later wait is twice the one before.
    pub first_retry: Duration,
    /// Attempts per event and receiver before the event is given up.
    pub attempts: u32,
    /// Seconds a holder's lease lasts without renewal.
    pub lease_secs: i64,
    /// How often the holder checks whether its cursors moved or its lease needs renewing
    /// (and how often a node that does not hold it looks again).
    pub renew: Duration,
    /// Attempts in flight at once.
    pub parallel: usize,
    /// The log is this process's alone (an embedded store, held under a file lock): take the
    /// mark at once, whoever held it before (this process, before a restart).
    pub exclusive: bool,
}

impl Default for Options {
    /// Ten attempts over about eight and a half minutes; a 15 s lease, renewed once half of it
    /// is left (checked every 2 s).
    fn default() -> Self {
        Self {
            first_retry: Duration::from_secs(1),
            attempts: 10,
            lease_secs: 15,
            renew: Duration::from_secs(2),
            parallel: 16,
            exclusive: false,
        }
    }
}

/// The mark's body: who holds the lease until when, and each partition's cursor.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Body {
    holder: String,
    until: UnixTime,
    cursors: Vec<u64>,
}

/// Starts delivering the events of `log` (on every node: only the lease holder delivers).
pub fn spawn(
    engine: Arc<Engine>,
    log: Arc<dyn ChangeLog>,
    deliver: Arc<dyn Deliver>,
    opts: Options,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let me = match crate::secret::random_bytes::<12>() {
            Ok(b) => crate::secret::b64(&b),
            Err(e) => {
                tracing::error!(error = %e, "session events: no randomness, not dispatching");
                return;
            }
        };
        let d = Dispatcher {
            slots: Arc::new(Semaphore::new(opts.parallel.max(1))),
            engine,
            log,
            deliver,
            opts,
            me,
        };
        loop {
            match d.acquire().await {
                Ok(Some(lead)) => d.lead(lead).await,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "session events: cannot read the lease"),
            }
            tokio::time::sleep(d.opts.renew).await;
        }
    })
}

struct Dispatcher {
    engine: Arc<Engine>,
    log: Arc<dyn ChangeLog>,
    deliver: Arc<dyn Deliver>,
    opts: Options,
    slots: Arc<Semaphore>,
    me: String,
}

/// A holder's state: the mark's version, how far it has read, and the entries whose
/// deliveries are still under way (how many of them).
struct Lead {
    version: u64,
    until: UnixTime,
    /// The cursors as last stored.
    saved: Vec<u64>,
    read: Vec<u64>,
    pending: BTreeMap<(usize, u64), usize>,
    /// Entries whose receivers could not be looked up, and since when.
    stuck: HashMap<(usize, u64), UnixTime>,
}

impl Lead {
    /// Per partition: the last entry before which every delivery is done.
    fn cursors(&self) -> Vec<u64> {
        (0..self.read.len())
            .map(|p| {
                self.pending
                    .range((p, 0)..(p + 1, 0))
                    .next()
                    .map_or(self.read[p], |(&(_, seq), _)| seq - 1)
            })
            .collect()
    }

    fn finish(&mut self, key: (usize, u64)) {
        if let Some(left) = self.pending.get_mut(&key) {
            *left -= 1;
            if *left == 0 {
                self.pending.remove(&key);
            }
        }
    }
}

impl Dispatcher {
    /// Takes the lease if nobody else holds it; a first holder starts at the logs' heads.
    async fn acquire(&self) -> StoreResult<Option<Lead>> {
        let mark = self.log.load_mark(MARK).await?;
        let now = self.engine.now();
        let (expected, body) = match &mark {
            None => (None, None),
            Some(m) => match serde_json::from_str::<Body>(&m.body) {
                Ok(b) => (Some(m.version), Some(b)),
                Err(e) => {
                    tracing::error!(error = %e, "session events: unreadable mark, starting at the log's head");
                    (Some(m.version), None)
                }
            },
        };
        if let Some(b) = &body
            && !self.opts.exclusive
            && b.holder != self.me
            && b.until > now
        {
            return Ok(None);
        }
        let partitions = self.log.partitions();
        let mut cursors = match body {
            Some(b) => b.cursors,
            None => self.heads().await?,
        };
        cursors.resize(partitions, 0);
        let until = now + self.opts.lease_secs;
        let body = Body {
            holder: self.me.clone(),
            until,
            cursors: cursors.clone(),
        };
        let Some(version) = self.log.swap_mark(MARK, expected, &encode(&body)).await? else {
            return Ok(None);
        };
        tracing::info!(cursors = ?cursors.iter().sum::<u64>(), "session events: dispatching");
        Ok(Some(Lead {
            version,
            until,
            saved: cursors.clone(),
            read: cursors,
            pending: BTreeMap::new(),
            stuck: HashMap::new(),
        }))
    }

    /// Each partition's last sequence number.
    async fn heads(&self) -> StoreResult<Vec<u64>> {
        let past: Vec<(usize, u64)> = (0..self.log.partitions()).map(|p| (p, u64::MAX)).collect();
        Ok(self
            .log
            .read_log(&past, 1)
            .await?
            .into_iter()
            .map(|r| match r {
                LogRead::Gone { head } => head,
                LogRead::Entries(es) => es.last().map_or(0, |e| e.seq),
            })
            .collect())
    }

    /// Delivers while it holds the lease.
    async fn lead(&self, mut lead: Lead) {
        let mut tasks = JoinSet::new();
        let mut keys = HashMap::new();
        let mut renew = tokio::time::interval(self.opts.renew);
        renew.tick().await;
        let mut hint = self.hint();
        let mut read_now = true;
        loop {
            if read_now && lead.pending.len() < MAX_PENDING {
                if let Err(e) = self.read(&mut lead, &mut tasks, &mut keys).await {
                    tracing::warn!(error = %e, "session events: reading the log failed");
                }
                read_now = false;
            }
            tokio::select! {
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => e.id(),
                    };
                    if let Some(key) = keys.remove(&id) {
                        lead.finish(key);
                    }
                }
                _ = renew.tick() => {
                    if !self.renew(&mut lead).await {
                        tasks.abort_all();
                        return;
                    }
                    read_now = true;
                }
                () = &mut hint => {
                    hint = self.hint();
                    read_now = true;
                }
            }
        }
    }

    fn hint(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        let log = Arc::clone(&self.log);
        Box::pin(async move {
            log.wait_hint(POLL).await;
        })
    }

    /// Reads what follows each partition's read position and starts its deliveries — a
    /// bounded amount per pass ([`READ_BUDGET`] entries, [`MAX_PENDING`] under way), so the
    /// lease is renewed in time. An entry whose receivers cannot be looked up holds back its
    /// partition only, and is skipped (logged, counted) after [`STUCK_FOR`] seconds.
    async fn read(
        &self,
        lead: &mut Lead,
        tasks: &mut JoinSet<()>,
        keys: &mut HashMap<tokio::task::Id, (usize, u64)>,
    ) -> crate::error::CoreResult<()> {
        let cursors: Vec<(usize, u64)> = lead.read.iter().copied().enumerate().collect();
        let reads = self.log.read_log(&cursors, BATCH).await?;
        let mut receivers: HashMap<TenantId, Arc<Receivers>> = HashMap::new();
        let mut budget = READ_BUDGET;
        'partitions: for (p, r) in reads.into_iter().enumerate() {
            match r {
                LogRead::Gone { head } => {
                    tracing::error!(
                        partition = p,
                        from = lead.read[p],
                        head,
                        "session events: log entries were purged before they were delivered; \
                         their events are lost"
                    );
                    metrics::counter!("sessiond_session_event_entries_lost_total")
                        .increment(head.saturating_sub(lead.read[p]));
                    lead.read[p] = head;
                }
                LogRead::Entries(entries) => {
                    for e in entries {
                        if budget == 0 || lead.pending.len() >= MAX_PENDING {
                            break 'partitions;
                        }
                        budget -= 1;
                        let ended = match e.change {
                            Change::SessionEnded {
                                tenant,
                                session,
                                user,
                                reason,
                                ..
                            } => Some((tenant, session, user, EndReason::Revoked(reason))),
                            // A timeout noticed after every token of the session had
                            // expired (a backlog the first sweep finds) is not news.
                            Change::SessionExpired { timed_out_at, .. }
                                if timed_out_at + crate::feed::HORIZON < self.engine.now() =>
                            {
                                None
                            }
                            Change::SessionExpired {
                                tenant,
                                session,
                                user,
                                idle,
                                ..
                            } => Some((tenant, session, user, EndReason::TimedOut { idle })),
                            _ => None,
                        };
                        if let Some((tenant, session, user, reason)) = ended {
                            let to = match receivers.get(&tenant) {
                                Some(r) => Arc::clone(r),
                                None => match self.engine.event_receivers(&tenant).await {
                                    Ok(r) => {
                                        let r = Arc::new(r);
                                        receivers.insert(tenant.clone(), Arc::clone(&r));
                                        r
                                    }
                                    Err(err) => {
                                        let now = self.engine.now();
                                        let since = *lead.stuck.entry((p, e.seq)).or_insert(now);
                                        if now - since < STUCK_FOR {
                                            tracing::warn!(error = %err, partition = p, seq = e.seq, "session events: cannot look up the receivers; retrying");
                                            continue 'partitions;
                                        }
                                        tracing::error!(error = %err, partition = p, seq = e.seq, %tenant, "session events: receivers unreadable; this session's events are skipped");
                                        metrics::counter!(
                                            "sessiond_session_event_entries_lost_total"
                                        )
                                        .increment(1);
                                        lead.stuck.remove(&(p, e.seq));
                                        lead.read[p] = e.seq;
                                        continue;
                                    }
                                },
                            };
                            lead.stuck.remove(&(p, e.seq));
                            let ended = Ended {
                                tenant,
                                session,
                                user,
                                reason,
                                at: e.at,
                            };
                            let deliveries = to.deliveries(&ended);
                            if !deliveries.is_empty() {
                                lead.pending.insert((p, e.seq), deliveries.len());
                            }
                            for d in deliveries {
                                let handle = tasks.spawn(attempt(
                                    Arc::clone(&self.engine),
                                    Arc::clone(&self.deliver),
                                    Arc::clone(&self.slots),
                                    self.opts.clone(),
                                    d,
                                ));
                                keys.insert(handle.id(), (p, e.seq));
                            }
                        }
                        lead.read[p] = e.seq;
                    }
                }
            }
        }
        Ok(())
    }

    /// Stores the cursors when they moved, and renews the lease when half of it is left (an
    /// idle node writes nothing; an exclusive one never needs to renew); false once the lease
    /// is lost (another node took it, or it lapsed while the store could not be written).
    async fn renew(&self, lead: &mut Lead) -> bool {
        let now = self.engine.now();
        let cursors = lead.cursors();
        let due = !self.opts.exclusive && lead.until - now <= self.opts.lease_secs / 2;
        if cursors == lead.saved && !due {
            return true;
        }
        let body = Body {
            holder: self.me.clone(),
            until: now + self.opts.lease_secs,
            cursors,
        };
        match self
            .log
            .swap_mark(MARK, Some(lead.version), &encode(&body))
            .await
        {
            Ok(Some(v)) => {
                lead.version = v;
                lead.until = body.until;
                lead.saved = body.cursors;
                true
            }
            Ok(None) => {
                tracing::warn!("session events: another node took over dispatching");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "session events: cannot renew the lease");
                // Stop while the lease still holds, one check (`renew`) ahead of its end.
                let margin = i64::try_from(self.opts.renew.as_secs()).unwrap_or(2) + 1;
                self.opts.exclusive || now + margin < lead.until
            }
        }
    }
}

fn encode(body: &Body) -> String {
    serde_json::to_string(body).unwrap_or_default()
}

/// One event for one receiver: attempts with backoff until it is delivered, refused or
/// given up; the outcome goes to the metrics and the audit trail.
async fn attempt(
    engine: Arc<Engine>,
    deliver: Arc<dyn Deliver>,
    slots: Arc<Semaphore>,
    opts: Options,
    d: Delivery,
) {
    let count = |outcome: &'static str| {
        metrics::counter!(
            "sessiond_session_events_total",
            "channel" => d.channel.as_str(),
            "outcome" => outcome,
        )
        .increment(1);
    };
    let mut wait = opts.first_retry;
    let mut why = String::new();
    for n in 1..=opts.attempts.max(1) {
        let outcome = {
            let Ok(_slot) = slots.acquire().await else {
                return;
            };
            match engine.event_token(&d) {
                Ok(token) => deliver.post(&d, &token).await,
                Err(e) => Outcome::Retry(format!("cannot sign: {e}")),
            }
        };
        match outcome {
            Outcome::Delivered => {
                count("delivered");
                tracing::debug!(receiver = %d.receiver_label(), jti = %d.jti, "session event delivered");
                record(&engine, &d, true).await;
                return;
            }
            Outcome::Refused(w) => {
                count("refused");
                tracing::warn!(receiver = %d.receiver_label(), url = %d.url, why = %w, "session event refused");
                record(&engine, &d, false).await;
                return;
            }
            Outcome::Retry(w) => {
                why = w;
                if n < opts.attempts {
                    count("retried");
                    tracing::debug!(receiver = %d.receiver_label(), attempt = n, why = %why, "session event: retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
    count("given_up");
    tracing::warn!(receiver = %d.receiver_label(), url = %d.url, why = %why, "session event given up");
    record(&engine, &d, false).await;
}

async fn record(engine: &Engine, d: &Delivery, delivered: bool) {
    if let Err(e) = engine.record_delivery(d, delivered).await {
        tracing::warn!(error = %e, "session events: cannot record the delivery");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::events::Channel;
    use crate::testkit::{Cluster, login_alice, ok};
    use sessiond_store::{ChangeLog, IdentityStore, ServiceClient, TokenHash};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Records every attempt; answers `Retry` to the first `fail_first` of them.
    #[derive(Default)]
    struct Receiver {
        attempts: Mutex<Vec<(Delivery, String)>>,
        fail_first: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Deliver for Receiver {
        async fn post(&self, d: &Delivery, token: &str) -> Outcome {
            self.attempts
                .lock()
                .unwrap()
                .push((d.clone(), token.to_owned()));
            if self
                .fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Outcome::Retry("503".into());
            }
            Outcome::Delivered
        }
    }

    impl Receiver {
        fn jtis(&self) -> Vec<(Channel, String)> {
            let a = self.attempts.lock().unwrap();
            a.iter().map(|(d, _)| (d.channel, d.jti.clone())).collect()
        }

        async fn until(&self, n: usize) {
            for _ in 0..500 {
                if self.attempts.lock().unwrap().len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!(
                "{} attempts, expected {n}",
                self.attempts.lock().unwrap().len()
            );
        }
    }

    fn quick() -> Options {
        Options {
            first_retry: Duration::from_millis(20),
            attempts: 3,
            lease_secs: 15,
            renew: Duration::from_millis(50),
            parallel: 4,
            exclusive: false,
        }
    }

    /// Tenant t1 with alice, a CAEP receiver and one back-channel client (and one without).
    async fn setup(c: &Cluster) -> crate::engine::RequestContext {
        let ctx = c.with_alice().await;
        let e = &c.nodes[0];
        let mut patch = serde_json::Map::new();
        patch.insert("caepReceiverUrl".into(), "http://127.0.0.1:9/caep".into());
        ok(e.patch_policy(&ctx.tenant_id, patch).await);
        for (id, uri) in [("app", Some("http://127.0.0.1:9/bcl")), ("quiet", None)] {
            ok(c.store
                .create_client(ServiceClient {
                    client_id: id.into(),
                    tenant_id: ctx.tenant_id.clone(),
                    secret_hash: TokenHash([7; 32]),
                    audience: format!("aud-{id}"),
                    backchannel_logout_uri: uri.map(Into::into),
                    created_at: c.clock.now(),
                })
                .await);
        }
        ctx
    }

    fn claims(token: &str) -> serde_json::Value {
        claims_of(token, 1)
    }

    fn claims_of(token: &str, part: usize) -> serde_json::Value {
        let payload = token.split('.').nth(part).unwrap();
        serde_json::from_slice(&crate::secret::b64_decode(payload).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_logout_reaches_each_receiver_once_with_a_signed_event() {
        let c = Cluster::start(1, None).await;
        let ctx = setup(&c).await;
        let e = Arc::clone(&c.nodes[0]);
        let rx = Arc::new(Receiver::default());
        let task = spawn(Arc::clone(&e), c.store.clone(), rx.clone(), quick());
        // The dispatcher takes the lease (at the log's head) before the session ends.
        let issued = login_alice(&e, &ctx).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        ok(e.logout(&ctx, &issued.session_token).await);
        rx.until(2).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let attempts = rx.attempts.lock().unwrap().clone();
        assert_eq!(attempts.len(), 2, "one event per receiver: {attempts:?}");
        let sid = issued.session.id.as_str();
        for (d, token) in &attempts {
            let header = claims_of(token, 0);
            assert_eq!(header["kid"], e.keyring().unwrap().signing_kid());
            let c = claims(token);
            assert_eq!(c["jti"], d.jti.as_str());
            match d.channel {
                Channel::BackchannelLogout => {
                    assert_eq!(header["typ"], "logout+jwt");
                    assert_eq!(d.receiver, "app");
                    assert_eq!(c["aud"], "app");
                    assert_eq!(c["sid"], sid);
                    assert_eq!(c["sub"], issued.session.user_id.to_string());
                    assert!(c["events"][crate::events::BACKCHANNEL_LOGOUT_EVENT].is_object());
                    assert!(c.get("nonce").is_none());
                    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 120);
                }
                Channel::Caep => {
                    assert_eq!(header["typ"], "secevent+jwt");
                    let ev = &c["events"][crate::events::SESSION_REVOKED_EVENT];
                    assert_eq!(ev["initiating_entity"], "user");
                    assert_eq!(ev["reason_admin"]["en"], "logout");
                    assert_eq!(c["sub_id"]["session"]["id"], sid);
                }
            }
        }
        let audited = ok(c
            .store
            .find_audit(
                &ctx.tenant_id,
                &sessiond_store::AuditQuery {
                    kind: Some(sessiond_store::AuditKind::SessionEventDelivered),
                    limit: 10,
                    ..Default::default()
                },
            )
            .await);
        let mut receivers: Vec<_> = audited.iter().filter_map(|a| a.reason.clone()).collect();
        receivers.sort();
        assert_eq!(receivers, ["backchannel_logout:app", "caep"]);
        task.abort();
    }

    #[tokio::test]
    async fn a_failing_receiver_gets_the_event_on_a_later_attempt_with_the_same_jti() {
        let c = Cluster::start(1, None).await;
        let ctx = setup(&c).await;
        let e = Arc::clone(&c.nodes[0]);
        let rx = Arc::new(Receiver::default());
        rx.fail_first.store(3, Ordering::SeqCst);
        let task = spawn(Arc::clone(&e), c.store.clone(), rx.clone(), quick());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let issued = login_alice(&e, &ctx).await;
        ok(e.logout(&ctx, &issued.session_token).await);
        rx.until(5).await;
        let jtis = rx.jtis();
        for ch in [Channel::BackchannelLogout, Channel::Caep] {
            let of: Vec<_> = jtis.iter().filter(|(c, _)| *c == ch).collect();
            assert!(of.len() >= 2, "{ch:?} retried: {jtis:?}");
            assert!(
                of.iter().all(|(_, j)| *j == of[0].1),
                "same jti on every attempt"
            );
        }
        task.abort();
    }

    #[tokio::test]
    async fn one_node_dispatches_and_another_takes_over_from_its_cursors() {
        let c = Cluster::start(2, None).await;
        let ctx = setup(&c).await;
        let (a, b) = (Arc::clone(&c.nodes[0]), Arc::clone(&c.nodes[1]));
        // Node a's receiver never answers well: its events stay in flight.
        let (rx_a, rx_b) = (Arc::new(Receiver::default()), Arc::new(Receiver::default()));
        rx_a.fail_first.store(usize::MAX, Ordering::SeqCst);
        let slow = Options {
            first_retry: Duration::from_secs(60),
            ..quick()
        };
        let task_a = spawn(Arc::clone(&a), c.store.clone(), rx_a.clone(), slow);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let task_b = spawn(Arc::clone(&b), c.store.clone(), rx_b.clone(), quick());
        let issued = login_alice(&a, &ctx).await;
        ok(a.logout(&ctx, &issued.session_token).await);
        rx_a.until(2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(rx_b.jtis().is_empty(), "only the lease holder delivers");
        let first = rx_a.jtis();
        // Node a dies; once its lease has lapsed, node b sends what a had not finished.
        task_a.abort();
        c.clock.advance(16);
        rx_b.until(2).await;
        let mut resent = rx_b.jtis();
        let mut sent = first.clone();
        resent.sort_by(|x, y| x.1.cmp(&y.1));
        sent.sort_by(|x, y| x.1.cmp(&y.1));
        assert_eq!(resent, sent, "the same events, the same jtis");
        let mark = ok(c.store.load_mark(MARK).await).unwrap();
        assert!(mark.body.contains("cursors"));
        task_b.abort();
    }
}
