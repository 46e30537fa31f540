//! What the layer accepts and refuses, over HTTP, against one real node.

use crate::testkit::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use sessiond_verify::{Error, StalePolicy};
use std::time::{Duration, Instant};

fn payload(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(p).unwrap()).unwrap()
}

/// A token with sessiond's header and claims, signed by a key sessiond never published.
fn foreign(claims: &Value) -> String {
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let input = format!(
        "{}.{}",
        B64.encode(
            json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "not-a-sessiond-key"}).to_string()
        ),
        B64.encode(claims.to_string())
    );
    let sig = ed25519_dalek::Signer::sign(&key, input.as_bytes());
    format!("{input}.{}", B64.encode(sig.to_bytes()))
}

#[tokio::test]
async fn the_layer_accepts_live_tokens_and_refuses_tampered_expired_and_foreign_ones() {
    let node = Node::sqlite().await;
    let client = node.provision().await;
    let v = node
        .verifier(&node.base, &client, StalePolicy::FailClosed)
        .await;
    let rs = resource_server(v.clone()).await;
    let token = node.login().await;
    let claims = payload(&token);

    let ok = me(&rs, bearer(&token)).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    assert_eq!(ok.1["sid"], claims["sid"]);
    assert_eq!(ok.1["tid"], TENANT);
    let finhub = me(&rs, ("x-user-session-token", token.clone())).await;
    assert_eq!(finhub.0, 200, "the FinHub header works too: {}", finhub.1);

    let missing = me(&rs, ("x-other", "1".into())).await;
    assert_problem(&missing, 401, "missing_header");
    assert_problem(
        &me(&rs, ("authorization", format!("Basic {token}"))).await,
        401,
        "token_invalid",
    );

    // Tampered: alice's token with another user's id, the signature kept.
    let mut forged = claims.clone();
    forged["sub"] = json!(uuid::Uuid::new_v4());
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(forged.to_string()),
        parts[2]
    );
    let r = me(&rs, bearer(&tampered)).await;
    assert_problem(&r, 401, "token_invalid");
    assert!(r.2.contains_key("www-authenticate"));

    // A foreign kid: refused, and at most one JWKS refetch however often it is tried.
    for _ in 0..3 {
        assert_problem(
            &me(&rs, bearer(&foreign(&claims))).await,
            401,
            "token_invalid",
        );
    }

    // Expired: the shared clock moves past exp.
    let exp = claims["exp"].as_i64().unwrap();
    node.clock.set(exp);
    assert_eq!(v.verify(&token).await, Err(Error::TokenExpired));
    assert_problem(&me(&rs, bearer(&token)).await, 401, "token_expired");
}

#[tokio::test]
async fn a_logout_is_refused_within_a_second() {
    let node = Node::sqlite().await;
    let client = node.provision().await;
    let v = node
        .verifier(&node.base, &client, StalePolicy::FailClosed)
        .await;
    let rs = resource_server(v.clone()).await;
    let token = node.login().await;
    let other = node.login().await;
    assert!(v.verify(&token).await.is_ok());
    // Timed from before the logout request: the delay includes the logout itself.
    let t0 = Instant::now();
    node.logout(&token).await;
    let delay = loop {
        if v.verify(&token).await == Err(Error::SessionRevoked) {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", v.status());
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    println!("revocation delay (same node): {delay:?}");
    assert!(delay <= Duration::from_secs(1), "{delay:?}");
    assert_problem(&me(&rs, bearer(&token)).await, 401, "session_revoked");
    assert_eq!(
        me(&rs, bearer(&other)).await.0,
        200,
        "the other session lives"
    );
}
