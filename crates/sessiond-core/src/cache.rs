//! A bounded cache for state that changes: every invalidation wins over a concurrent fill,
//! and no entry outlives a maximum age (a bound on staleness even if an invalidation is
//! missed, e.g. a change made by another process).

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct FreshCache<K, V> {
    entries: quick_cache::sync::Cache<K, (V, Instant)>,
    /// Bumped by every invalidation.
    epoch: AtomicU64,
    max_age: Duration,
}

impl<K: Eq + Hash + Clone, V: Clone> FreshCache<K, V> {
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(capacity.max(1)),
            epoch: AtomicU64::new(0),
            max_age,
        }
    }

    /// Read this before reading the value from its source; pass it to [`FreshCache::insert`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub fn get<Q>(&self, k: &Q) -> Option<V>
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        self.entries
            .get(k)
            .filter(|(_, at)| at.elapsed() < self.max_age)
            .map(|(v, _)| v)
    }

    /// Caches a value read from its source after `epoch` was taken, unless an invalidation
    /// happened since: insert first, then re-check, so a concurrent invalidation — which bumps
    /// the epoch before it removes — always wins.
    pub fn insert(&self, k: K, v: V, epoch: u64) {
        // Not even for an instant, when an invalidation is already known to have won.
        if self.epoch() != epoch {
            return;
        }
        self.entries.insert(k.clone(), (v, Instant::now()));
        if self.epoch() != epoch {
            self.entries.remove(&k);
        }
    }

    pub fn invalidate(&self, k: &K) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.remove(k);
    }

    /// Drops every entry (a concurrent fill loses, as with [`FreshCache::invalidate`]).
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalidation_between_read_and_insert_wins() {
        let c = FreshCache::new(10, Duration::from_secs(60));
        let e = c.epoch();
        c.invalidate(&1);
        c.insert(1, "stale", e);
        assert_eq!(c.get(&1), None);
        let e = c.epoch();
        c.insert(1, "fresh", e);
        assert_eq!(c.get(&1), Some("fresh"));
    }

    #[test]
    fn entries_expire() {
        let c = FreshCache::new(10, Duration::ZERO);
        c.insert(1, 1, c.epoch());
        assert_eq!(c.get(&1), None);
    }
}
