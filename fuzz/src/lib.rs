//! The bodies of sessiond's fuzz targets. Each `fuzz_targets/*.rs` is a one-line libFuzzer
//! entry point calling one of these; `tests/replay.rs` runs the same functions on stable
//! `cargo test` over the corpus and seeded pseudo-random inputs. Each function panics only
//! when it finds a bug: a panic inside sessiond, or an accepted forgery.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sessiond_core::secret::{MasterKey, b64};
use sessiond_core::sso::SsoVerifier;
use sessiond_core::token::{Alg, Claims, Keyring, NBF_LEEWAY};
use sessiond_store::{PolicyOverrides, Profile, SsoSettings, TenantId};
use std::sync::LazyLock;

pub const ISS: &str = "http://sessiond.fuzz";
pub const AUD: &str = "sessiond";
pub const NOW: i64 = 1_800_000_000;
pub const SSO_SECRET: &str = "a-partner-shared-secret-of-32-bytes!!";
pub const SSO_AUD: &str = "sessiond-sso";

/// A keyring holding both algorithms: an EdDSA key retired by a rotation to ES256, the ES256
/// signing key and an ES256 next key — so a token can name a real key of the other algorithm.
pub struct Fixture {
    pub keyring: Keyring,
    /// Valid session tokens: one signed by the (now retiring) EdDSA key, one by ES256.
    pub tokens: Vec<String>,
    pub claims: Vec<Claims>,
    pub ed_public: Vec<u8>,
    /// A partner-shaped SSO token signed by the EdDSA key (valid for the PEM trust below).
    pub ed_sso: String,
}

fn claims(jti: &str) -> Claims {
    Claims {
        iss: ISS.into(),
        aud: AUD.into(),
        sub: uuid_of(1),
        sid: sessiond_store::SessionId::parse("AAAAAAAAAAAAAAAAAAAAAA").expect("sid"),
        tid: TenantId::parse("t1").expect("tid"),
        cid: uuid_of(2),
        scope: "session".into(),
        jti: jti.into(),
        iat: NOW,
        nbf: NOW,
        exp: NOW + 3600,
        auth_time: NOW,
        amr: vec!["pwd".into()],
    }
}

fn uuid_of(n: u8) -> sessiond_store::UserId {
    serde_json::from_value(json!(format!("00000000-0000-4000-8000-0000000000{n:02x}")))
        .expect("uuid")
}

pub static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let master = MasterKey::parse(&"42".repeat(32)).expect("master key");
    let first = Keyring::load(
        &master,
        Keyring::generate(&master, Alg::EdDSA, NOW).expect("generate"),
    )
    .expect("load");
    let ed_claims = claims("ed");
    let ed_token = first.sign(&ed_claims).expect("sign");
    let ed_public = first
        .stored()
        .iter()
        .find(|k| k.kid == first.signing_kid())
        .map(|k| k.public.clone())
        .expect("signing key");
    let ed_sso = first.sign(&sso_claims()).expect("sign");
    let switched = first
        .with_next_alg(&master, Alg::ES256, NOW)
        .expect("next alg")
        .expect("a new next key");
    let switched = Keyring::load(&master, switched).expect("load");
    let keyring = Keyring::load(
        &master,
        switched.rotated(&master, Alg::ES256, NOW).expect("rotate"),
    )
    .expect("load");
    let es_claims = claims("es");
    let es_token = keyring.sign(&es_claims).expect("sign");
    for t in [&ed_token, &es_token] {
        assert!(keyring.verify(t, ISS, AUD, NOW).is_ok(), "fixture token");
    }
    Fixture {
        keyring,
        tokens: vec![ed_token, es_token],
        claims: vec![ed_claims, es_claims],
        ed_public,
        ed_sso,
    }
});

fn sso_claims() -> Value {
    json!({"sub": "partner-user", "jti": "j1", "exp": NOW + 300, "iat": NOW,
        "aud": SSO_AUD, "iss": "https://partner.example"})
}

/// Target `token_verify`: any string through every verification entry point. Nothing may
/// panic, and nothing but the fixture's own tokens may verify.
pub fn token_verify(data: &[u8]) {
    let f = &*FIXTURE;
    let text = String::from_utf8_lossy(data);
    check_accepted(f, &text);
    let _ = f.keyring.verify_signature(&text);
    let _ = f.keyring.verify_ignoring_expiry(&text, ISS, AUD, NOW);
}

/// Fails if `token` verifies with claims other than a fixture token's (a forgery).
fn check_accepted(f: &Fixture, token: &str) {
    if let Ok(c) = f.keyring.verify(token, ISS, AUD, NOW) {
        assert!(
            f.claims.contains(&c),
            "FORGERY: {token:?} verified with claims {c:?}"
        );
        // Same claims: the signed bytes must be a fixture token's too (a changed header
        // would mean the header is not covered by the signature).
        let signed = token.rsplit_once('.').map(|(s, _)| s);
        assert!(
            f.tokens
                .iter()
                .any(|t| t.rsplit_once('.').map(|(s, _)| s) == signed),
            "FORGERY: {token:?} verified with a header or payload that was never signed"
        );
    }
}

const PIECES: &[&str] = &[
    ".",
    "=",
    "-",
    "_",
    "+",
    "/",
    "A",
    " ",
    "eyJ",
    "\u{0}",
    // {"alg":"none","typ":"at+jwt"}
    "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0",
    // {"alg":"HS256","typ":"at+jwt"}
    "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9",
];

/// Target `token_mutate`: a valid token (EdDSA or ES256) changed by the input, read as a
/// list of edits (byte replace/insert/delete, segment swaps, header swaps between the two
/// tokens, splices of known pieces). Anything accepted must be a fixture token's signed bytes.
pub fn token_mutate(data: &[u8]) {
    let f = &*FIXTURE;
    let Some((&pick, ops)) = data.split_first() else {
        return;
    };
    let mut t: Vec<u8> = f.tokens[usize::from(pick) % f.tokens.len()]
        .clone()
        .into_bytes();
    for op in ops.chunks(3) {
        let [kind, pos, val] = [op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0)];
        let at = if t.is_empty() {
            0
        } else {
            usize::from(pos) * t.len() / 256
        };
        match kind % 7 {
            0 if at < t.len() => t[at] = val,
            1 => t.insert(at.min(t.len()), val),
            2 if at < t.len() => {
                t.remove(at);
            }
            3 => {
                // Swap two of the dot-separated segments.
                let text = String::from_utf8_lossy(&t).into_owned();
                let mut segs: Vec<&str> = text.split('.').collect();
                let n = segs.len();
                segs.swap(usize::from(pos) % n, usize::from(val) % n);
                t = segs.join(".").into_bytes();
            }
            4 => {
                // Take the header (or payload, or signature) of the other fixture token.
                let text = String::from_utf8_lossy(&t).into_owned();
                let mut segs: Vec<String> = text.split('.').map(str::to_owned).collect();
                let other: Vec<&str> = f.tokens[usize::from(val) % f.tokens.len()]
                    .split('.')
                    .collect();
                let i = usize::from(pos) % 3;
                if i < segs.len() {
                    segs[i] = other[i].to_owned();
                }
                t = segs.join(".").into_bytes();
            }
            5 => {
                let piece = PIECES[usize::from(val) % PIECES.len()];
                let at = at.min(t.len());
                t.splice(at..at, piece.bytes());
            }
            6 if at < t.len() => {
                t.truncate(at);
            }
            _ => {}
        }
    }
    token_verify(&t);
}

/// Target `token_claims`: payloads the key really signed, built from the input (any JSON
/// value, or the fixture's claims with members replaced by the input's). Whatever verifies
/// must satisfy every claim check: issuer, audience, time.
pub fn token_claims(data: &[u8]) {
    let f = &*FIXTURE;
    let payload: Value = match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(patch)) => {
            let mut base = serde_json::to_value(&f.claims[0]).expect("claims");
            if let Value::Object(m) = &mut base {
                m.extend(patch);
            }
            base
        }
        Ok(v) => v,
        Err(_) => Value::String(String::from_utf8_lossy(data).into_owned()),
    };
    let Ok(token) = f.keyring.sign(&payload) else {
        return;
    };
    let _ = f.keyring.verify_ignoring_expiry(&token, ISS, AUD, NOW);
    if let Ok(c) = f.keyring.verify(&token, ISS, AUD, NOW) {
        assert!(
            c.iss == ISS
                && c.aud == AUD
                && NOW < c.exp
                && c.nbf <= NOW + NBF_LEEWAY
                && c.iat <= NOW + NBF_LEEWAY,
            "claims that fail a check verified: {c:?}"
        );
    }
}

fn pem(spki: &[u8]) -> String {
    let std = b64(spki).replace('-', "+").replace('_', "/");
    let padded = std.clone() + &"=".repeat((4 - std.len() % 4) % 4);
    format!("-----BEGIN PUBLIC KEY-----\n{padded}\n-----END PUBLIC KEY-----\n")
}

struct Sso {
    verifier: SsoVerifier,
    hs256: SsoSettings,
    ed25519: SsoSettings,
    /// Valid SSO tokens for each trust, for seeds.
    tokens: Vec<String>,
}

static SSO: LazyLock<Sso> = LazyLock::new(|| {
    let f = &*FIXTURE;
    let spki = [
        &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ][..],
        &f.ed_public,
    ]
    .concat();
    let settings = |pem: Option<String>| SsoSettings {
        issuer: Some("https://partner.example".into()),
        audience: SSO_AUD.into(),
        // The verifier takes the opened secret as an argument; the sealed form is unused.
        sealed_hs256_secret: pem.is_none().then(Vec::new),
        public_key_pem: pem,
        jwks_url: None,
        verify_url: None,
        sealed_verify_secret: None,
        updated_at: NOW,
    };
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &sso_claims(),
        &EncodingKey::from_secret(SSO_SECRET.as_bytes()),
    )
    .expect("hs256");
    Sso {
        verifier: SsoVerifier::new(None, None),
        hs256: settings(None),
        ed25519: settings(Some(pem(&spki))),
        tokens: vec![hs, f.ed_sso.clone()],
    }
});

fn poll_once<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// Target `sso_verify`: any string as a partner's SSO token, against an HS256 trust and an
/// Ed25519 PEM trust (no JWKS: no network). The first input byte picks the trust. Nothing may
/// panic; an accepted token must carry the checked claims.
pub fn sso_verify(data: &[u8]) {
    let sso = &*SSO;
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let token = String::from_utf8_lossy(rest);
    let (settings, secret) = if pick % 2 == 0 {
        (&sso.hs256, Some(SSO_SECRET.as_bytes()))
    } else {
        (&sso.ed25519, None)
    };
    if let Some(Ok(c)) = poll_once(sso.verifier.verify(
        settings,
        secret,
        &token,
        NOW,
        sessiond_core::outbound::Outbound::Any,
    )) {
        assert!(
            !c.sub.is_empty() && !c.jti.is_empty() && NOW < c.exp,
            "SSO claims that fail a check verified: {c:?}"
        );
    }
}

/// Target `request_bodies`: any bytes as the JSON body of every public request type, and the
/// policy validation that follows a policy body. The first byte picks the type.
pub fn request_bodies(data: &[u8]) {
    use sessiond_proto as proto;
    use sessiond_server::wire;
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    match pick % 10 {
        0 => drop(serde_json::from_slice::<proto::LoginRequest>(body)),
        1 => drop(serde_json::from_slice::<proto::SsoRequest>(body)),
        2 => drop(serde_json::from_slice::<proto::RefreshRequest>(body)),
        3 => drop(serde_json::from_slice::<wire::CreateTenantRequest>(body)),
        4 => drop(serde_json::from_slice::<wire::CreateUserRequest>(body)),
        5 => drop(serde_json::from_slice::<wire::PasswordRequest>(body)),
        6 => drop(serde_json::from_slice::<wire::CreateClientRequest>(body)),
        7 => drop(serde_json::from_slice::<sessiond_core::SsoConfig>(body)),
        8 => {
            if let Ok(o) = serde_json::from_slice::<PolicyOverrides>(body) {
                for p in [
                    Profile::Playground,
                    Profile::Integration,
                    Profile::Production,
                ] {
                    let _ = sessiond_core::policy::Policy::effective(p, &o);
                }
            }
        }
        _ => {
            // The strings a body carries into the core: usernames, tenant and session ids.
            let text = String::from_utf8_lossy(body);
            let _ = sessiond_core::engine::normalize_username(&text);
            let _ = TenantId::parse(&text);
            let _ = sessiond_store::SessionId::parse(&text);
        }
    }
}

/// Seed inputs per target (valid tokens and bodies), so fuzzing starts from the interesting
/// shapes instead of from nothing.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let f = &*FIXTURE;
    match target {
        "token_verify" => f.tokens.iter().map(|t| t.clone().into_bytes()).collect(),
        "token_mutate" => vec![vec![0], vec![1], vec![0, 4, 0, 1], vec![1, 5, 0, 10]],
        "token_claims" => vec![
            br#"{}"#.to_vec(),
            br#"{"exp": 9223372036854775807}"#.to_vec(),
            br#"{"nbf": -9223372036854775808, "aud": ["sessiond"]}"#.to_vec(),
            serde_json::to_vec(&f.claims[1]).expect("claims"),
        ],
        "sso_verify" => SSO
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| [&[i as u8][..], t.as_bytes()].concat())
            .collect(),
        "request_bodies" => [
            r#"{"username":"alice","password":"correct horse","device":{"label":"phone"}}"#,
            r#"{"ssoToken":"x","device":{}}"#,
            r#"{"refreshToken":"x"}"#,
            r#"{"id":"t1","profile":"integration","policy":{"idleTtl":60}}"#,
            r#"{"username":"a","password":"b","customerId":"00000000-0000-4000-8000-000000000001"}"#,
            r#"{"password":"x"}"#,
            r#"{"clientId":"c","audience":"a"}"#,
            r#"{"audience":"a","hs256Secret":"s"}"#,
            r#"{"sessionTokenTtl":60,"absoluteTtl":86400,"idleTtl":0,"maxSessionsPerUser":1,"onLimit":"reject","refreshGraceSeconds":300}"#,
            "Jose\u{301}",
        ]
        .iter()
        .enumerate()
        .map(|(i, b)| [&[i as u8][..], b.as_bytes()].concat())
        .collect(),
        _ => Vec::new(),
    }
}
