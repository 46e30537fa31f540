//! The conformance suite against standalone Redis (127.0.0.1:6379, or `SESSIOND_TEST_REDIS`)
//! and against a 3-master Redis Cluster started for this test process. Each store gets a
//! prefix of its own. Without Redis these tests fail; they never skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sessiond_store_redis::{RedisOptions, RedisStore};
use std::sync::atomic::{AtomicUsize, Ordering};

fn prefix() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "sdt:{}:{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn open(url: &str) -> RedisStore {
    let opts = RedisOptions {
        prefix: prefix(),
        ..RedisOptions::default()
    };
    RedisStore::connect(url, opts)
        .await
        .unwrap_or_else(|e| panic!("cannot reach Redis at {url}: {e}"))
}

mod standalone {
    async fn fresh() -> sessiond_store_redis::RedisStore {
        let url = std::env::var("SESSIOND_TEST_REDIS")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            sessiond_store_redis::testing::remove_keys_of_dead_processes(&url, "sdt")
        });
        super::open(&url).await
    }

    sessiond_store::session_store_conformance!(fresh());
    sessiond_store::session_change_log_conformance!(fresh());
    sessiond_store::counters_conformance!(fresh());
}

mod cluster {
    use sessiond_store_redis::testing::RedisCluster;
    use std::sync::OnceLock;

    async fn fresh() -> sessiond_store_redis::RedisStore {
        static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
        let url =
            tokio::task::spawn_blocking(|| CLUSTER.get_or_init(|| RedisCluster::start(3)).url())
                .await
                .unwrap();
        super::open(&url).await
    }

    sessiond_store::session_store_conformance!(fresh());
    sessiond_store::session_change_log_conformance!(fresh());
    sessiond_store::counters_conformance!(fresh());
}
