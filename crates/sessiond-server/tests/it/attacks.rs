//! The attack suite (issue 6): every test mounts one attack on the real server over HTTP and
//! fails if sessiond accepts it. Forged tokens are tried on every endpoint that takes a
//! session token (whoami, sessions list, logout-all, logout, the internal-token exchange) and
//! on introspection; after each attack the victim's sessions are checked to be still alive,
//! so a forged logout that "worked" is caught too. SECURITY.md lists the attacks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::*;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::Method;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use ring::{digest, hmac};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SSO_SECRET: &str = "a-partner-shared-secret-of-32-bytes!!";

// ---- the victims ---------------------------------------------------------------------------

/// A server with tenants `ta` (alice, bob) and `tb` (alice), alice and bob logged in on `ta`,
/// and a service client of `ta` to introspect with.
struct World {
    s: TestServer,
    alice_id: String,
    bob_id: String,
    alice: Reply,
    bob: Reply,
    client: (String, String),
}

impl World {
    async fn new() -> Self {
        let s = TestServer::start().await;
        let alice_id = s.tenant_with_user("ta", "integration", json!({})).await;
        let bob_id = s.user("ta", "bob").await;
        s.tenant_with_user("tb", "integration", json!({})).await;
        let alice = s.login_ok("ta", "alice").await;
        let bob = s.login_ok("ta", "bob").await;
        let client = client(&s, "ta", "probe-service").await;
        Self {
            s,
            alice_id,
            bob_id,
            alice,
            bob,
            client,
        }
    }

    fn token(&self) -> String {
        self.alice.str("userSessionToken")
    }

    /// The genuine token's parts: header and payload as JSON, and the signature segment.
    fn genuine(&self) -> (Value, Value, String) {
        let t = self.token();
        let p: Vec<&str> = t.split('.').collect();
        (json_of(p[0]), json_of(p[1]), p[2].to_owned())
    }

    async fn kid(&self) -> String {
        self.genuine().0["kid"].as_str().unwrap().to_owned()
    }

    /// Fails unless every endpoint that takes a session token refuses `token` with 401 and
    /// one of `codes`.
    async fn assert_refused(&self, tenant: &str, token: &str, codes: &[&str], why: &str) {
        let s = &self.s;
        let calls = [
            ("whoami", s.api(Method::GET, "/api/v2/session", tenant)),
            ("sessions", s.api(Method::GET, "/api/v2/sessions", tenant)),
            (
                "logout-all",
                s.api(Method::POST, "/api/v2/auth/logout-all", tenant),
            ),
            ("logout", s.api(Method::POST, "/api/v2/auth/logout", tenant)),
        ];
        for (name, rb) in calls {
            let r = TestServer::send(rb.bearer_auth(token)).await;
            assert_eq!(r.status, 401, "{why}: {name} did not refuse: {}", r.body);
            assert!(
                codes.contains(&r.body["code"].as_str().unwrap_or("")),
                "{why}: {name}: unexpected code {}",
                r.body
            );
        }
        let r = TestServer::send(
            s.api(Method::POST, "/api/v2/auth/logout", tenant)
                .header("X-User-Session-Token", token),
        )
        .await;
        assert_eq!(r.status, 401, "{why}: FinHub-style logout: {}", r.body);
        let (id, secret) = &self.client;
        let r = TestServer::send(
            s.api(Method::POST, "/internal/v1/access-token", tenant)
                .basic_auth(id, Some(secret))
                .header("X-User-Session-Token", token),
        )
        .await;
        assert_eq!(r.status, 401, "{why}: internal token minted: {}", r.body);
    }

    /// A forgery: refused with `token_invalid` everywhere, and inactive on introspection.
    async fn assert_forgery_refused(&self, token: &str, why: &str) {
        self.assert_refused("ta", token, &["token_invalid"], why)
            .await;
        let (id, secret) = &self.client;
        let r = introspect(&self.s, id, secret, token).await;
        assert_eq!(
            r.body,
            json!({"active": false}),
            "{why}: introspection believed it"
        );
    }

    /// The victims' sessions are still alive (no forged logout went through).
    async fn assert_victims_alive(&self) {
        for who in [&self.alice, &self.bob] {
            let me = self.s.whoami("ta", &who.str("userSessionToken")).await;
            assert_eq!(me.status, 200, "a victim's session was ended: {}", me.body);
        }
    }
}

async fn client(s: &TestServer, tenant: &str, audience: &str) -> (String, String) {
    let r = TestServer::send(
        s.admin(Method::POST, &format!("/admin/v1/tenants/{tenant}/clients"))
            .json(&json!({"audience": audience})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    (r.str("clientId"), r.str("clientSecret"))
}

async fn introspect(s: &TestServer, id: &str, secret: &str, token: &str) -> Reply {
    TestServer::send(
        s.req(Method::POST, "/oauth2/introspect")
            .basic_auth(id, Some(secret))
            .form(&[("token", token)]),
    )
    .await
}

// ---- forging -------------------------------------------------------------------------------

fn json_of(segment: &str) -> Value {
    serde_json::from_slice(&B64.decode(segment).unwrap()).unwrap()
}

fn seg(v: &Value) -> String {
    B64.encode(v.to_string())
}

/// `header.payload` signed with HMAC (`alg` HS256/384/512) under `key`.
fn hmac_token(alg: &str, key: &[u8], header: &Value, payload: &Value) -> String {
    let h = match alg {
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    };
    let input = format!("{}.{}", seg(header), seg(payload));
    let tag = hmac::sign(&hmac::Key::new(h, key), input.as_bytes());
    format!("{input}.{}", B64.encode(tag.as_ref()))
}

/// `header.payload` signed by an Ed25519 key (the attacker's).
fn ed_token(pair: &Ed25519KeyPair, header: &Value, payload: &Value) -> String {
    let input = format!("{}.{}", seg(header), seg(payload));
    format!(
        "{input}.{}",
        B64.encode(pair.sign(input.as_bytes()).as_ref())
    )
}

fn attacker_key() -> Ed25519KeyPair {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
}

fn attacker_jwk(pair: &Ed25519KeyPair) -> (Value, String) {
    let x = B64.encode(pair.public_key().as_ref());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    let kid = B64.encode(digest::digest(&digest::SHA256, canonical.as_bytes()));
    (
        json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}),
        kid,
    )
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let n = content.len();
    let mut out = vec![tag];
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// A real self-signed X.509 certificate for the attacker's Ed25519 key (for `x5c`).
fn attacker_cert(pair: &Ed25519KeyPair) -> Vec<u8> {
    let seq = |parts: &[Vec<u8>]| der(0x30, &parts.concat());
    let ed25519 = seq(&[der(0x06, &[0x2b, 0x65, 0x70])]);
    let name = seq(&[der(
        0x31,
        &seq(&[der(0x06, &[0x55, 0x04, 0x03]), der(0x0c, b"sessiond.test")]),
    )]);
    let validity = seq(&[der(0x17, b"250101000000Z"), der(0x17, b"491231235959Z")]);
    let bits = |b: &[u8]| der(0x03, &[&[0u8][..], b].concat());
    let spki = seq(&[ed25519.clone(), bits(pair.public_key().as_ref())]);
    let tbs = seq(&[
        der(0xa0, &der(0x02, &[2])),
        der(0x02, &[1]),
        ed25519.clone(),
        name.clone(),
        validity,
        name,
        spki,
    ]);
    let sig = pair.sign(&tbs);
    seq(&[tbs, ed25519, bits(sig.as_ref())])
}

/// A loopback HTTP server that hands out `body` (the attacker's JWKS) and counts how often
/// anyone connects to it.
async fn attacker_server(body: String) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if sock.readable().await.is_ok() {
                    let _ = sock.try_read(&mut buf);
                }
                if sock.writable().await.is_ok() {
                    let _ = sock.try_write(response.as_bytes());
                }
            });
        }
    });
    (url, hits)
}

// ---- algorithm attacks ---------------------------------------------------------------------

#[tokio::test]
async fn attack_alg_none_is_refused() {
    let w = World::new().await;
    let (header, payload, sig) = w.genuine();
    let kid = w.kid().await;
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        for with_kid in [true, false] {
            let mut h = json!({"alg": alg, "typ": "at+jwt"});
            if with_kid {
                h["kid"] = json!(kid);
            }
            for signature in ["", sig.as_str()] {
                let forged = format!("{}.{}.{signature}", seg(&h), seg(&payload));
                w.assert_forgery_refused(&forged, &format!("alg {alg:?}, kid {with_kid}"))
                    .await;
            }
            // Unsigned, with only two segments.
            let forged = format!("{}.{}", seg(&h), seg(&payload));
            w.assert_forgery_refused(&forged, "alg none, two segments")
                .await;
        }
    }
    // alg none on the genuine header's own bytes but for another user's session.
    let mut p = payload.clone();
    p["sub"] = json!(w.bob_id);
    p["sid"] = w.bob.body["sessionId"].clone();
    let mut h = header.clone();
    h["alg"] = json!("none");
    w.assert_forgery_refused(&format!("{}.{}.", seg(&h), seg(&p)), "alg none as bob")
        .await;
    w.assert_victims_alive().await;
}

#[tokio::test]
async fn attack_hs256_signed_with_the_servers_public_key_is_refused() {
    let w = World::new().await;
    let (_, payload, _) = w.genuine();
    let res =
        w.s.req(Method::GET, "/.well-known/jwks.json")
            .send()
            .await
            .unwrap();
    let jwks_text = res.text().await.unwrap();
    let jwks: Value = serde_json::from_str(&jwks_text).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(keys.len() >= 2, "a signing and a next key: {jwks}");
    let mut tried = 0;
    for jwk in keys {
        let kid = jwk["kid"].as_str().unwrap();
        let x = jwk["x"].as_str().unwrap();
        let raw = B64.decode(x).unwrap();
        assert_eq!(raw.len(), 32);
        let spki = [
            &[
                0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
            ][..],
            &raw,
        ]
        .concat();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(&spki)
        );
        // The JWK exactly as served (its text inside the JWKS), re-serialized, canonical.
        let start = jwks_text.find(&format!("\"kid\":\"{kid}\"")).unwrap();
        let open = jwks_text[..start].rfind('{').unwrap();
        let close = open + jwks_text[open..].find('}').unwrap() + 1;
        let materials: Vec<(&str, Vec<u8>)> = vec![
            ("raw 32 bytes", raw.clone()),
            ("x text", x.as_bytes().to_vec()),
            ("JWK as served", jwks_text.as_bytes()[open..close].to_vec()),
            ("JWK re-serialized", jwk.to_string().into_bytes()),
            (
                "JWK canonical",
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#).into_bytes(),
            ),
            ("whole JWKS", jwks_text.as_bytes().to_vec()),
            ("SPKI DER", spki),
            ("PEM", pem.into_bytes()),
        ];
        for (what, key) in &materials {
            for alg in ["HS256", "HS384", "HS512"] {
                for typ in ["at+jwt", "JWT"] {
                    let h = json!({"alg": alg, "typ": typ, "kid": kid});
                    let forged = hmac_token(alg, key, &h, &payload);
                    w.assert_forgery_refused(&forged, &format!("{alg} with {what} of {kid}"))
                        .await;
                    tried += 1;
                }
            }
        }
    }
    assert!(tried >= 96);
    w.assert_victims_alive().await;
}

// ---- tampering -----------------------------------------------------------------------------

#[tokio::test]
async fn attack_tampered_payload_claims_are_refused() {
    let w = World::new().await;
    let (header, payload, sig) = w.genuine();
    let bob_sid = w.bob.body["sessionId"].clone();
    let tb_alice = w.s.login_ok("tb", "alice").await;
    let tb_claims = json_of(tb_alice.str("userSessionToken").split('.').nth(1).unwrap());
    let exp = payload["exp"].as_i64().unwrap();
    let tampered: Vec<(&str, &str, Value)> = vec![
        ("sub", "ta", json!(w.bob_id)),
        ("sub", "ta", json!(uuid::Uuid::new_v4().to_string())),
        ("sid", "ta", bob_sid),
        ("sid", "tb", tb_claims["sid"].clone()),
        ("tid", "tb", json!("tb")),
        ("tid", "ta", json!("TA")),
        ("exp", "ta", json!(exp + 86_400 * 365)),
        ("exp", "ta", json!(exp + 1)),
        ("aud", "ta", json!("other-service")),
        ("aud", "ta", json!(["sessiond", "other-service"])),
        ("iss", "ta", json!("http://evil.example")),
        ("iss", "ta", json!(format!("{ISSUER}/"))),
        ("cid", "ta", json!(uuid::Uuid::new_v4().to_string())),
        ("scope", "ta", json!("session admin")),
        ("amr", "ta", json!(["pwd", "mfa"])),
        ("nbf", "ta", json!(0)),
        ("iat", "ta", json!(0)),
        ("auth_time", "ta", json!(START + 100)),
        ("jti", "ta", json!("chosen")),
    ];
    for (claim, tenant, value) in tampered {
        let mut p = payload.clone();
        p[claim] = value.clone();
        let forged = format!("{}.{}.{sig}", seg(&header), seg(&p));
        w.assert_refused(
            tenant,
            &forged,
            &["token_invalid"],
            &format!("{claim} = {value} on {tenant}"),
        )
        .await;
    }
    // The same claims, serialized differently, or with one claim added: the signature covers
    // the bytes, not the meaning.
    let mut extra = payload.clone();
    extra["admin"] = json!(true);
    let pretty = B64.encode(serde_json::to_string_pretty(&payload).unwrap());
    for (why, p) in [("extra claim", seg(&extra)), ("re-serialized", pretty)] {
        let forged = format!("{}.{p}.{sig}", seg(&header));
        w.assert_forgery_refused(&forged, why).await;
    }
    // The header re-serialized (same meaning, other bytes).
    let h = B64.encode(serde_json::to_string_pretty(&header).unwrap());
    let t = w.token();
    let p = t.split('.').nth(1).unwrap();
    w.assert_forgery_refused(&format!("{h}.{p}.{sig}"), "header re-serialized")
        .await;
    w.assert_victims_alive().await;
    assert_eq!(
        w.s.whoami("tb", &tb_alice.str("userSessionToken"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn attack_stripped_or_swapped_signature_is_refused() {
    let w = World::new().await;
    let t = w.token();
    let parts: Vec<&str> = t.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let bob_sig = w
        .bob
        .str("userSessionToken")
        .rsplit('.')
        .next()
        .unwrap()
        .to_owned();
    let mut flipped = B64.decode(s).unwrap();
    flipped[10] ^= 1;
    let mut noncanonical = s.to_owned();
    // 64 bytes leave 4 spare bits in the last base64url character: set them.
    let last = noncanonical.pop().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    noncanonical.push(alphabet.as_bytes()[(idx & !0xf) | ((idx + 1) & 0xf)] as char);
    let standard = STANDARD.encode(B64.decode(s).unwrap());
    for (why, forged) in [
        ("stripped", format!("{h}.{p}.")),
        ("no signature segment", format!("{h}.{p}")),
        ("bob's signature", format!("{h}.{p}.{bob_sig}")),
        (
            "one bit flipped",
            format!("{h}.{p}.{}", B64.encode(&flipped)),
        ),
        (
            "zero signature",
            format!("{h}.{p}.{}", B64.encode([0u8; 64])),
        ),
        ("half a signature", format!("{h}.{p}.{}", &s[..43])),
        ("signature doubled", format!("{h}.{p}.{s}{s}")),
        ("signature padded", format!("{h}.{p}.{s}==")),
        ("non-canonical base64", format!("{h}.{p}.{noncanonical}")),
        ("standard base64", format!("{h}.{p}.{standard}")),
    ] {
        if forged == t {
            continue; // the standard alphabet may coincide with base64url
        }
        w.assert_forgery_refused(&forged, why).await;
    }
    w.assert_victims_alive().await;
}

#[tokio::test]
async fn attack_truncated_or_extra_segments_are_refused() {
    let w = World::new().await;
    let t = w.token();
    let parts: Vec<&str> = t.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let long = format!("{h}.{}.{s}", "A".repeat(9000));
    for (why, forged) in [
        ("extra empty segment", format!("{t}.")),
        ("extra segment", format!("{t}.{s}")),
        ("JWE-shaped", format!("{h}.{p}.{s}.{p}.{s}")),
        ("header only", h.to_owned()),
        ("empty payload", format!("{h}..{s}")),
        ("empty header", format!(".{p}.{s}")),
        ("dots only", "..".to_owned()),
        (
            "payload truncated",
            format!("{h}.{}.{s}", &p[..p.len() - 4]),
        ),
        ("token truncated", t[..t.len() - 1].to_owned()),
        ("segments swapped", format!("{p}.{h}.{s}")),
        ("space inside", format!("{h}.{p} .{s}")),
        ("oversized", long),
        ("not a JWT", "garbage".to_owned()),
    ] {
        w.assert_forgery_refused(&forged, why).await;
    }
    w.assert_victims_alive().await;
}

// ---- key selection -------------------------------------------------------------------------

#[tokio::test]
async fn attack_unknown_kid_is_refused() {
    let w = World::new().await;
    let (header, payload, sig) = w.genuine();
    let kid = w.kid().await;
    let attacker = attacker_key();
    let (_, attacker_kid) = attacker_jwk(&attacker);
    for unknown in [
        json!("unknown"),
        json!(attacker_kid),
        json!(kid.to_uppercase()),
        json!(format!("{kid}=")),
        json!(&kid[..kid.len() - 1]),
        json!(format!("{kid} ")),
        json!(""),
    ] {
        let mut h = header.clone();
        h["kid"] = unknown.clone();
        w.assert_forgery_refused(
            &format!("{}.{}.{sig}", seg(&h), seg(&payload)),
            &format!("kid {unknown}, genuine signature"),
        )
        .await;
        w.assert_forgery_refused(
            &ed_token(&attacker, &h, &payload),
            &format!("kid {unknown}, attacker's signature"),
        )
        .await;
    }
    let mut h = header.clone();
    h.as_object_mut().unwrap().remove("kid");
    w.assert_forgery_refused(&ed_token(&attacker, &h, &payload), "no kid")
        .await;
    // The server's own kid on a token the attacker signed.
    w.assert_forgery_refused(
        &ed_token(&attacker, &header, &payload),
        "attacker signs, server kid",
    )
    .await;
    w.assert_victims_alive().await;
}

#[tokio::test]
async fn attack_injected_kid_is_refused() {
    let w = World::new().await;
    let (header, payload, _) = w.genuine();
    let kid = w.kid().await;
    let jwks = TestServer::send(w.s.req(Method::GET, "/.well-known/jwks.json")).await;
    let next = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] != kid.as_str())
        .unwrap()
        .clone();
    let next_kid = next["kid"].as_str().unwrap().to_owned();
    let next_raw = B64.decode(next["x"].as_str().unwrap()).unwrap();
    let attacker = attacker_key();
    let injected = [
        json!("../../../../../../../dev/null"),
        json!("/dev/null"),
        json!("../../etc/passwd"),
        json!("..\\..\\..\\windows\\win.ini"),
        json!("file:///dev/null"),
        json!("' OR '1'='1"),
        json!(
            "x' UNION SELECT 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' --"
        ),
        json!("\"; DROP TABLE keys; --"),
        json!(format!("{kid}' --")),
        json!(format!("{kid}\u{0}")),
        json!("%00"),
        json!("\u{0}"),
        json!("*"),
        json!("http://127.0.0.1:1/jwks.json"),
        json!(["a", "b"]),
        json!(1),
        json!(null),
        json!({"kid": kid}),
    ];
    for k in &injected {
        let mut h = header.clone();
        h["kid"] = k.clone();
        for (why, forged) in [
            (
                "HS256 with an empty key",
                hmac_token("HS256", b"", &h, &payload),
            ),
            (
                "HS256 with the kid as key",
                hmac_token("HS256", k.to_string().as_bytes(), &h, &payload),
            ),
            ("attacker's Ed25519 key", ed_token(&attacker, &h, &payload)),
            ("unsigned", format!("{}.{}.", seg(&h), seg(&payload))),
        ] {
            w.assert_forgery_refused(&forged, &format!("kid {k}: {why}"))
                .await;
        }
        let mut hs = h.clone();
        hs["alg"] = json!("HS256");
        w.assert_forgery_refused(
            &hmac_token("HS256", b"", &hs, &payload),
            &format!("kid {k}, alg HS256, empty key"),
        )
        .await;
    }
    // The kid of another (published) key with an algorithm that is not that key's.
    for alg in ["HS256", "HS512", "ES256", "RS256", "PS256", "ES512"] {
        let h = json!({"alg": alg, "typ": "at+jwt", "kid": next_kid});
        w.assert_forgery_refused(
            &hmac_token("HS256", &next_raw, &h, &payload),
            &format!("next key's kid with {alg}"),
        )
        .await;
        w.assert_forgery_refused(
            &ed_token(&attacker, &h, &payload),
            &format!("next key's kid with {alg}, attacker-signed"),
        )
        .await;
    }
    w.assert_victims_alive().await;
}

#[tokio::test]
async fn attack_embedded_jwk_jku_x5u_x5c_headers_are_refused() {
    let w = World::new().await;
    let (_, payload, _) = w.genuine();
    let kid = w.kid().await;
    let attacker = attacker_key();
    let (jwk, attacker_kid) = attacker_jwk(&attacker);
    let (url, hits) = attacker_server(json!({"keys": [jwk.clone()]}).to_string()).await;
    let cert = STANDARD.encode(attacker_cert(&attacker));
    let mut headers = Vec::new();
    for k in [Some(kid.as_str()), Some(attacker_kid.as_str()), None] {
        let base = match k {
            Some(k) => json!({"alg": "EdDSA", "typ": "at+jwt", "kid": k}),
            None => json!({"alg": "EdDSA", "typ": "at+jwt"}),
        };
        for (name, value) in [
            ("jwk", jwk.clone()),
            ("jku", json!(format!("{url}/jwks.json"))),
            ("x5u", json!(format!("{url}/cert.pem"))),
            ("x5c", json!([cert])),
        ] {
            let mut h = base.clone();
            h[name] = value;
            headers.push((format!("{name}, kid {k:?}"), h));
        }
    }
    for (why, h) in &headers {
        w.assert_forgery_refused(&ed_token(&attacker, h, &payload), why)
            .await;
    }
    // The same attacker key embedded as jwk, for another user's session.
    let mut p = payload.clone();
    p["sub"] = json!(w.bob_id);
    p["sid"] = w.bob.body["sessionId"].clone();
    let h = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": attacker_kid, "jwk": jwk});
    w.assert_forgery_refused(&ed_token(&attacker, &h, &p), "jwk, as bob")
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "sessiond fetched a URL named in a token header"
    );
    w.assert_victims_alive().await;
}

#[tokio::test]
async fn attack_typ_changed_to_jwt_is_refused() {
    let w = World::new().await;
    let (header, payload, sig) = w.genuine();
    let attacker = attacker_key();
    for typ in [
        json!("JWT"),
        json!("jwt"),
        json!("application/jwt"),
        json!("AT+JWT"),
        json!("id_token+jwt"),
        json!(""),
        json!(null),
    ] {
        let mut h = header.clone();
        h["typ"] = typ.clone();
        let forged = format!("{}.{}.{sig}", seg(&h), seg(&payload));
        w.assert_forgery_refused(&forged, &format!("typ {typ}"))
            .await;
        w.assert_forgery_refused(
            &ed_token(&attacker, &h, &payload),
            &format!("typ {typ}, attacker-signed"),
        )
        .await;
    }
    let mut h = header.clone();
    h.as_object_mut().unwrap().remove("typ");
    w.assert_forgery_refused(&format!("{}.{}.{sig}", seg(&h), seg(&payload)), "no typ")
        .await;
    w.assert_victims_alive().await;
}

// ---- cross-tenant and cross-token ----------------------------------------------------------

#[tokio::test]
async fn attack_a_token_of_tenant_a_is_refused_on_tenant_b() {
    let w = World::new().await;
    let s = &w.s;
    let a = w.token();
    let a_sid = w.alice.str("sessionId");
    let b_login = s.login_ok("tb", "alice").await;
    let b = b_login.str("userSessionToken");
    let b_sid = b_login.str("sessionId");
    // Verified and cached on its own tenant first: the cache must not skip the tenant check.
    assert_eq!(s.whoami("ta", &a).await.status, 200);
    w.assert_refused("tb", &a, &["tenant_mismatch"], "ta token on tb")
        .await;
    let (tb_id, tb_secret) = client(s, "tb", "tb-service").await;
    for (why, rb) in [
        (
            "DELETE ta's session on tb with ta's token",
            s.api(Method::DELETE, &format!("/api/v2/sessions/{a_sid}"), "tb")
                .bearer_auth(&a),
        ),
        (
            "DELETE tb's session on tb with ta's token",
            s.api(Method::DELETE, &format!("/api/v2/sessions/{b_sid}"), "tb")
                .bearer_auth(&a),
        ),
        (
            "DELETE others on tb with ta's token",
            s.api(Method::DELETE, "/api/v2/sessions?scope=others", "tb")
                .bearer_auth(&a),
        ),
        (
            "tb's client mints an internal token from ta's session",
            s.api(Method::POST, "/internal/v1/access-token", "tb")
                .basic_auth(&tb_id, Some(&tb_secret))
                .header("X-User-Session-Token", &a),
        ),
        (
            "tb's client mints an internal token on ta",
            s.api(Method::POST, "/internal/v1/access-token", "ta")
                .basic_auth(&tb_id, Some(&tb_secret))
                .header("X-User-Session-Token", &a),
        ),
    ] {
        let r = TestServer::send(rb).await;
        assert_eq!(r.status, 401, "{why}: {}", r.body);
        assert_eq!(r.body["code"], "tenant_mismatch", "{why}: {}", r.body);
    }
    // tb's alice (same username) cannot reach ta's session either.
    let r = TestServer::send(
        s.api(Method::DELETE, &format!("/api/v2/sessions/{a_sid}"), "tb")
            .bearer_auth(&b),
    )
    .await;
    r.problem(404, "not_found");
    let list = TestServer::send(s.api(Method::GET, "/api/v2/sessions", "tb").bearer_auth(&b)).await;
    assert!(!list.body.to_string().contains(&a_sid), "{}", list.body);
    // tb's client learns nothing about ta's tokens.
    assert_eq!(
        introspect(s, &tb_id, &tb_secret, &a).await.body,
        json!({"active": false})
    );
    // Two tenant headers: refused, not resolved to either.
    let r = TestServer::send(
        s.api(Method::GET, "/api/v2/session", "ta")
            .header("X-Tenant-ID", "tb")
            .bearer_auth(&a),
    )
    .await;
    r.problem(400, "invalid_header");
    w.assert_victims_alive().await;
    assert_eq!(s.whoami("tb", &b).await.status, 200);
}

#[tokio::test]
async fn attack_an_internal_access_token_is_refused_as_a_session_token() {
    let w = World::new().await;
    let s = &w.s;
    let (id, secret) = &w.client;
    let r = TestServer::send(
        s.api(Method::POST, "/internal/v1/access-token", "ta")
            .basic_auth(id, Some(secret))
            .header("X-User-Session-Token", w.token()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let internal = r.str("access_token");
    for (name, rb) in [
        ("whoami", s.api(Method::GET, "/api/v2/session", "ta")),
        ("sessions", s.api(Method::GET, "/api/v2/sessions", "ta")),
        (
            "logout-all",
            s.api(Method::POST, "/api/v2/auth/logout-all", "ta"),
        ),
        ("logout", s.api(Method::POST, "/api/v2/auth/logout", "ta")),
        (
            "revoke others",
            s.api(Method::DELETE, "/api/v2/sessions?scope=others", "ta"),
        ),
    ] {
        let r = TestServer::send(rb.bearer_auth(&internal)).await;
        assert_eq!(r.status, 401, "{name}: {}", r.body);
        assert_eq!(r.body["code"], "token_invalid", "{name}: {}", r.body);
    }
    // Chained: an internal token exchanged for another internal token.
    TestServer::send(
        s.api(Method::POST, "/internal/v1/access-token", "ta")
            .basic_auth(id, Some(secret))
            .header("X-User-Session-Token", &internal),
    )
    .await
    .problem(401, "token_invalid");
    s.refresh("ta", &internal)
        .await
        .problem(401, "refresh_token_invalid");
    // The guard behind it: no client may take the session tokens' audience.
    TestServer::send(
        s.admin(Method::POST, "/admin/v1/tenants/ta/clients")
            .json(&json!({"audience": "sessiond"})),
    )
    .await
    .problem(400, "invalid_request");
    w.assert_victims_alive().await;
}

#[tokio::test]
async fn attack_an_sso_token_is_refused_as_a_session_token() {
    let w = World::new().await;
    let s = &w.s;
    let r = TestServer::send(s.admin(Method::PUT, "/admin/v1/tenants/ta/sso").json(&json!({
        "issuer": "https://partner.example", "audience": "sessiond-sso", "hs256Secret": SSO_SECRET
    })))
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let key = EncodingKey::from_secret(SSO_SECRET.as_bytes());
    let sso_claims = json!({"sub": "partner-user", "jti": "sso-1", "exp": START + 300,
        "iat": START, "aud": "sessiond-sso", "iss": "https://partner.example"});
    let sso = encode(&Header::new(Algorithm::HS256), &sso_claims, &key).unwrap();
    w.assert_forgery_refused(&sso, "a genuine SSO token").await;
    // A partner who holds the SSO secret forges session claims with it.
    let (header, payload, _) = w.genuine();
    let mut h = header.clone();
    h["alg"] = json!("HS256");
    w.assert_forgery_refused(
        &hmac_token("HS256", SSO_SECRET.as_bytes(), &h, &payload),
        "session claims signed with the SSO secret, server kid",
    )
    .await;
    let mut p = sso_claims.clone();
    p.as_object_mut()
        .unwrap()
        .extend(payload.as_object().unwrap().clone());
    w.assert_forgery_refused(
        &encode(&Header::new(Algorithm::HS256), &p, &key).unwrap(),
        "session claims signed with the SSO secret, JWT header",
    )
    .await;
    // A partner trusted with an Ed25519 key signs session claims with it.
    let partner = attacker_key();
    w.assert_forgery_refused(
        &ed_token(&partner, &header, &payload),
        "session claims signed by a partner's Ed25519 key",
    )
    .await;
    // And a session token is no SSO token.
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/sso", "ta")
            .json(&json!({"ssoToken": w.token()})),
    )
    .await;
    r.problem(401, "sso_token_invalid");
    // The SSO token was a real one: it still works where it belongs (single use).
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/sso", "ta")
            .json(&json!({"ssoToken": sso})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    w.assert_victims_alive().await;
}

// ---- time ----------------------------------------------------------------------------------

#[tokio::test]
async fn attack_expired_tokens_are_refused() {
    let s = TestServer::start().await;
    s.tenant_with_user("te", "integration", json!({"sessionTokenTtl": 60}))
        .await;
    let (id, secret) = client(&s, "te", "te-service").await;
    let login = s.login_ok("te", "alice").await;
    let token = login.str("userSessionToken");
    assert_eq!(
        s.whoami("te", &token).await.status,
        200,
        "verified and cached"
    );
    s.clock.advance(59);
    assert_eq!(s.whoami("te", &token).await.status, 200, "one second left");
    s.clock.advance(1);
    for (name, rb) in [
        ("whoami", s.api(Method::GET, "/api/v2/session", "te")),
        ("sessions", s.api(Method::GET, "/api/v2/sessions", "te")),
        (
            "logout-all",
            s.api(Method::POST, "/api/v2/auth/logout-all", "te"),
        ),
        (
            "revoke others",
            s.api(Method::DELETE, "/api/v2/sessions?scope=others", "te"),
        ),
    ] {
        let r = TestServer::send(rb.bearer_auth(&token)).await;
        assert_eq!(r.body["code"], "token_expired", "{name}: {}", r.body);
        assert_eq!(r.status, 401);
    }
    TestServer::send(
        s.api(Method::POST, "/internal/v1/access-token", "te")
            .basic_auth(&id, Some(&secret))
            .header("X-User-Session-Token", &token),
    )
    .await
    .problem(401, "token_expired");
    assert_eq!(
        introspect(&s, &id, &secret, &token).await.body,
        json!({"active": false})
    );
    // A year later, still expired (no wrap-around, no cache resurrection).
    s.clock.advance(365 * 86_400);
    s.whoami("te", &token).await.problem(401, "token_expired");

    // A token never outlives its session's absolute lifetime.
    s.tenant_with_user(
        "tabs",
        "integration",
        json!({"absoluteTtl": 120, "idleTtl": 0}),
    )
    .await;
    let short = s.login_ok("tabs", "alice").await;
    assert!(
        short.body["expires_in"].as_i64().unwrap() <= 120,
        "{}",
        short.body
    );
    s.clock.advance(120);
    let r = s.whoami("tabs", &short.str("userSessionToken")).await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn attack_not_yet_valid_tokens_are_refused() {
    let s = TestServer::start().await;
    s.tenant_with_user("tn", "integration", json!({})).await;
    // Minted 31 s in the future (a node with a fast clock), presented now: nbf and iat are
    // beyond the 30 s leeway.
    s.clock.advance(31);
    let future = s.login_ok("tn", "alice").await.str("userSessionToken");
    s.clock.advance(-31);
    s.whoami("tn", &future).await.problem(401, "token_invalid");
    TestServer::send(
        s.api(Method::POST, "/api/v2/auth/logout", "tn")
            .bearer_auth(&future),
    )
    .await
    .problem(401, "token_invalid");
    // Within the documented leeway it passes; once its time has come, too.
    s.clock.advance(30);
    let skewed = s.login_ok("tn", "alice").await.str("userSessionToken");
    s.clock.advance(-30);
    assert_eq!(s.whoami("tn", &skewed).await.status, 200);
    s.clock.advance(31);
    assert_eq!(s.whoami("tn", &future).await.status, 200);
}

// ---- refresh tokens ------------------------------------------------------------------------

#[tokio::test]
async fn attack_refresh_token_reuse_outside_the_grace_window_revokes_the_session() {
    let s = TestServer::start().await;
    s.tenant_with_user("tr", "integration", json!({})).await;
    let login = s.login_ok("tr", "alice").await;
    let stolen = login.str("refreshToken");
    // The thief refreshes first and gets a live pair.
    let thief = s.refresh("tr", &stolen).await;
    assert_eq!(thief.status, 200);
    // The legitimate client retries after the grace window: reuse, the session dies, and
    // with it the thief's tokens.
    s.clock.advance(11);
    s.refresh("tr", &stolen)
        .await
        .problem(401, "refresh_token_reused");
    for t in [thief.str("userSessionToken"), login.str("userSessionToken")] {
        s.whoami("tr", &t).await.problem(401, "session_revoked");
    }
    let r = s.refresh("tr", &thief.str("refreshToken")).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let sid = login.str("sessionId");
    let events = s.audit("tr", &format!("sessionId={sid}")).await;
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "session_revoked" && e["reason"] == "reuse_detected"),
        "{events:?}"
    );
    // Within the grace window a repeat is idempotent: no second live refresh token (no fork).
    let l2 = s.login_ok("tr", "alice").await;
    let r0 = l2.str("refreshToken");
    let first = s.refresh("tr", &r0).await;
    s.clock.advance(5);
    let again = s.refresh("tr", &r0).await;
    assert_eq!(again.str("refreshToken"), first.str("refreshToken"));
    // Guessed and malformed refresh tokens: refused, never a 5xx.
    for guess in [
        "x".to_owned(),
        "A".repeat(43),
        "A".repeat(300),
        format!("{r0}x"),
        String::new(),
    ] {
        let r = s.refresh("tr", &guess).await;
        assert_eq!(r.status, 401, "{guess}: {}", r.body);
        assert_eq!(r.body["code"], "refresh_token_invalid", "{}", r.body);
    }
}

#[tokio::test]
async fn attack_refresh_tokens_of_another_tenant_are_refused() {
    let w = World::new().await;
    let s = &w.s;
    let ra = w.alice.str("refreshToken");
    s.refresh("tb", &ra)
        .await
        .problem(401, "refresh_token_invalid");
    // Not consumed by the attempt: it still rotates on its own tenant.
    let rotated = s.refresh("ta", &ra).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    // A rotated-out token replayed on another tenant after the grace window: invalid there,
    // and it does not trip reuse detection (which would revoke the session) across tenants.
    s.clock.advance(11);
    s.refresh("tb", &ra)
        .await
        .problem(401, "refresh_token_invalid");
    assert_eq!(
        s.whoami("ta", &rotated.str("userSessionToken"))
            .await
            .status,
        200
    );
    let next = s.refresh("ta", &rotated.str("refreshToken")).await;
    assert_eq!(next.status, 200, "{}", next.body);
}

// ---- session fixation and ownership --------------------------------------------------------

#[tokio::test]
async fn attack_session_fixation_every_login_gets_a_fresh_server_chosen_id() {
    let w = World::new().await;
    let s = &w.s;
    let chosen = "AAAAAAAAAAAAAAAAAAAAAA";
    let bob_sid = w.bob.str("sessionId");
    let mut seen = std::collections::HashSet::new();
    seen.insert(w.alice.str("sessionId"));
    seen.insert(bob_sid.clone());
    let mut previous = w.token();
    for fixed in [chosen, bob_sid.as_str()] {
        for _ in 0..3 {
            // The attacker-chosen id in X-Session-ID, and an existing session's token.
            let r = TestServer::send(
                s.api(Method::POST, "/api/v2/auth/login", "ta")
                    .header("X-Session-ID", fixed)
                    .bearer_auth(&previous)
                    .json(&json!({"username": "alice", "password": PASSWORD})),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.body);
            let sid = r.str("sessionId");
            assert_ne!(sid, fixed);
            assert!(
                seen.insert(sid.clone()),
                "a session id was handed out twice"
            );
            assert!(sid.len() >= 22, "128-bit ids: {sid}");
            let claims = json_of(r.str("userSessionToken").split('.').nth(1).unwrap());
            assert_eq!(claims["sid"], sid.as_str());
            let me = s.whoami("ta", &r.str("userSessionToken")).await;
            assert_eq!(me.body["sessionId"], sid.as_str());
            previous = r.str("userSessionToken");
        }
    }
    // Session id fields in bodies: refused (unknown member), never adopted.
    for field in ["sessionId", "sid", "session_id", "session"] {
        let mut body = json!({"username": "alice", "password": PASSWORD});
        body[field] = json!(chosen);
        let r = TestServer::send(s.api(Method::POST, "/api/v2/auth/login", "ta").json(&body)).await;
        if r.status == 200 {
            assert_ne!(r.str("sessionId"), chosen, "login adopted {field}");
        } else {
            r.problem(400, "invalid_request");
        }
        let mut body = json!({"refreshToken": w.alice.str("refreshToken")});
        body[field] = json!(bob_sid);
        let r = TestServer::send(
            s.api(Method::POST, "/api/v2/auth/refresh", "ta")
                .json(&body),
        )
        .await;
        if r.status == 200 {
            assert_eq!(
                r.str("sessionId"),
                w.alice.str("sessionId"),
                "refresh adopted {field}"
            );
        } else {
            r.problem(400, "invalid_request");
        }
    }
    // X-Session-ID names nothing: whoami with bob's id in it still answers for the token's.
    let me = TestServer::send(
        s.api(Method::GET, "/api/v2/session", "ta")
            .header("X-Session-ID", &bob_sid)
            .bearer_auth(w.token()),
    )
    .await;
    assert_eq!(me.body["sessionId"], w.alice.body["sessionId"]);
    assert_eq!(me.body["userId"], w.alice_id.as_str());
    let all = TestServer::send(s.admin(Method::GET, "/admin/v1/tenants/ta/sessions")).await;
    assert!(!all.body.to_string().contains(chosen), "{}", all.body);
}

#[tokio::test]
async fn attack_a_user_cannot_revoke_another_users_session_by_id() {
    let w = World::new().await;
    let s = &w.s;
    let bob_sid = w.bob.str("sessionId");
    let r = TestServer::send(
        s.api(Method::DELETE, &format!("/api/v2/sessions/{bob_sid}"), "ta")
            .bearer_auth(w.token()),
    )
    .await;
    r.problem(404, "not_found");
    // Indistinguishable from an id that does not exist (no oracle for others' session ids).
    let r = TestServer::send(
        s.api(
            Method::DELETE,
            "/api/v2/sessions/AAAAAAAAAAAAAAAAAAAAAA",
            "ta",
        )
        .bearer_auth(w.token()),
    )
    .await;
    r.problem(404, "not_found");
    let list = TestServer::send(
        s.api(Method::GET, "/api/v2/sessions", "ta")
            .bearer_auth(w.token()),
    )
    .await;
    assert!(!list.body.to_string().contains(&bob_sid), "{}", list.body);
    // alice's "revoke all my other sessions" and "log out everywhere" leave bob alone.
    let r = TestServer::send(
        s.api(Method::DELETE, "/api/v2/sessions?scope=others", "ta")
            .bearer_auth(w.token()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.whoami("ta", &w.bob.str("userSessionToken")).await.status,
        200
    );
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/logout-all", "ta")
            .bearer_auth(w.token()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.whoami("ta", &w.bob.str("userSessionToken")).await.status,
        200
    );
    // The operator endpoint is not reachable with a user's token.
    let r = TestServer::send(
        s.req(
            Method::DELETE,
            &format!("/admin/v1/tenants/ta/sessions/{bob_sid}"),
        )
        .bearer_auth(w.token()),
    )
    .await;
    assert!(r.status == 401 || r.status == 403, "{}", r.body);
    assert_eq!(
        s.whoami("ta", &w.bob.str("userSessionToken")).await.status,
        200
    );
}

#[tokio::test]
async fn attack_a_partner_secret_of_tenant_a_cannot_log_out_tenant_b_users() {
    let s = TestServer::start().await;
    s.tenant_with_user("pa", "integration", json!({})).await;
    s.tenant("pb", "integration", json!({})).await;
    let r = TestServer::send(
        s.admin(Method::POST, "/admin/v1/tenants/pb/users")
            .json(&json!({"username": "bob", "password": PASSWORD, "externalId": "ext-bob"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let bob_id = r.str("userId");
    let bob = s.login_ok("pb", "bob").await.str("userSessionToken");
    let secret = |tenant: &str| {
        let s = &s;
        let tenant = tenant.to_owned();
        async move {
            let r = TestServer::send(s.admin(
                Method::POST,
                &format!("/admin/v1/tenants/{tenant}/partner-secrets"),
            ))
            .await;
            assert_eq!(r.status, 201, "{}", r.body);
            (r.str("secretId"), r.str("secret"))
        }
    };
    let (_, a_secret) = secret("pa").await;
    let (b_id, b_secret) = secret("pb").await;
    let logout = |secret: String, user: String, tenant_header: Option<&'static str>| {
        let mut rb = s
            .req(Method::POST, "/v1/auth/partner/logout-user")
            .header("X-PARTNER-SECRET", secret)
            .json(&json!({"userId": user}));
        if let Some(t) = tenant_header {
            rb = rb.header("X-Tenant-ID", t);
        }
        TestServer::send(rb)
    };
    for user in [bob_id.clone(), "ext-bob".to_owned(), "bob".to_owned()] {
        for header in [None, Some("pb")] {
            let r = logout(a_secret.clone(), user.clone(), header).await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(
                r.body["revoked"], 0,
                "pa's secret reached pb's {user}: {}",
                r.body
            );
        }
    }
    assert_eq!(s.whoami("pb", &bob).await.status, 200);
    // pb's secret id with pa's random part; pa's secret with a changed last character.
    let a_random = a_secret.split_once('.').unwrap().1;
    let spliced = format!("{b_id}.{a_random}");
    let mut altered = a_secret.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    for forged in [
        spliced,
        altered,
        b_id.clone(),
        format!("{b_id}."),
        String::new(),
    ] {
        let r = logout(forged.clone(), bob_id.clone(), None).await;
        assert_eq!(r.status, 401, "{forged}: {}", r.body);
        assert_eq!(r.body["code"], "invalid_partner_secret", "{}", r.body);
    }
    assert_eq!(s.whoami("pb", &bob).await.status, 200);
    // A revoked secret is dead.
    let (old_id, old_secret) = secret("pb").await;
    let r = TestServer::send(s.admin(
        Method::DELETE,
        &format!("/admin/v1/tenants/pb/partner-secrets/{old_id}"),
    ))
    .await;
    assert_eq!(r.status, 204);
    logout(old_secret, bob_id.clone(), None)
        .await
        .problem(401, "invalid_partner_secret");
    assert_eq!(s.whoami("pb", &bob).await.status, 200);
    // Positive control: pb's own secret does reach bob.
    let r = logout(b_secret, "ext-bob".into(), None).await;
    assert_eq!(r.body["revoked"], 1, "{}", r.body);
    s.whoami("pb", &bob).await.problem(401, "session_revoked");
}

// ---- timing --------------------------------------------------------------------------------

async fn timed_login(s: &TestServer, username: &str, password: &str) -> (u16, Duration) {
    let rb = s
        .api(Method::POST, "/api/v2/auth/login", "tt")
        .json(&json!({"username": username, "password": password}));
    let started = Instant::now();
    let r = TestServer::send(rb).await;
    (r.status.as_u16(), started.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The Argon2 verifications a login caused, by parameters (m, t, p).
fn verifications_since(
    engine: &sessiond_core::Engine,
    before: &std::collections::BTreeMap<sessiond_core::password::Cost, u64>,
) -> Vec<(sessiond_core::password::Cost, u64)> {
    engine
        .hashing_stats()
        .verifications
        .into_iter()
        .map(|(cost, n)| (cost, n - before.get(&cost).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Unknown users must cost an Argon2 verification like a wrong password does, so login time
/// does not reveal which usernames exist. Exact: every kind of login (right password, wrong
/// password, unknown user, a username that cannot exist) causes exactly one full Argon2
/// verification, with the current parameters (the dummy hash uses them too), counted by the
/// server's hasher. Coarse, as a second line: per-kind median times over interleaved rounds,
/// where both kinds of failure take at least half a successful login's time (a round that
/// misses is measured again, three rounds at most: a server that skips Argon2 for unknown
/// users, ~1 ms against ~20+ ms, fails every round; a noisy machine does not fail all three).
/// The tenant has no per-account backoff or rate limit (and the test server no per-IP
/// limits), so every attempt reaches the password check and none is answered 429.
#[tokio::test]
async fn attack_login_timing_reveals_no_unknown_users() {
    use sessiond_core::password::Cost;
    let mut engine = None;
    let s = TestServer::start_with(|st| engine = Some(st.engine.clone())).await;
    let engine = engine.unwrap();
    s.tenant_with_user(
        "tt",
        "integration",
        json!({"loginBackoffAfter": 0, "loginRatePerMinute": 0}),
    )
    .await;
    let current = Cost {
        m: 19 * 1024,
        t: 2,
        p: 1,
    };
    assert_eq!(Cost::CURRENT, current);
    for (what, username, password, status) in [
        ("a right password", "alice", PASSWORD, 200),
        ("a wrong password", "alice", "wrong password", 401),
        ("an unknown user", "nobody", PASSWORD, 401),
        ("a username that cannot exist", "alice ", PASSWORD, 401),
        (
            "an unknown user, again",
            "nobody-else",
            "wrong password",
            401,
        ),
    ] {
        let before = engine.hashing_stats().verifications;
        let (got, _) = timed_login(&s, username, password).await;
        assert_eq!(got, status, "{what}");
        assert_eq!(
            verifications_since(&engine, &before),
            vec![(current, 1)],
            "{what}: a login must cost exactly one Argon2 verification with the current \
             parameters"
        );
    }

    let mut report = Vec::new();
    for round in 0..3 {
        let (mut ok, mut wrong, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
        let before = engine.hashing_stats().verifications;
        for i in 0..10 {
            let name = format!("nobody-{round}-{i}");
            let mut kinds = [0, 1, 2];
            kinds.rotate_left(i % 3);
            for k in kinds {
                let (status, t) = match k {
                    0 => timed_login(&s, "alice", PASSWORD).await,
                    1 => timed_login(&s, "alice", "wrong password").await,
                    _ => timed_login(&s, &name, PASSWORD).await,
                };
                let (expected, into) = match k {
                    0 => (200, &mut ok),
                    1 => (401, &mut wrong),
                    _ => (401, &mut unknown),
                };
                assert_eq!(status, expected, "round {round}, kind {k}");
                into.push(t);
            }
        }
        assert_eq!(verifications_since(&engine, &before), vec![(current, 30)]);
        let (ok, wrong, unknown) = (median(ok), median(wrong), median(unknown));
        if unknown * 2 >= ok && wrong * 2 >= ok {
            return;
        }
        report.push(format!(
            "round {round}: correct {ok:?}, wrong password {wrong:?}, unknown user {unknown:?}"
        ));
    }
    panic!(
        "a failed login is much faster than a successful one (no Argon2 for it?): {}",
        report.join("; ")
    );
}

// ---- a keyring of two algorithms -----------------------------------------------------------

/// whoami, logout-all and logout all refuse `token` with 401 `token_invalid`.
async fn assert_token_invalid(s: &TestServer, tenant: &str, token: &str, why: &str) {
    for (name, rb) in [
        ("whoami", s.api(Method::GET, "/api/v2/session", tenant)),
        (
            "logout-all",
            s.api(Method::POST, "/api/v2/auth/logout-all", tenant),
        ),
        ("logout", s.api(Method::POST, "/api/v2/auth/logout", tenant)),
    ] {
        let r = TestServer::send(rb.bearer_auth(token)).await;
        assert_eq!(r.status, 401, "{why}: {name} did not refuse: {}", r.body);
        assert_eq!(r.body["code"], "token_invalid", "{why}: {name}: {}", r.body);
    }
}

/// After a switch from EdDSA to ES256 the keyring publishes keys of both algorithms: a token
/// naming one key with the other key's algorithm (signed by the attacker in that algorithm,
/// or HMAC-signed with the EC public key) must be refused.
#[tokio::test]
async fn attack_kid_of_a_key_with_another_alg_in_a_mixed_keyring_is_refused() {
    use sessiond_core::token::Alg;
    let first = TestServer::start().await;
    first.tenant_with_user("ta", "integration", json!({})).await;
    let eddsa_token = first.login_ok("ta", "alice").await.str("userSessionToken");
    let s = first.restart_signing_with(Alg::ES256).await;
    let r = TestServer::send(s.admin(Method::POST, "/admin/v1/keys/rotate")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let es_token = s.login_ok("ta", "alice").await.str("userSessionToken");
    let es_header = json_of(es_token.split('.').next().unwrap());
    assert_eq!(es_header["alg"], "ES256");
    let payload = json_of(es_token.split('.').nth(1).unwrap());
    let jwks = TestServer::send(s.req(Method::GET, "/.well-known/jwks.json")).await;
    let keys = jwks.body["keys"].as_array().unwrap().clone();
    let ed_kid = keys.iter().find(|k| k["kty"] == "OKP").unwrap()["kid"].clone();
    let ec: Vec<&Value> = keys.iter().filter(|k| k["kty"] == "EC").collect();
    assert!(!ec.is_empty(), "{}", jwks.body);

    let rng = SystemRandom::new();
    let p256 = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(p256, &rng).unwrap();
    let attacker_ec =
        ring::signature::EcdsaKeyPair::from_pkcs8(p256, pkcs8.as_ref(), &rng).unwrap();
    let ec_token = |h: &Value, p: &Value| {
        let input = format!("{}.{}", seg(h), seg(p));
        let sig = attacker_ec.sign(&rng, input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(sig.as_ref()))
    };
    let attacker_ed = attacker_key();
    let mut forgeries = vec![
        (
            "ES256 naming the EdDSA key, attacker's P-256 signature".to_owned(),
            ec_token(
                &json!({"alg": "ES256", "typ": "at+jwt", "kid": ed_kid}),
                &payload,
            ),
        ),
        (
            "EdDSA naming the EdDSA key, attacker's Ed25519 signature".to_owned(),
            ed_token(
                &attacker_ed,
                &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": ed_kid}),
                &payload,
            ),
        ),
    ];
    for k in &ec {
        let kid = k["kid"].as_str().unwrap();
        let x = B64.decode(k["x"].as_str().unwrap()).unwrap();
        let y = B64.decode(k["y"].as_str().unwrap()).unwrap();
        forgeries.push((
            format!("EdDSA naming EC key {kid}, attacker's Ed25519 signature"),
            ed_token(
                &attacker_ed,
                &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}),
                &payload,
            ),
        ));
        forgeries.push((
            format!("ES256 naming EC key {kid}, attacker's P-256 signature"),
            ec_token(
                &json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}),
                &payload,
            ),
        ));
        let point = [&[4u8][..], &x, &y].concat();
        for (what, key) in [
            ("x||y", [x.clone(), y.clone()].concat()),
            ("uncompressed point", point),
            ("JWK", k.to_string().into_bytes()),
        ] {
            for alg in ["HS256", "HS512"] {
                let h = json!({"alg": alg, "typ": "at+jwt", "kid": kid});
                forgeries.push((
                    format!("{alg} with the EC key's {what}"),
                    hmac_token(alg, &key, &h, &payload),
                ));
            }
        }
    }
    // The genuine ES256 signature under a header that names the EdDSA key.
    let sig = es_token.rsplit('.').next().unwrap();
    let mut h = es_header.clone();
    h["kid"] = ed_kid.clone();
    forgeries.push((
        "genuine ES256 signature, EdDSA kid".into(),
        format!("{}.{}.{sig}", seg(&h), seg(&payload)),
    ));
    h["alg"] = json!("EdDSA");
    forgeries.push((
        "genuine ES256 signature, EdDSA kid and alg".into(),
        format!("{}.{}.{sig}", seg(&h), seg(&payload)),
    ));
    for (why, token) in &forgeries {
        assert_token_invalid(&s, "ta", token, why).await;
    }
    for t in [&eddsa_token, &es_token] {
        assert_eq!(
            s.whoami("ta", t).await.status,
            200,
            "genuine tokens still work"
        );
    }
}

// ---- forged with the server's own signing key ----------------------------------------------
//
// The attacks above keep the genuine signature or use a foreign key, so they stop at the
// signature check. These sign with the server's OWN key, so that only the one claim check
// under test stands between the forged token and a 200; each first shows that the same
// construction with the right claim is accepted (the control).

/// The master key testkit starts every node with.
fn server_master_key() -> sessiond_core::secret::MasterKey {
    sessiond_core::secret::MasterKey::parse(&"42".repeat(32)).unwrap()
}

/// The seconds past the leeway a claim in the future needs to be refused.
const LEEWAY: i64 = sessiond_core::token::NBF_LEEWAY;

/// What endpoints other than whoami must refuse a forged token.
#[derive(Clone, Copy, PartialEq)]
enum Also {
    /// sessions, logout-all, logout, the internal-token exchange, and introspection.
    Everything,
    /// The same without logout (which ends a session even with its own expired token).
    NotLogout,
    /// Only the endpoints that authenticate the session (whoami, sessions, logout-all,
    /// revoke others, the internal-token exchange), for a token whose session does not exist
    /// (logout of it is idempotent, introspection says inactive).
    Authenticating,
}

impl World {
    /// The server's signing key, opened from the store as `Keyring::load` does (the Ed25519
    /// seed sealed under the master key, the kid as associated data). Proven to be the key
    /// by reproducing the genuine token's signature byte for byte (Ed25519 is deterministic).
    async fn own_key(&self) -> Ed25519KeyPair {
        use sessiond_store::IdentityStore as _;
        let kid = self.kid().await;
        let stored = self.s.store.load_keys().await.unwrap();
        let key = stored.iter().find(|k| k.kid == kid).unwrap();
        assert_eq!(key.state, sessiond_store::KeyState::Signing);
        assert_eq!(key.alg, "EdDSA");
        let seed = server_master_key()
            .open(kid.as_bytes(), &key.sealed_private)
            .expect("the test master key opens the signing key");
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        let t = self.token();
        let (input, sig) = t.rsplit_once('.').unwrap();
        assert_eq!(B64.encode(pair.sign(input.as_bytes()).as_ref()), sig);
        pair
    }

    fn now(&self) -> i64 {
        use sessiond_core::Clock as _;
        self.s.clock.now()
    }

    /// The control: `GET /api/v2/session` on `tenant` accepts `token` (as the session its
    /// `sid` names).
    async fn assert_accepted(&self, tenant: &str, token: &str, why: &str) {
        let me = self.s.whoami(tenant, token).await;
        assert_eq!(me.status, 200, "control {why}: refused: {}", me.body);
        let claims = json_of(token.split('.').nth(1).unwrap());
        assert_eq!(me.body["sessionId"], claims["sid"], "control {why}");
        assert_eq!(me.body["userId"], claims["sub"], "control {why}");
    }

    /// `GET /api/v2/session` refuses `token` with 401 `code`, and so do the other endpoints
    /// that take a session token; introspection calls it inactive. Whoami first, so the main
    /// path meets the token before anything has cached it.
    async fn assert_claim_refused(
        &self,
        tenant: &str,
        token: &str,
        code: &str,
        also: Also,
        why: &str,
    ) {
        let s = &self.s;
        s.whoami(tenant, token).await.problem(401, code);
        let mut calls = vec![
            ("sessions", s.api(Method::GET, "/api/v2/sessions", tenant)),
            (
                "logout-all",
                s.api(Method::POST, "/api/v2/auth/logout-all", tenant),
            ),
            (
                "revoke others",
                s.api(Method::DELETE, "/api/v2/sessions?scope=others", tenant),
            ),
        ];
        if also == Also::Everything {
            calls.push(("logout", s.api(Method::POST, "/api/v2/auth/logout", tenant)));
        }
        for (name, rb) in calls {
            let r = TestServer::send(rb.bearer_auth(token)).await;
            assert_eq!(r.status, 401, "{why}: {name} did not refuse: {}", r.body);
            assert_eq!(r.body["code"], code, "{why}: {name}: {}", r.body);
        }
        let (id, secret) = &self.client;
        let r = TestServer::send(
            s.api(Method::POST, "/internal/v1/access-token", tenant)
                .basic_auth(id, Some(secret))
                .header("X-User-Session-Token", token),
        )
        .await;
        assert_eq!(r.status, 401, "{why}: internal token minted: {}", r.body);
        assert_eq!(r.body["code"], code, "{why}: internal token: {}", r.body);
        if also != Also::Authenticating {
            let r = introspect(s, id, secret, token).await;
            assert_eq!(r.body, json!({"active": false}), "{why}: introspection");
        }
    }
}

#[tokio::test]
async fn attack_own_key_forgery_with_another_typ_is_refused() {
    let w = World::new().await;
    let key = w.own_key().await;
    let (header, payload, _) = w.genuine();
    for typ in ["at+jwt", "application/at+jwt"] {
        let mut h = header.clone();
        h["typ"] = json!(typ);
        w.assert_accepted("ta", &ed_token(&key, &h, &payload), typ)
            .await;
    }
    for typ in [
        "JWT",
        "jwt",
        "application/jwt",
        "AT+JWT",
        "at+JWT",
        "application/AT+JWT",
        "id_token+jwt",
        "logout+jwt",
        "at+jwt ",
        "",
    ] {
        let mut h = header.clone();
        h["typ"] = json!(typ);
        w.assert_claim_refused(
            "ta",
            &ed_token(&key, &h, &payload),
            "token_invalid",
            Also::Everything,
            &format!("typ {typ:?}, server-signed"),
        )
        .await;
    }
    w.assert_victims_alive().await;
}

#[tokio::test]
async fn attack_own_key_forgery_with_another_issuer_or_audience_is_refused() {
    let w = World::new().await;
    let key = w.own_key().await;
    let (header, payload, _) = w.genuine();
    w.assert_accepted("ta", &ed_token(&key, &header, &payload), "genuine claims")
        .await;
    let aud = payload["aud"].as_str().unwrap().to_owned();
    for (claim, value) in [
        ("iss", "http://evil.example".to_owned()),
        ("iss", format!("{ISSUER}/")),
        ("iss", ISSUER.to_uppercase()),
        ("iss", String::new()),
        ("aud", "other-service".to_owned()),
        ("aud", "probe-service".to_owned()),
        ("aud", format!("{aud} ")),
        ("aud", String::new()),
    ] {
        let mut p = payload.clone();
        p[claim] = json!(value);
        w.assert_claim_refused(
            "ta",
            &ed_token(&key, &header, &p),
            "token_invalid",
            Also::Everything,
            &format!("{claim} {value:?}, server-signed"),
        )
        .await;
    }
    w.assert_victims_alive().await;
}

/// A server-signed token whose `sub` is not the user of the session its `sid` names: the
/// endpoints that authenticate refuse it. (Logout and introspection do not compare `sub`
/// with the session's user: such a token, could it be minted, would log out the session of
/// `sid` and introspect as active with the forged `sub`. Only the signing key can mint it.)
#[tokio::test]
async fn attack_own_key_forgery_with_another_users_sub_or_sid_is_refused() {
    let w = World::new().await;
    let key = w.own_key().await;
    let (header, payload, _) = w.genuine();
    let bob_sid = w.bob.str("sessionId");
    // Controls: alice's own claims, and bob's (his sub with his sid) re-signed.
    w.assert_accepted("ta", &ed_token(&key, &header, &payload), "alice")
        .await;
    let mut as_bob = payload.clone();
    as_bob["sub"] = json!(w.bob_id);
    as_bob["sid"] = json!(bob_sid);
    w.assert_accepted("ta", &ed_token(&key, &header, &as_bob), "bob")
        .await;
    for (why, sub, sid) in [
        (
            "bob's sub, alice's sid",
            json!(w.bob_id),
            payload["sid"].clone(),
        ),
        (
            "an unknown user, alice's sid",
            json!(uuid::Uuid::new_v4().to_string()),
            payload["sid"].clone(),
        ),
        ("alice's sub, bob's sid", json!(w.alice_id), json!(bob_sid)),
    ] {
        let mut p = payload.clone();
        p["sub"] = sub;
        p["sid"] = sid;
        // Logout and introspection compare `sub` with the session's user too.
        w.assert_claim_refused(
            "ta",
            &ed_token(&key, &header, &p),
            "token_invalid",
            Also::Everything,
            &format!("{why}, server-signed"),
        )
        .await;
        w.assert_victims_alive().await;
    }
    // A session that does not exist: refused where the session is needed; logout of it stays
    // idempotent (nothing to end).
    let mut p = payload.clone();
    p["sid"] = json!("AAAAAAAAAAAAAAAAAAAAAA");
    w.assert_claim_refused(
        "ta",
        &ed_token(&key, &header, &p),
        "token_invalid",
        Also::Authenticating,
        "alice's sub, a session that does not exist, server-signed",
    )
    .await;
    w.assert_victims_alive().await;
}

/// `tid` of another tenant: refused with `tenant_mismatch` on the tenant of the session, and
/// on the claimed tenant the session is not found; a session of tenant `tb` (cached, so the
/// store's per-tenant lookup is not what stops it) named in a token for `ta` is refused too.
#[tokio::test]
async fn attack_own_key_forgery_for_another_tenant_is_refused() {
    let w = World::new().await;
    let key = w.own_key().await;
    let (header, payload, _) = w.genuine();
    w.assert_accepted("ta", &ed_token(&key, &header, &payload), "tid ta")
        .await;
    let mut p = payload.clone();
    p["tid"] = json!("tb");
    let forged = ed_token(&key, &header, &p);
    w.assert_claim_refused(
        "ta",
        &forged,
        "tenant_mismatch",
        Also::Everything,
        "tid tb on ta",
    )
    .await;
    w.s.whoami("tb", &forged)
        .await
        .problem(401, "token_invalid");

    // tb's alice: her session is verified and cached on tb first.
    let tb = w.s.login_ok("tb", "alice").await;
    let tb_claims = json_of(tb.str("userSessionToken").split('.').nth(1).unwrap());
    assert_eq!(
        w.s.whoami("tb", &tb.str("userSessionToken")).await.status,
        200
    );
    let mut p = tb_claims.clone();
    w.assert_accepted("tb", &ed_token(&key, &header, &p), "tb's alice on tb")
        .await;
    p["tid"] = json!("ta");
    let forged = ed_token(&key, &header, &p);
    for _ in 0..2 {
        w.assert_claim_refused(
            "ta",
            &forged,
            "token_invalid",
            Also::NotLogout,
            "tb's session in a token for ta",
        )
        .await;
    }
    w.assert_victims_alive().await;
    assert_eq!(
        w.s.whoami("tb", &tb.str("userSessionToken")).await.status,
        200
    );
}

#[tokio::test]
async fn attack_own_key_forgery_not_yet_valid_is_refused() {
    let w = World::new().await;
    let key = w.own_key().await;
    let (header, payload, _) = w.genuine();
    let now = w.now();
    for claim in ["nbf", "iat"] {
        let mut p = payload.clone();
        p[claim] = json!(now + LEEWAY);
        w.assert_accepted(
            "ta",
            &ed_token(&key, &header, &p),
            &format!("{claim} at the leeway"),
        )
        .await;
        for ahead in [LEEWAY + 1, 3600, 86_400 * 365] {
            p[claim] = json!(now + ahead);
            w.assert_claim_refused(
                "ta",
                &ed_token(&key, &header, &p),
                "token_invalid",
                Also::Everything,
                &format!("{claim} {ahead} s ahead, server-signed"),
            )
            .await;
        }
    }
    w.assert_victims_alive().await;
}

#[tokio::test]
async fn attack_own_key_forgery_expired_is_refused() {
    let w = World::new().await;
    let key = w.own_key().await;
    let (header, payload, _) = w.genuine();
    let now = w.now();
    let mut p = payload.clone();
    p["exp"] = json!(now + 1);
    w.assert_accepted("ta", &ed_token(&key, &header, &p), "exp in 1 s")
        .await;
    for exp in [now, now - 1, now - 86_400, 0] {
        p["exp"] = json!(exp);
        w.assert_claim_refused(
            "ta",
            &ed_token(&key, &header, &p),
            "token_expired",
            Also::NotLogout,
            &format!("exp {exp} (now {now}), server-signed"),
        )
        .await;
    }
    w.assert_victims_alive().await;
}
