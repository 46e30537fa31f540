//! Argon2id password hashing with OWASP's parameters (19 MiB, 2 passes, 1 lane), in a bounded
//! pool of Argon2 memory.
//!
//! Argon2 needs `m` KiB of working memory per call. Allocated per call, on whichever
//! blocking-pool thread runs it, those buffers stay in the allocator's per-thread arenas: a
//! burst of failed logins used to leave the process hundreds of MiB larger for good. A
//! [`Hasher`] instead lends each call one buffer from a pool: the caller bounds how many calls
//! run at once (the engine's hashing semaphore), so at most that many buffers exist; they are
//! reused, and once the pool has been idle for [`IDLE_RELEASE`] the spare ones are unmapped,
//! giving the memory back to the operating system at once (they are `mmap`ed on Unix, never
//! taken from `malloc`'s arenas).

use crate::CoreError;
use crate::secret::random_bytes;
use argon2::password_hash::{Output, ParamsString, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Argon2id's memory cost in KiB (19 MiB), passes and lanes for new hashes.
pub const M_COST: u32 = 19 * 1024;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;

/// How long the pool stays unused before its spare buffers are given back.
pub const IDLE_RELEASE: Duration = Duration::from_secs(30);
/// Stored hashes naming more Argon2 memory than this (1 GiB) are refused, not computed.
pub const MAX_M_COST: u32 = 1024 * 1024;

/// The Argon2 parameters of one verification: memory in KiB, passes, lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost {
    pub m: u32,
    pub t: u32,
    pub p: u32,
}

impl Cost {
    /// The parameters new hashes (and the dummy hash) use.
    pub const CURRENT: Cost = Cost {
        m: M_COST,
        t: T_COST,
        p: P_COST,
    };
}

/// What a [`Hasher`] has done, for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashingStats {
    /// Full Argon2 verifications by parameters (the dummy hash's included).
    pub verifications: BTreeMap<Cost, u64>,
    /// Argon2 memory buffers that exist now (lent out or spare).
    pub buffers: usize,
    /// Buffers allocated since the start (a reused buffer is not counted again).
    pub buffers_allocated: u64,
    /// Bytes of Argon2 memory that exist now.
    pub buffer_bytes: usize,
    /// Time spent computing Argon2 (hashes and verifications), on whichever threads ran them.
    pub busy: Duration,
}

fn current_params() -> Result<Params, CoreError> {
    Params::new(M_COST, T_COST, P_COST, None)
        .map_err(|e| CoreError::Internal(format!("argon2 params: {e}")))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hashes passwords and verifies them against PHC strings with pooled Argon2 memory. The
/// caller bounds the concurrency (a semaphore): the pool holds at most that many buffers.
pub struct Hasher {
    params: Params,
    /// Spare buffers kept beyond this are dropped at once (the caller's concurrency).
    max_buffers: usize,
    /// A PHC string with the current parameters, a random salt and a random output, which no
    /// password matches: verified against when the user does not exist, so that an unknown user
    /// costs the same Argon2 work as a wrong password.
    dummy: String,
    pool: Mutex<Pool>,
    idle_release: Duration,
    verifications: Mutex<BTreeMap<Cost, u64>>,
    allocated: AtomicU64,
    /// Nanoseconds spent in Argon2 (see [`HashingStats::busy`]).
    busy_ns: AtomicU64,
}

#[derive(Default)]
struct Pool {
    spare: Vec<Memory>,
    /// Buffers lent out now.
    lent: usize,
    lent_bytes: usize,
    last_used: Option<Instant>,
    /// A thread waits to release the spare buffers.
    reaper: bool,
}

impl Hasher {
    /// A hasher for callers that run at most `max_buffers` hashes at once.
    pub fn new(max_buffers: usize) -> Result<Arc<Self>, CoreError> {
        Self::with_idle_release(max_buffers, IDLE_RELEASE)
    }

    /// A hasher whose spare buffers are released after `idle` without use.
    pub fn with_idle_release(max_buffers: usize, idle: Duration) -> Result<Arc<Self>, CoreError> {
        let params = current_params()?;
        let salt = SaltString::encode_b64(&random_bytes::<16>()?)
            .map_err(|e| CoreError::Internal(format!("salt: {e}")))?;
        let output = Output::new(&random_bytes::<32>()?)
            .map_err(|e| CoreError::Internal(format!("argon2 output: {e}")))?;
        let dummy = phc_string(&params, &salt, output)?;
        Ok(Arc::new(Hasher {
            params,
            max_buffers: max_buffers.max(1),
            dummy,
            pool: Mutex::default(),
            idle_release: idle,
            verifications: Mutex::default(),
            allocated: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
        }))
    }

    /// Hashes a password with the current parameters into a PHC string
    /// (`$argon2id$v=19$m=19456,t=2,p=1$…`). CPU-heavy: call it off the async executor.
    pub fn hash(self: &Arc<Self>, password: &str) -> Result<String, CoreError> {
        let salt = SaltString::encode_b64(&random_bytes::<16>()?)
            .map_err(|e| CoreError::Internal(format!("salt: {e}")))?;
        let mut salt_bytes = [0u8; 64];
        let raw_salt = salt
            .decode_b64(&mut salt_bytes)
            .map_err(|e| CoreError::Internal(format!("salt: {e}")))?;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone());
        self.with_memory(self.params.block_count(), |blocks| {
            argon2.hash_password_into_with_memory(password.as_bytes(), raw_salt, &mut out, blocks)
        })
        .ok_or_else(|| CoreError::Internal("argon2: no memory".into()))?
        .map_err(|e| CoreError::Internal(format!("argon2: {e}")))?;
        let output = Output::new(&out).map_err(|e| CoreError::Internal(format!("argon2: {e}")))?;
        phc_string(&self.params, &salt, output)
    }

    /// Verifies a password against a stored PHC string, with the parameters it names, or
    /// against the dummy hash when there is none (always `false` then, after the same work).
    /// CPU-heavy: call it off the async executor.
    pub fn verify(self: &Arc<Self>, password: &str, stored: Option<&str>) -> bool {
        let ok = self.verify_phc(password, stored.unwrap_or(&self.dummy));
        ok && stored.is_some()
    }

    fn verify_phc(self: &Arc<Self>, password: &str, phc: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
            return false;
        };
        let (Ok(algorithm), Ok(params)) =
            (Algorithm::try_from(hash.algorithm), Params::try_from(&hash))
        else {
            return false;
        };
        let version = match hash.version.map(Version::try_from).transpose() {
            Ok(v) => v.unwrap_or_default(),
            Err(_) => return false,
        };
        let mut salt_bytes = [0u8; 64];
        let Ok(raw_salt) = salt.decode_b64(&mut salt_bytes) else {
            return false;
        };
        // `Output` holds at most 64 bytes.
        let mut out = [0u8; 64];
        let Some(out) = out.get_mut(..expected.len()) else {
            return false;
        };
        let cost = Cost {
            m: params.m_cost(),
            t: params.t_cost(),
            p: params.p_cost(),
        };
        if cost.m > MAX_M_COST {
            return false;
        }
        let blocks = params.block_count();
        let argon2 = Argon2::new(algorithm, version, params);
        let computed = self.with_memory(blocks, |mem| {
            argon2.hash_password_into_with_memory(password.as_bytes(), raw_salt, out, mem)
        });
        if !matches!(computed, Some(Ok(()))) {
            return false;
        }
        *lock(&self.verifications).entry(cost).or_default() += 1;
        metrics::counter!("sessiond_password_verifications_total").increment(1);
        out.ct_eq(expected.as_bytes()).into()
    }

    /// Runs `f` with a buffer of at least `blocks` Argon2 blocks from the pool (a spare one
    /// when there is one), then puts the buffer back; `None` when no memory could be mapped.
    fn with_memory<T>(
        self: &Arc<Self>,
        blocks: usize,
        f: impl FnOnce(&mut [Block]) -> T,
    ) -> Option<T> {
        let spare = lock(&self.pool).spare.pop();
        // Stored hashes may name more memory than the current parameters: grow the buffer then.
        let mut mem = match spare {
            Some(m) if m.block_count() >= blocks => m,
            _ => {
                let m = Memory::new(blocks.max(self.params.block_count()))?;
                self.allocated.fetch_add(1, Ordering::Relaxed);
                m
            }
        };
        {
            let mut pool = lock(&self.pool);
            pool.lent += 1;
            pool.lent_bytes += mem.bytes();
        }
        let started = Instant::now();
        let r = f(mem.blocks_mut(blocks));
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.busy_ns.fetch_add(ns, Ordering::Relaxed);
        self.give_back(mem);
        Some(r)
    }

    fn give_back(self: &Arc<Self>, mem: Memory) {
        let mut pool = lock(&self.pool);
        pool.lent -= 1;
        pool.lent_bytes -= mem.bytes();
        if pool.spare.len() + pool.lent >= self.max_buffers {
            // More callers at once than the pool is meant for: do not keep the extra buffer.
            drop(pool);
            drop(mem);
            return;
        }
        pool.spare.push(mem);
        pool.last_used = Some(Instant::now());
        if !pool.reaper {
            pool.reaper = true;
            let me = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("argon2-pool-reaper".into())
                .spawn(move || reap(&me));
            if spawned.is_err() {
                // No thread for the reaper: keep the buffers, the next call tries again.
                pool.reaper = false;
            }
        }
    }

    pub fn stats(&self) -> HashingStats {
        let pool = lock(&self.pool);
        HashingStats {
            verifications: lock(&self.verifications).clone(),
            buffers: pool.spare.len() + pool.lent,
            buffers_allocated: self.allocated.load(Ordering::Relaxed),
            buffer_bytes: pool.lent_bytes + pool.spare.iter().map(Memory::bytes).sum::<usize>(),
            busy: Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed)),
        }
    }

    /// The dummy hash's parameters (the current ones).
    pub fn dummy_hash(&self) -> &str {
        &self.dummy
    }
}

/// Waits until the pool has been idle for its release delay, then drops its spare buffers.
/// Holds only a weak reference: a dropped hasher drops its buffers itself.
fn reap(hasher: &Weak<Hasher>) {
    loop {
        let wait = {
            let Some(h) = hasher.upgrade() else { return };
            let mut pool = lock(&h.pool);
            let idle_for = pool.last_used.map_or(h.idle_release, |t| t.elapsed());
            if idle_for >= h.idle_release {
                let spare = std::mem::take(&mut pool.spare);
                pool.reaper = false;
                drop(pool);
                drop(spare);
                return;
            }
            h.idle_release - idle_for
        };
        std::thread::sleep(wait);
    }
}

fn phc_string(params: &Params, salt: &SaltString, output: Output) -> Result<String, CoreError> {
    let params =
        ParamsString::try_from(params).map_err(|e| CoreError::Internal(format!("argon2: {e}")))?;
    Ok(PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string())
}

/// Argon2 working memory that goes back to the operating system when dropped: an anonymous
/// private mapping, so `free`'s thresholds and per-thread arenas never keep it.
pub struct Memory {
    map: memmap2::MmapMut,
    len: usize,
}

impl Memory {
    /// `len` blocks of zeroed memory; `None` when the kernel has no room for them.
    pub fn new(len: usize) -> Option<Self> {
        let len = len.max(1);
        let map = memmap2::MmapMut::map_anon(len.checked_mul(Block::SIZE)?).ok()?;
        Some(Memory { map, len })
    }

    pub fn block_count(&self) -> usize {
        self.len
    }

    pub fn bytes(&self) -> usize {
        self.len * Block::SIZE
    }

    /// The first `n` blocks (all of them if there are fewer).
    pub fn blocks_mut(&mut self, n: usize) -> &mut [Block] {
        // SAFETY: the mapping is `len` blocks long and page-aligned (a Block needs 64),
        // zero-filled by the kernel (a valid Block: plain integers), and borrowed mutably
        // through `&mut self` only.
        let all = unsafe {
            std::slice::from_raw_parts_mut(self.map.as_mut_ptr().cast::<Block>(), self.len)
        };
        let n = n.min(all.len());
        &mut all[..n]
    }
}

/// Hashes a password with a process-wide hasher (tools and benchmarks; the engine uses its
/// own). CPU-heavy: call it off the async executor.
pub fn hash_password(password: &str) -> Result<String, CoreError> {
    static SHARED: std::sync::LazyLock<Option<Arc<Hasher>>> = std::sync::LazyLock::new(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hasher::new(cores).ok()
    });
    match &*SHARED {
        Some(h) => h.hash(password),
        None => Err(CoreError::Internal("argon2: no hasher".into())),
    }
}

pub fn check_password_policy(password: &str) -> Result<(), CoreError> {
    let n = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&n) {
        return Err(CoreError::InvalidRequest(format!(
            "password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use argon2::{PasswordHasher, PasswordVerifier};

    fn cost(m: u32, t: u32, p: u32) -> Cost {
        Cost { m, t, p }
    }

    #[test]
    fn hash_and_verify() {
        let h = Hasher::new(2).unwrap();
        let hash = h.hash("correct horse").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(h.verify("correct horse", Some(&hash)));
        assert!(!h.verify("wrong horse", Some(&hash)));
        assert!(!h.verify("x", Some("not a hash")));
        // The argon2 crate's own verifier agrees: the PHC format is unchanged.
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong horse", &parsed)
                .is_err()
        );
    }

    /// Hashes made by the argon2 crate (before the pool), with other parameters too, verify.
    #[test]
    fn hashes_made_elsewhere_and_with_other_parameters_verify() {
        let h = Hasher::new(2).unwrap();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let made = |m, t, p| {
            let params = Params::new(m, t, p, None).unwrap();
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"correct horse", &salt)
                .unwrap()
                .to_string()
        };
        for (m, t, p) in [(19 * 1024, 2, 1), (8 * 1024, 3, 1), (32 * 1024, 1, 2)] {
            let stored = made(m, t, p);
            assert!(h.verify("correct horse", Some(&stored)), "{stored}");
            assert!(!h.verify("correct horsf", Some(&stored)), "{stored}");
        }
        let v = h.stats().verifications;
        assert_eq!(v[&cost(19 * 1024, 2, 1)], 2);
        assert_eq!(v[&cost(8 * 1024, 3, 1)], 2);
        assert_eq!(v[&cost(32 * 1024, 1, 2)], 2);
        // Argon2i and Argon2d hashes still verify, as they did with the crate's verifier.
        for alg in [Algorithm::Argon2i, Algorithm::Argon2d] {
            let stored = Argon2::new(alg, Version::V0x13, Params::new(4096, 1, 1, None).unwrap())
                .hash_password(b"correct horse", &salt)
                .unwrap()
                .to_string();
            assert!(h.verify("correct horse", Some(&stored)), "{stored}");
        }
        // The same salt and parameters give the very string argon2 gives.
        let mine = h.hash("correct horse").unwrap();
        let parsed = PasswordHash::new(&mine).unwrap();
        let theirs = Argon2::default()
            .hash_password(b"correct horse", parsed.salt.unwrap())
            .unwrap()
            .to_string();
        assert_eq!(mine, theirs);
    }

    #[test]
    fn an_unknown_user_costs_one_verification_with_the_current_parameters() {
        let h = Hasher::new(2).unwrap();
        assert!(
            h.dummy_hash()
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
        );
        assert!(!h.verify("anything at all", None));
        assert!(!h.verify("", None));
        let v = h.stats().verifications;
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[&Cost::CURRENT], 2);
        // The dummy hash is a hash no password matches, not one that fails to parse.
        assert!(!h.verify("anything at all", Some(h.dummy_hash())));
        assert_eq!(h.stats().verifications[&Cost::CURRENT], 3);
    }

    /// More callers at once than the hasher was made for: the extra buffers are not kept.
    #[test]
    fn the_pool_keeps_no_more_buffers_than_it_was_made_for() {
        let h = Hasher::new(1).unwrap();
        let gate = Arc::new(std::sync::Barrier::new(3));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (h, gate) = (h.clone(), gate.clone());
                std::thread::spawn(move || {
                    gate.wait();
                    assert!(!h.verify("whatever", None));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = h.stats();
        assert_eq!(s.verifications[&Cost::CURRENT], 3);
        assert_eq!(s.buffers, 1, "{s:?}");
        assert_eq!(s.buffer_bytes, 19 * 1024 * 1024, "{s:?}");
    }

    /// A stored hash naming absurd memory is refused, not computed.
    #[test]
    fn a_stored_hash_with_absurd_memory_is_refused() {
        let h = Hasher::new(1).unwrap();
        let huge = "$argon2id$v=19$m=4194304,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$\
                    AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(PasswordHash::new(huge).is_ok());
        assert!(!h.verify("x", Some(huge)));
        assert_eq!(h.stats().buffers_allocated, 0);
    }

    /// Buffers are reused, at most one per concurrent call exists, and an idle pool gives
    /// them back.
    #[test]
    fn buffers_are_pooled_bounded_and_released_when_idle() {
        let h = Hasher::with_idle_release(2, Duration::from_millis(300)).unwrap();
        let stored = h.hash("correct horse").unwrap();
        let gate = Arc::new(std::sync::Barrier::new(2));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (h, stored, gate) = (h.clone(), stored.clone(), gate.clone());
                std::thread::spawn(move || {
                    gate.wait();
                    for _ in 0..3 {
                        assert!(!h.verify("wrong horse", Some(&stored)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = h.stats();
        assert_eq!(s.verifications[&Cost::CURRENT], 6);
        assert!(s.buffers_allocated <= 2, "{s:?}");
        assert!(s.buffers <= 2 && s.buffers >= 1, "{s:?}");
        assert_eq!(s.buffer_bytes, s.buffers * 19 * 1024 * 1024, "{s:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while h.stats().buffers > 0 {
            assert!(Instant::now() < deadline, "the idle pool kept its buffers");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(h.stats().buffer_bytes, 0);
        // And it works again afterwards.
        assert!(h.verify("correct horse", Some(&stored)));
    }
}
