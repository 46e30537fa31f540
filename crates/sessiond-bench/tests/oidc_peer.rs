//! node-oidc-provider, the bench's optional introspection peer (`peers/oidc-provider`): it
//! starts, issues an access token from the client_credentials grant, introspects it as active
//! and a bogus token as inactive, and is gone once dropped. Skipped (with a note) where `node`
//! is not on the PATH, or `npm` is missing while the peer's packages are not installed; the
//! first run installs them (`npm ci`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sessiond_bench::peer::{self, OidcPeer};

#[test]
fn the_peer_introspects_its_tokens_and_stops_when_dropped() {
    let dir = peer::default_dir();
    if let Some(why) = peer::unavailable(&dir) {
        eprintln!("skipped: node-oidc-provider cannot run here: {why}");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let p = OidcPeer::start(&dir, &|m| eprintln!("{m}")).unwrap();

    let tokens = rt.block_on(p.tokens(2, 2)).unwrap();
    assert_eq!(tokens.len(), 2);
    assert_ne!(tokens[0], tokens[1]);
    let v = rt.block_on(p.introspect(&tokens[0])).unwrap();
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["client_id"], p.client_id.as_str(), "{v}");
    let v = rt
        .block_on(p.introspect("not-a-token-the-provider-issued"))
        .unwrap();
    assert_eq!(v, serde_json::json!({ "active": false }));

    // The guard kills and reaps node: nothing listens on its port any more.
    let addr = p.addr;
    drop(p);
    assert!(std::net::TcpStream::connect(addr).is_err());
}
