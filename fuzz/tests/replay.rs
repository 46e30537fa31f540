//! The fuzz targets on stable `cargo test`: every corpus file (seeds are written into
//! `corpus/<target>/` first), then seeded pseudo-random mutations of them. Not a substitute
//! for coverage-guided fuzzing (`cargo fuzz run`, README.md), but it runs anywhere and keeps
//! every crash input found so far as a regression test (`artifacts/<target>/` too).

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("token_verify", sessiond_fuzz::token_verify),
    ("token_mutate", sessiond_fuzz::token_mutate),
    ("token_claims", sessiond_fuzz::token_claims),
    ("sso_verify", sessiond_fuzz::sso_verify),
    ("request_bodies", sessiond_fuzz::request_bodies),
];

fn inputs(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if at < v.len() => v[at] = rng.next() as u8,
            1 => v.insert(at, rng.next() as u8),
            2 if at < v.len() => {
                v.remove(at);
            }
            3 => v.insert(at, b"{}[]\".,:=-_0"[rng.below(12)]),
            _ if at < v.len() => v[at] ^= 1 << rng.below(8),
            _ => {}
        }
    }
    v
}

#[test]
fn corpus_and_random_mutations_find_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rounds: usize = std::env::var("FUZZ_REPLAY_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    for (name, target) in TARGETS {
        let corpus = root.join("corpus").join(name);
        std::fs::create_dir_all(&corpus).unwrap();
        for (i, seed) in sessiond_fuzz::seeds(name).iter().enumerate() {
            let path = corpus.join(format!("seed-{i}"));
            if !path.exists() {
                std::fs::write(&path, seed).unwrap();
            }
        }
        let mut all = inputs(&corpus);
        all.extend(inputs(&root.join("artifacts").join(name)));
        for input in &all {
            target(input);
        }
        let mut rng = Rng(0x5e55_10d0 ^ name.len() as u64);
        for _ in 0..rounds {
            let base = &all[rng.below(all.len())];
            target(&mutate(&mut rng, base));
        }
        eprintln!("{name}: {} corpus inputs, {rounds} mutations", all.len());
    }
}
