//! How fresh a node's caches are: trusted only while every change log it follows was read
//! completely by a sweep that started within the staleness bound (see `changes`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How fresh a node's caches are, per followed log.
pub(crate) struct Freshness {
    base: Instant,
    bound: Duration,
    /// Per log: milliseconds since `base` at which its last complete sweep started, plus one
    /// (0: never swept).
    swept: Vec<AtomicU64>,
}

impl Freshness {
    pub(crate) fn new(logs: usize, bound: Duration) -> Self {
        Self {
            base: Instant::now(),
            bound,
            swept: (0..logs).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn mark(&self, log: usize, sweep_started: Instant) {
        let ms = sweep_started
            .saturating_duration_since(self.base)
            .as_millis() as u64
            + 1;
        if let Some(slot) = self.swept.get(log) {
            slot.fetch_max(ms, Ordering::SeqCst);
        }
    }

    /// True while every log was completely swept by a sweep that started within the bound.
    pub(crate) fn trusted(&self) -> bool {
        let now = self.base.elapsed().as_millis() as u64 + 1;
        let bound = self.bound.as_millis() as u64;
        self.swept.iter().all(|s| {
            let at = s.load(Ordering::SeqCst);
            at != 0 && now.saturating_sub(at) < bound
        })
    }

    /// How long ago the stalest log's last complete sweep started (`None`: one never was).
    pub(crate) fn age(&self) -> Option<Duration> {
        let now = self.base.elapsed().as_millis() as u64 + 1;
        self.swept
            .iter()
            .map(|s| s.load(Ordering::SeqCst))
            .map(|at| (at != 0).then(|| Duration::from_millis(now.saturating_sub(at))))
            .try_fold(Duration::ZERO, |oldest, age| age.map(|a| oldest.max(a)))
    }

    pub(crate) fn bound(&self) -> Duration {
        self.bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_needs_a_recent_sweep_of_every_log() {
        let f = Freshness::new(2, Duration::from_secs(1));
        assert!(!f.trusted(), "never swept");
        f.mark(0, Instant::now());
        assert!(!f.trusted(), "one log of two");
        assert_eq!(f.age(), None, "one log never swept");
        f.mark(1, Instant::now());
        assert!(f.trusted());
        assert!(f.age().is_some_and(|a| a < Duration::from_secs(1)));
        let old = Freshness::new(1, Duration::from_millis(0));
        old.mark(0, Instant::now());
        assert!(!old.trusted(), "older than the bound");
    }
}
