//! Two nodes on one PostgreSQL schema: the verifier follows node B; the logout happens on
//! node A.

use crate::testkit::*;
use sessiond_core::ManualClock;
use sessiond_verify::{Error, StalePolicy};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                &postgres_url(),
                "-qc",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn schema() -> Schema {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Schema(format!("sessiond_t_{secs}_{}_verify", std::process::id()))
}

#[tokio::test]
async fn a_logout_on_another_node_is_refused_within_a_second() {
    let schema = schema();
    let clock = Arc::new(ManualClock::new(START));
    let a = Node::postgres(&schema.0, clock.clone()).await;
    let b = Node::postgres(&schema.0, clock).await;
    let client = a.provision().await;
    let v = b.verifier(&b.base, &client, StalePolicy::FailClosed).await;
    let rs = resource_server(v.clone()).await;
    let token = a.login().await;
    assert_eq!(me(&rs, bearer(&token)).await.0, 200);

    // Timed from before the logout request: the delay includes the logout itself.
    let t0 = Instant::now();
    a.logout(&token).await;
    let delay = loop {
        if v.verify(&token).await == Err(Error::SessionRevoked) {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", v.status());
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    println!("revocation delay (logout on node A, verifier on node B): {delay:?}");
    assert!(delay <= Duration::from_secs(1), "{delay:?}");
    assert_problem(&me(&rs, bearer(&token)).await, 401, "session_revoked");

    // An emergency key revocation on node A reaches the verifier following node B.
    let fresh = a.login().await;
    assert_eq!(me(&rs, bearer(&fresh)).await.0, 200);
    let kid = crate::feed::kid(&fresh);
    let t0 = Instant::now();
    let (st, b) = a
        .admin(
            reqwest::Method::POST,
            &format!("/admin/v1/keys/{kid}/revoke"),
            None,
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let delay = loop {
        if v.verify(&fresh).await == Err(Error::TokenInvalid) {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", v.status());
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    println!("key revocation delay (revoked on node A, verifier on node B): {delay:?}");
    assert!(delay <= Duration::from_secs(1), "{delay:?}");
}
