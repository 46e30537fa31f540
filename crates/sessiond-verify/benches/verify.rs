//! Verifications per second through the layer (an axum service called in-process, no network)
//! against the raw Ed25519 check (`verify_strict` over the signing input) of the same unique
//! tokens, in one run. The verifier follows a minimal in-process issuer (JWKS and a feed of
//! heartbeats on 127.0.0.1) so that the layer's path is the production one: signature, claims,
//! revocation lookup, freshness.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{HeaderValue, Request};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sessiond_verify::{ClientCredentials, Config, VerifiedClaims, Verifier, VerifyLayer};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Service, ServiceExt};

/// Unique tokens per round: every round verifies fresh ones (the verifier has no cache, and
/// none could help).
const TOKENS: usize = 250;
/// Rounds of (raw pass, layer pass) back to back; the ratio reported is the median of the
/// rounds' ratios, which a burst of load on the shared machine moves least.
const ROUNDS: usize = 61;
const NOW: i64 = 1_800_000_000;

struct FixedClock;
impl sessiond_verify::Clock for FixedClock {
    fn now(&self) -> i64 {
        NOW
    }
}

fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[11; 32])
}

fn tokens(round: usize) -> Vec<String> {
    let key = key();
    let header = B64.encode(r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}"#);
    (round * TOKENS..(round + 1) * TOKENS)
        .map(|i| {
            let claims = serde_json::json!({
                "iss": "http://sessiond.test", "aud": "sessiond",
                "sub": uuid::Uuid::new_v4(), "sid": format!("sid-{i}"), "tid": "t1",
                "cid": uuid::Uuid::new_v4(), "scope": "session", "jti": format!("jti-{i}"),
                "iat": NOW, "nbf": NOW, "exp": NOW + 600, "auth_time": NOW, "amr": ["pwd"]
            });
            let input = format!("{header}.{}", B64.encode(claims.to_string()));
            let sig = ed25519_dalek::Signer::sign(&key, input.as_bytes());
            format!("{input}.{}", B64.encode(sig.to_bytes()))
        })
        .collect()
}

/// A minimal issuer: the JWKS, and a feed that syncs then beats every 100 ms (raw HTTP/1.1,
/// one request per connection).
async fn issuer() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let jwks = serde_json::json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "k1",
        "x": B64.encode(key().verifying_key().as_bytes()),
    }]})
    .to_string();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let jwks = jwks.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if head.starts_with(b"GET /.well-known/jwks.json") {
                    let res = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                        jwks.len()
                    );
                    let _ = sock.write_all(res.as_bytes()).await;
                    return;
                }
                let start = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
                    id: 1\nevent: reset\ndata: {\"type\":\"reset\"}\n\n\
                    id: 2\nevent: synced\ndata: {\"type\":\"synced\"}\n\n";
                if sock.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let beat =
                        "id: 2\nevent: heartbeat\ndata: {\"type\":\"heartbeat\",\"now\":0}\n\n";
                    if sock.write_all(beat.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    base
}

fn raw_pass(tokens: &[String], key: &ed25519_dalek::VerifyingKey) -> Duration {
    let t0 = Instant::now();
    for t in tokens {
        let (input, sig) = t.rsplit_once('.').unwrap();
        let sig: [u8; 64] = B64.decode(sig).unwrap().try_into().unwrap();
        key.verify_strict(
            input.as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .unwrap();
    }
    t0.elapsed()
}

async fn layer_pass<S>(tokens: &[String], app: &mut S) -> Duration
where
    S: Service<Request<Body>, Response = axum::response::Response>,
    S::Error: std::fmt::Debug,
{
    // The request line and headers as a server would have parsed them.
    let headers: Vec<HeaderValue> = tokens
        .iter()
        .map(|t| HeaderValue::from_str(&format!("Bearer {t}")).unwrap())
        .collect();
    let t0 = Instant::now();
    for h in headers {
        let req = Request::get("/me")
            .header("authorization", h)
            .body(Body::empty())
            .unwrap();
        let res = app.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(res.status(), 200, "every token is accepted");
    }
    t0.elapsed()
}

/// Each token through both paths, one after the other (in alternating order), each call timed
/// on its own: drift in the machine's speed (a shared 2-core box) hits both paths alike.
async fn interleaved<S>(
    tokens: &[String],
    key: &ed25519_dalek::VerifyingKey,
    svc: &mut S,
) -> (Duration, Duration)
where
    S: Service<Request<Body>, Response = axum::response::Response>,
    S::Error: std::fmt::Debug,
{
    let (mut raw, mut layer) = (Duration::ZERO, Duration::ZERO);
    for (i, t) in tokens.iter().enumerate() {
        let one = std::slice::from_ref(t);
        if i % 2 == 0 {
            raw += raw_pass(one, key);
            layer += layer_pass(one, svc).await;
        } else {
            layer += layer_pass(one, svc).await;
            raw += raw_pass(one, key);
        }
    }
    (raw, layer)
}

async fn verifier_pass(tokens: &[String], v: &Verifier) -> Duration {
    let t0 = Instant::now();
    for t in tokens {
        v.verify(t).await.unwrap();
    }
    t0.elapsed()
}

fn main() {
    // The follower runs on the worker thread; the measured loop on this one.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let base = issuer().await;
        let cfg = Config::new(
            base,
            "http://sessiond.test",
            "sessiond",
            "t1",
            ClientCredentials {
                id: "bench".into(),
                secret: "bench-secret".into(),
            },
        )
        .with_clock(std::sync::Arc::new(FixedClock));
        let verifier = Verifier::start(cfg).await.unwrap();
        assert!(verifier.wait_current(Duration::from_secs(5)).await);
        // The layer around a bare service that reads the claims it stored: the headline ratio.
        let mut bare = tower::Layer::layer(
            &VerifyLayer::new(verifier.clone()),
            tower::service_fn(|req: Request<Body>| async move {
                let sid = req.extensions().get::<sessiond_verify::Claims>().map(|c| c.sid.len());
                assert!(sid.is_some());
                Ok::<_, std::convert::Infallible>(axum::response::Response::new(Body::empty()))
            }),
        );
        // The layer in an axum Router with the extractor, as an application uses it.
        let mut app = axum::Router::new()
            .route(
                "/me",
                axum::routing::get(|VerifiedClaims(c): VerifiedClaims| async move { c.sid }),
            )
            .layer(VerifyLayer::new(verifier.clone()));
        let public = key().verifying_key();
        let rounds: Vec<Vec<String>> = (0..=ROUNDS).map(tokens).collect();
        // Warm up both paths once.
        raw_pass(&rounds[ROUNDS], &public);
        layer_pass(&rounds[ROUNDS], &mut bare).await;
        layer_pass(&rounds[ROUNDS], &mut app).await;
        let (mut raw, mut layer) = (Duration::ZERO, Duration::ZERO);
        let mut ratios = Vec::with_capacity(ROUNDS);
        for tokens in &rounds[..ROUNDS] {
            let (r, l) = interleaved(tokens, &public, &mut bare).await;
            ratios.push(r.as_secs_f64() / l.as_secs_f64());
            raw += r;
            layer += l;
        }
        // The same tokens straight through `Verifier::verify` (no HTTP types): where the
        // layer's cost beyond the signature goes.
        let (mut direct, mut routed) = (Duration::MAX, Duration::MAX);
        for tokens in &rounds[..ROUNDS] {
            direct = direct.min(verifier_pass(tokens, &verifier).await);
            routed = routed.min(layer_pass(tokens, &mut app).await);
        }
        ratios.sort_by(f64::total_cmp);
        let per_sec = |d: Duration| TOKENS as f64 / d.as_secs_f64();
        let all = (ROUNDS * TOKENS) as f64;
        println!(
            "raw verify_strict: {:.0} verifications/s; through the layer: {:.0} verifications/s ({} unique tokens, interleaved); layer/raw {:.3} (per round of {TOKENS}: median {:.3}, min {:.3}, max {:.3})",
            all / raw.as_secs_f64(),
            all / layer.as_secs_f64(),
            ROUNDS * TOKENS,
            raw.as_secs_f64() / layer.as_secs_f64(),
            ratios[ROUNDS / 2],
            ratios[0],
            ratios[ROUNDS - 1],
        );
        println!(
            "Verifier::verify alone: {:.0}/s; layer in an axum Router with the extractor: {:.0}/s (best rounds)",
            per_sec(direct),
            per_sec(routed)
        );
        assert!(verifier.is_current(), "the layer ran on a current feed");
    });
}
