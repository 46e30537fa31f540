//! Following the change logs of shared stores (DESIGN §11): every node applies every other
//! node's invalidations to its own caches, and stops trusting those caches when it has not
//! heard from a log for longer than the staleness bound.
//!
//! A follower sweeps every partition of its log from its cursor at least every
//! `bound / 4`, and sooner when the store hints that a partition moved. Trust is measured
//! from the *start* of the last complete sweep: a change committed before that instant has
//! been applied, so no cached state is older than the bound while the sweeps keep coming.

use crate::engine::Engine;
use sessiond_store::{Change, ChangeLog, LogRead, StoreResult};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Entries read per partition per call.
const BATCH: usize = 1_000;

/// The position of a follower in every partition of one log.
struct Cursors(Vec<(usize, u64)>);

impl Cursors {
    /// The current end of every partition (a fresh node has nothing cached to invalidate, so
    /// it starts there): a binary search with reads of one entry, all partitions at once.
    async fn at_head(log: &dyn ChangeLog) -> StoreResult<Self> {
        let n = log.partitions();
        // The head of partition p lies in (lo[p], hi[p]].
        let mut lo = vec![0u64; n];
        let mut hi = vec![1u64 << 62; n];
        let mut known: Vec<Option<u64>> = vec![None; n];
        // Sequence 0 is never used: an empty partition has head 0.
        let first: Vec<(usize, u64)> = (0..n).map(|p| (p, 0)).collect();
        for (p, r) in log.read_log(&first, 1).await?.into_iter().enumerate() {
            match r {
                LogRead::Entries(e) if e.is_empty() => known[p] = Some(0),
                LogRead::Gone { head } => known[p] = Some(head),
                LogRead::Entries(_) => {}
            }
        }
        loop {
            let probes: Vec<(usize, u64)> = (0..n)
                .filter(|&p| known[p].is_none())
                .map(|p| (p, lo[p] + (hi[p] - lo[p]) / 2))
                .collect();
            if probes.is_empty() {
                break;
            }
            let reads = log.read_log(&probes, 1).await?;
            for (&(p, mid), r) in probes.iter().zip(reads) {
                match r {
                    LogRead::Gone { head } => known[p] = Some(head),
                    // Nothing after `mid`: the head is at most `mid`.
                    LogRead::Entries(e) if e.is_empty() => hi[p] = mid,
                    LogRead::Entries(_) => lo[p] = mid,
                }
                if known[p].is_none() && hi[p] - lo[p] <= 1 {
                    known[p] = Some(hi[p]);
                }
            }
        }
        Ok(Self(
            known
                .into_iter()
                .enumerate()
                .map(|(p, h)| (p, h.unwrap_or(0)))
                .collect(),
        ))
    }
}

/// A keyring reload's failure, as the follower reports it (and retries).
fn store_error(e: crate::error::CoreError) -> sessiond_store::StoreError {
    match e {
        crate::error::CoreError::Store(s) => s,
        other => sessiond_store::StoreError::Backend(other.to_string()),
    }
}

impl Engine {
    /// Starts following `log` (number `index` among the logs given to
    /// [`Engine::with_change_logs`]) until the engine is dropped.
    pub fn spawn_follower(
        self: &Arc<Self>,
        index: usize,
        log: Arc<dyn ChangeLog>,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut cursors: Option<Cursors> = None;
            let mut last_full: Option<Instant> = None;
            let mut hinted: Vec<usize> = Vec::new();
            let mut failures = 0u32;
            loop {
                let Some(engine) = weak.upgrade() else {
                    return;
                };
                let Some(fresh) = engine.freshness() else {
                    return;
                };
                let interval = (fresh.bound() / 4).max(Duration::from_millis(10));
                let started = Instant::now();
                let full = hinted.is_empty() || last_full.is_none_or(|t| t.elapsed() >= interval);
                let only: &[usize] = if full { &[] } else { &hinted };
                let result = match cursors.as_mut() {
                    // Starting at the head skips what came before: drop what may have been
                    // cached meanwhile, and read the keyring again.
                    None => match Cursors::at_head(&*log).await {
                        Ok(c) => {
                            engine.drop_caches();
                            let reloaded = engine.reload_keyring().await.map_err(store_error);
                            if reloaded.is_ok() {
                                cursors = Some(c);
                            }
                            reloaded
                        }
                        Err(e) => Err(e),
                    },
                    Some(c) => engine.catch_up(&*log, c, only).await,
                };
                match result {
                    Ok(()) => {
                        if failures > 0 {
                            tracing::info!(log = index, "change log reachable again");
                        }
                        failures = 0;
                        if full {
                            fresh.mark(index, started);
                            last_full = Some(started);
                        }
                        // This follower holds the store's hints: the feed reads on its wake.
                        if let Some(feed) = engine.feed() {
                            feed.poke();
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures.is_power_of_two() {
                            tracing::warn!(log = index, error = %e, failures, "cannot read the change log; caches bypassed until it answers");
                        }
                    }
                }
                drop(engine);
                hinted = if failures > 0 {
                    tokio::time::sleep(interval.min(Duration::from_millis(100))).await;
                    Vec::new()
                } else {
                    log.wait_hint(interval).await
                };
            }
        })
    }

    /// Reads every partition in `only` (all when empty) up to its end and applies what it
    /// finds.
    async fn catch_up(
        &self,
        log: &dyn ChangeLog,
        cursors: &mut Cursors,
        only: &[usize],
    ) -> StoreResult<()> {
        let mut pending: Vec<usize> = if only.is_empty() {
            (0..cursors.0.len()).collect()
        } else {
            only.iter()
                .copied()
                .filter(|&p| p < cursors.0.len())
                .collect()
        };
        while !pending.is_empty() {
            let ask: Vec<(usize, u64)> = pending.iter().map(|&i| cursors.0[i]).collect();
            let reads = log.read_log(&ask, BATCH).await?;
            if reads.len() != ask.len() {
                return Err(sessiond_store::StoreError::Backend(format!(
                    "the change log answered {} of {} partitions",
                    reads.len(),
                    ask.len()
                )));
            }
            let mut again = Vec::new();
            for (&i, r) in pending.iter().zip(reads) {
                match r {
                    LogRead::Entries(entries) => {
                        if entries.len() >= BATCH {
                            again.push(i);
                        }
                        // The cursor passes an entry only once it is applied: a failure
                        // (a keyring that cannot be read) is retried on the next sweep, and
                        // this sweep does not count towards trust.
                        for e in entries {
                            self.apply(e.change).await?;
                            cursors.0[i].1 = e.seq;
                        }
                    }
                    LogRead::Gone { head } => {
                        tracing::warn!(
                            partition = i,
                            "cannot resume the change log; dropping caches"
                        );
                        self.drop_caches();
                        self.reload_keyring().await.map_err(store_error)?;
                        cursors.0[i].1 = head;
                    }
                }
            }
            pending = again;
        }
        Ok(())
    }

    async fn apply(&self, change: Change) -> StoreResult<()> {
        match change {
            Change::SessionEnded { session, .. } | Change::SessionExpired { session, .. } => {
                self.invalidate(&session)
            }
            Change::TenantChanged { tenant } => self.invalidate_tenant(&tenant),
            Change::ClientChanged { client_id } => self.clients.invalidate(&client_id),
            Change::KeyringChanged => self.reload_keyring().await.map_err(store_error)?,
            // Read from the store on every use: nothing cached to drop.
            Change::UserChanged { .. }
            | Change::SsoChanged { .. }
            | Change::PartnerSecretChanged { .. } => {}
            // The per-session entries before it already dropped each session.
            Change::UserSessionsEnded { .. } | Change::Unknown => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, RequestContext};
    use crate::error::CoreError;
    use crate::secret::MasterKey;
    use crate::testkit::{Cluster, login_alice, ok, until_trusted};
    use sessiond_store::memory::MemoryStore;

    /// Two nodes following the log, tenant `t1` and user `alice`; node b has swept once.
    async fn two_nodes() -> (Arc<Engine>, Arc<Engine>, RequestContext) {
        let c = Cluster::start(2, Some(Duration::from_millis(400))).await;
        let ctx = c.with_alice().await;
        until_trusted(&c.nodes[1]).await;
        (c.nodes[0].clone(), c.nodes[1].clone(), ctx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_logout_on_one_node_reaches_the_others_cache() {
        let (a, b, ctx) = two_nodes().await;
        let token = login_alice(&a, &ctx).await.session_token;
        ok(b.authenticate(&ctx, &token).await);
        ok(a.logout(&ctx, &token).await);
        for _ in 0..500 {
            match b.authenticate(&ctx, &token).await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(CoreError::SessionRevoked) => return,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        panic!("node b still accepts a revoked session");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_policy_change_and_a_key_rotation_reach_the_other_node() {
        let (a, b, ctx) = two_nodes().await;
        let max_sessions = |e: Arc<Engine>, ctx: RequestContext| async move {
            ok(e.tenant(&ctx.tenant_id).await)
                .policy
                .max_sessions_per_user
        };
        let signing = |e: &Engine| {
            ok(e.keys())
                .into_iter()
                .find(|k| k.state == sessiond_store::KeyState::Signing)
                .map(|k| k.kid)
        };
        assert_eq!(max_sessions(b.clone(), ctx.clone()).await, 0);
        let mut patch = serde_json::Map::new();
        patch.insert("maxSessionsPerUser".into(), 1.into());
        ok(a.patch_policy(&ctx.tenant_id, patch).await);
        ok(a.rotate_keys().await);
        for _ in 0..500 {
            if max_sessions(b.clone(), ctx.clone()).await == 1 && signing(&b) == signing(&a) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("node b missed the policy change or the rotation");
    }

    /// A timeout another node recorded (with a clock an hour ahead) is found out here: its
    /// change-log entry drops the cached copy, and a touch reads the record back besides (an
    /// older node records a timeout without an entry).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_touch_reads_the_record_back() {
        let c = Cluster::start(1, Some(Duration::from_secs(60))).await;
        let e = &c.nodes[0];
        until_trusted(e).await;
        let ctx = c.with_alice().await;
        let issued = login_alice(e, &ctx).await;
        ok(e.authenticate(&ctx, &issued.session_token).await);
        // Recorded as timed out by a node whose clock runs an hour ahead: no log entry.
        use sessiond_store::SessionStore as _;
        assert!(ok(c
            .store
            .mark_expired(&ctx.tenant_id, &issued.session.id, e.now() + 3_600, None)
            .await));
        c.clock.advance(61);
        match e.authenticate(&ctx, &issued.session_token).await {
            Err(CoreError::SessionExpired) => {}
            other => panic!(
                "the touch must read the record back: {:?}",
                other.map(|_| ())
            ),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_that_cannot_read_its_log_bypasses_its_caches() {
        let store = Arc::new(MemoryStore::new());
        let e = ok(Engine::start(
            store.clone(),
            store.clone(),
            Arc::new(crate::clock::ManualClock::new(1_700_000_000)),
            ok(MasterKey::generate()),
            EngineConfig::default(),
        )
        .await)
        .with_change_logs(1, Duration::from_millis(300));
        assert!(!e.caches_trusted(), "not before the first sweep");
        let e = Arc::new(e);
        let follower = e.spawn_follower(0, store.clone());
        until_trusted(&e).await;
        follower.abort();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!e.caches_trusted(), "a silent log ends the trust");
    }
}
