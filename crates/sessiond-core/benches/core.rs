//! In-process costs of the hot path (issue 7), each beside its raw baseline in the same run:
//! session-token mint and verify against raw Ed25519 sign / verify with the same key and a
//! message of the same size; the engine's cached verify; refresh-token hashing; the policy.
//!
//! `cargo bench -p sessiond-core` prints criterion's numbers and then the ratios
//! (raw time / sessiond time, so 1.0 = as fast as the raw signature).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, Throughput};
use ed25519_dalek::{Signature, Signer, SigningKey};
use sessiond_core::policy::Policy;
use sessiond_core::secret::{self, MasterKey};
use sessiond_core::token::{Alg, Claims, Keyring};
use sessiond_core::{Engine, EngineConfig, ManualClock};
use sessiond_store::memory::MemoryStore;
use sessiond_store::{IdentityStore, KeyState, OnLimit, PolicyOverrides, Profile, TenantId};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "http://127.0.0.1:8080";
const AUD: &str = "sessiond";

/// Claims shaped like the ones `Engine::issue` signs.
fn claims(n: u64) -> Claims {
    Claims {
        iss: ISS.into(),
        aud: AUD.into(),
        sub: uuid::Uuid::new_v4(),
        sid: secret::new_session_id(sessiond_store::Route(0)).unwrap(),
        tid: TenantId::parse("1234567").unwrap(),
        cid: uuid::Uuid::new_v4(),
        scope: "session".into(),
        jti: format!("{:022}", n),
        iat: NOW,
        nbf: NOW,
        exp: NOW + 3600,
        auth_time: NOW,
        amr: vec!["pwd".into()],
    }
}

/// A keyring and the raw signing key it signs with.
fn keyring() -> (MasterKey, Keyring, SigningKey) {
    let master = MasterKey::generate().unwrap();
    let stored = Keyring::generate(&master, Alg::EdDSA, NOW).unwrap();
    let signing = stored
        .iter()
        .find(|k| k.state == KeyState::Signing)
        .unwrap();
    let seed: [u8; 32] = master
        .open(signing.kid.as_bytes(), &signing.sealed_private)
        .unwrap()
        .try_into()
        .unwrap();
    let raw = SigningKey::from_bytes(&seed);
    let k = Keyring::load(&master, stored).unwrap();
    (master, k, raw)
}

fn tokens(c: &mut Criterion) {
    let (_, k, raw) = keyring();
    let verifying = raw.verifying_key();
    let sample = claims(0);
    let token = k.sign(&sample).unwrap();
    // The raw baselines sign and verify a message as long as the token's signing input.
    let signed_len = token.rfind('.').unwrap();
    let msg = token.as_bytes()[..signed_len].to_vec();
    let sig: Signature = raw.sign(&msg);

    let mut g = c.benchmark_group("token");
    g.throughput(Throughput::Elements(1));
    g.bench_function("mint/sessiond_keyring_sign", |b| {
        b.iter(|| k.sign(black_box(&sample)).unwrap())
    });
    g.bench_function("mint/raw_ed25519_sign", |b| {
        b.iter(|| raw.sign(black_box(&msg)))
    });
    g.bench_function("verify/sessiond_keyring_verify", |b| {
        b.iter(|| k.verify(black_box(&token), ISS, AUD, NOW).unwrap())
    });
    g.bench_function("verify/raw_ed25519_verify_strict", |b| {
        b.iter(|| verifying.verify_strict(black_box(&msg), &sig).unwrap())
    });
    g.bench_function("verify/raw_ed25519_verify", |b| {
        b.iter(|| {
            ed25519_dalek::Verifier::verify(&verifying, black_box(&msg), &sig).unwrap();
        })
    });
    g.finish();
}

/// `Engine::verify_token`: a unique token pays a signature check, a repeated one a cache hit.
fn engine_verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(MemoryStore::new());
    let master = MasterKey::parse(&"42".repeat(32)).unwrap();
    let engine = rt
        .block_on(Engine::start(
            store.clone(),
            store.clone(),
            Arc::new(ManualClock::new(NOW)),
            master.clone(),
            EngineConfig {
                issuer: ISS.into(),
                token_cache_size: 1,
                ..EngineConfig::default()
            },
        ))
        .unwrap();
    let k = Keyring::load(&master, rt.block_on(store.load_keys()).unwrap()).unwrap();
    let repeated = k.sign(&claims(0)).unwrap();
    // A cache of one entry and a cycle of 1000 tokens: every call misses.
    let unique: Vec<String> = (0..1_000).map(|n| k.sign(&claims(n)).unwrap()).collect();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_token/cached", |b| {
        b.iter(|| engine.verify_token(black_box(&repeated)).unwrap())
    });
    let mut i = 0;
    g.bench_function("verify_token/unique", |b| {
        b.iter(|| {
            i = (i + 1) % unique.len();
            engine.verify_token(black_box(&unique[i])).unwrap()
        })
    });
    g.finish();
}

fn hashing(c: &mut Criterion) {
    let refresh = secret::new_secret().unwrap();
    let mut g = c.benchmark_group("secret");
    g.throughput(Throughput::Elements(1));
    g.bench_function("hash_token/refresh_token_43B", |b| {
        b.iter(|| secret::hash_token(black_box(&refresh)))
    });
    g.bench_function("new_secret", |b| b.iter(secret::new_secret));
    g.finish();
}

fn policy(c: &mut Criterion) {
    let none = PolicyOverrides::default();
    let some = PolicyOverrides {
        max_sessions_per_user: Some(1),
        on_limit: Some(OnLimit::Reject),
        idle_ttl: Some(600),
        required_headers: Some(vec!["Authorization".into(), "X-Tenant-ID".into()]),
        ..PolicyOverrides::default()
    };
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(1));
    for (name, o) in [("defaults", &none), ("overrides", &some)] {
        g.bench_with_input(BenchmarkId::new("effective", name), o, |b, o| {
            b.iter(|| Policy::effective(Profile::Production, black_box(o)).unwrap())
        });
    }
    let p = Policy::effective(Profile::Integration, &none).unwrap();
    g.bench_function("requires_activity_id", |b| {
        b.iter(|| black_box(&p).requires_activity_id())
    });
    g.finish();
}

/// Where criterion wrote its estimates.
fn criterion_dir() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(h));
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(t).join("criterion"));
    }
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let candidate = dir.join("target").join("criterion");
        if candidate.is_dir() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// Mean time per iteration in ns of one benchmark, from its `new/estimates.json`.
fn mean_ns(id: &str) -> Option<f64> {
    let path = criterion_dir()?.join(id).join("new").join("estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn report_ratios() {
    println!("\n## ratios (raw time / sessiond time: 1.0 = as fast as the raw operation)\n");
    println!("| measure | sessiond | baseline | ratio |");
    println!("|---|---:|---:|---:|");
    let rows = [
        (
            "mint vs raw sign",
            "token/mint_sessiond_keyring_sign",
            "token/mint_raw_ed25519_sign",
        ),
        (
            "verify (unique token) vs raw verify_strict",
            "token/verify_sessiond_keyring_verify",
            "token/verify_raw_ed25519_verify_strict",
        ),
        (
            "engine.verify_token unique vs raw verify_strict",
            "engine/verify_token_unique",
            "token/verify_raw_ed25519_verify_strict",
        ),
        (
            "engine.verify_token cached vs raw verify_strict",
            "engine/verify_token_cached",
            "token/verify_raw_ed25519_verify_strict",
        ),
    ];
    for (name, ours, raw) in rows {
        match (mean_ns(ours), mean_ns(raw)) {
            (Some(a), Some(b)) => println!(
                "| {name} | {:.2} µs ({:.0}/s) | {:.2} µs ({:.0}/s) | {:.3} |",
                a / 1e3,
                1e9 / a,
                b / 1e3,
                1e9 / b,
                b / a
            ),
            _ => println!("| {name} | n/a | n/a | n/a (no estimates found) |"),
        }
    }
    for (name, id) in [
        (
            "hash_token (43 B refresh token)",
            "secret/hash_token_refresh_token_43B",
        ),
        ("Policy::effective (defaults)", "policy/effective/defaults"),
        (
            "Policy::effective (overrides)",
            "policy/effective/overrides",
        ),
    ] {
        if let Some(a) = mean_ns(id) {
            println!("| {name} | {:.1} ns ({:.0}/s) | | |", a, 1e9 / a);
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    tokens(&mut c);
    engine_verify(&mut c);
    hashing(&mut c);
    policy(&mut c);
    c.final_summary();
    report_ratios();
}
