//! Following the feed: key changes, a dropped connection, a silent feed.

use crate::proxy::Proxy;
use crate::testkit::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use reqwest::Method;
use sessiond_verify::{Error, StalePolicy, Verifier};
use std::time::{Duration, Instant};

pub fn kid(token: &str) -> String {
    let h = token.split('.').next().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&B64.decode(h).unwrap()).unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

/// Polls until `cond` holds; returns how long that took (fails after 3 s).
async fn within<F: std::future::Future<Output = bool>>(
    what: &str,
    v: &Verifier,
    mut cond: impl FnMut() -> F,
) -> Duration {
    let t0 = Instant::now();
    loop {
        if cond().await {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "{what}: {:?}",
            v.status()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_rotation_and_an_emergency_key_revocation_reach_the_verifier() {
    let node = Node::sqlite().await;
    let client = node.provision().await;
    let v = node
        .verifier(&node.base, &client, StalePolicy::FailClosed)
        .await;
    let old = node.login().await;
    assert_eq!(v.status().keys, 2, "signing and next keys");

    let (st, b) = node
        .admin(Method::POST, "/admin/v1/keys/rotate", None)
        .await;
    assert_eq!(st, 200, "{b}");
    let d = within("the rotation's new next key", &v, || async {
        v.status().keys == 3
    })
    .await;
    println!("key rotation reached the verifier in {d:?}");
    let new = node.login().await;
    assert_ne!(kid(&new), kid(&old));
    assert!(v.verify(&new).await.is_ok());
    assert!(
        v.verify(&old).await.is_ok(),
        "the retiring key still verifies"
    );

    let (st, b) = node
        .admin(
            Method::POST,
            &format!("/admin/v1/keys/{}/revoke", kid(&new)),
            None,
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let d = within("the revoked key is refused", &v, || async {
        v.verify(&new).await == Err(Error::TokenInvalid)
    })
    .await;
    println!("emergency key revocation reached the verifier in {d:?}");
    assert!(d <= Duration::from_secs(1), "{d:?}");
    assert!(v.verify(&old).await.is_ok(), "other keys are untouched");
}

#[tokio::test]
async fn the_feed_resumes_after_a_dropped_connection_without_missing_an_entry() {
    let node = Node::sqlite().await;
    let client = node.provision().await;
    let proxy = Proxy::start(&node.base).await;
    let v = node
        .verifier(&proxy.base, &client, StalePolicy::FailClosed)
        .await;
    let token = node.login().await;
    assert!(v.verify(&token).await.is_ok());
    let before = v.status();
    assert_eq!(before.resets, 1, "a first connection starts with a reset");
    assert!(before.cursor.is_some());

    // The connection drops and cannot come back; meanwhile the session ends.
    proxy.block_feed(true);
    proxy.cut();
    within("the verifier notices", &v, || async {
        !v.status().connected
    })
    .await;
    node.logout(&token).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.block_feed(false);

    within("the missed logout arrives", &v, || async {
        v.verify(&token).await == Err(Error::SessionRevoked)
    })
    .await;
    let after = v.status();
    assert!(after.connects > before.connects, "{after:?}");
    assert_eq!(
        after.resets, 1,
        "resumed from the cursor, not reset: {after:?}"
    );
    assert!(after.current);
}

#[tokio::test]
async fn a_silent_feed_fails_closed_then_recovers() {
    let node = Node::sqlite().await;
    let client = node.provision().await;
    let proxy = Proxy::start(&node.base).await;
    let v = node
        .verifier(&proxy.base, &client, StalePolicy::FailClosed)
        .await;
    let rs = resource_server(v.clone()).await;
    let token = node.login().await;
    assert_eq!(me(&rs, bearer(&token)).await.0, 200);

    proxy.block_feed(true);
    proxy.cut();
    let d = within("stale", &v, || async { !v.is_current() }).await;
    assert!(d <= Duration::from_millis(1500), "{d:?}");
    let r = me(&rs, bearer(&token)).await;
    assert_problem(&r, 503, "store_unavailable");
    assert_eq!(r.2["retry-after"], "1");

    proxy.block_feed(false);
    assert!(
        v.wait_current(Duration::from_secs(3)).await,
        "{:?}",
        v.status()
    );
    assert_eq!(me(&rs, bearer(&token)).await.0, 200);
}

#[tokio::test]
async fn a_silent_feed_falls_back_to_introspection_when_configured() {
    let node = Node::sqlite().await;
    let client = node.provision().await;
    let proxy = Proxy::start(&node.base).await;
    let v = node
        .verifier(&proxy.base, &client, StalePolicy::Introspect)
        .await;
    let token = node.login().await;

    proxy.block_feed(true);
    proxy.cut();
    within("stale", &v, || async { !v.is_current() }).await;
    assert!(v.verify(&token).await.is_ok(), "introspection says active");
    node.logout(&token).await;
    assert_eq!(
        v.verify(&token).await,
        Err(Error::SessionRevoked),
        "introspection says inactive at once"
    );
}
