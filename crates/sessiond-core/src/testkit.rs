//! Test support shared by the core's unit tests: engines over one in-memory store, as nodes
//! over one database, each following the store's change log.

use crate::clock::ManualClock;
use crate::engine::{Engine, EngineConfig, Issued, RequestContext};
use crate::secret::MasterKey;
use sessiond_store::memory::MemoryStore;
use sessiond_store::{DeviceInfo, PolicyOverrides, Profile, TenantId};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const PASSWORD: &str = "pw-pw-pw-pw";

pub(crate) fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// Nodes over one store and one clock.
pub(crate) struct Cluster {
    pub store: Arc<MemoryStore>,
    pub clock: Arc<ManualClock>,
    pub nodes: Vec<Arc<Engine>>,
}

impl Cluster {
    /// `n` engines with one master key; each follows the log when `bound` is given.
    pub(crate) async fn start(n: usize, bound: Option<Duration>) -> Self {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(1_700_000_000));
        let master = ok(MasterKey::generate());
        let cfg = EngineConfig {
            hash_concurrency: 1,
            ..EngineConfig::default()
        };
        let mut nodes = Vec::new();
        for _ in 0..n {
            let e = ok(Engine::start(
                store.clone(),
                store.clone(),
                clock.clone(),
                master.clone(),
                cfg.clone(),
            )
            .await);
            let e = match bound {
                Some(b) => {
                    let e = Arc::new(e.with_change_logs(1, b));
                    e.spawn_follower(0, store.clone());
                    e
                }
                None => Arc::new(e),
            };
            nodes.push(e);
        }
        Self {
            store,
            clock,
            nodes,
        }
    }

    /// Tenant `t1` (integration) with user `alice`, made on the first node.
    pub(crate) async fn with_alice(&self) -> RequestContext {
        let e = &self.nodes[0];
        let tenant = ok(TenantId::parse("t1"));
        ok(e.create_tenant(
            tenant.clone(),
            None,
            Profile::Integration,
            PolicyOverrides::default(),
        )
        .await);
        ok(
            e.create_user(&tenant, "alice".into(), PASSWORD.into(), None, None)
                .await,
        );
        RequestContext {
            tenant_id: tenant,
            activity_id: "a".into(),
            correlation_id: None,
            ip: None,
            user_agent: None,
            actor: None,
        }
    }
}

/// Alice logs in on `e`.
pub(crate) async fn login_alice(e: &Engine, ctx: &RequestContext) -> Issued {
    let tp = ok(e.tenant(&ctx.tenant_id).await);
    ok(e.login(ctx, &tp, "alice", PASSWORD, DeviceInfo::default())
        .await)
}

/// Waits until `e`'s follower has completed a sweep (at most 5 s).
pub(crate) async fn until_trusted(e: &Engine) {
    for _ in 0..500 {
        if e.caches_trusted() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the follower never caught up");
}
