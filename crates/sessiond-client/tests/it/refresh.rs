//! Automatic refresh: when it happens, that concurrent callers share one, and how an ended
//! session reaches every caller.

use crate::testkit::{Fault, PASSWORD, Proxy, START, TestServer};
use serde_json::json;
use sessiond_client::{Error, ErrorCode, TokenStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const REFRESH: &str = "/api/v2/auth/refresh";

#[tokio::test]
async fn a_fresh_token_is_served_without_asking_the_server() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let (client, _) = s.client("t1");
    let session = client.login("alice", PASSWORD).await.unwrap();
    s.clock.advance(2600);
    for _ in 0..10 {
        assert_eq!(client.token().await.unwrap(), session.session_token);
    }
    assert_eq!(
        s.all_seen().len(),
        3,
        "tenant, user, login: {:?}",
        s.all_seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_callers_cause_exactly_one_refresh() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let (client, store) = s.client("t1");
    let first = client.login("alice", PASSWORD).await.unwrap();
    // 3600 s tokens are due from 2880 s at the latest; still valid until 3600 s.
    s.clock.advance(3000);

    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.token().await })
        })
        .collect();
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap().unwrap());
    }

    let refreshes = s.seen(REFRESH);
    assert_eq!(refreshes.len(), 1, "{refreshes:?}");
    assert_eq!(refreshes[0].status, 200);
    let events = s
        .audit(
            "t1",
            &format!("sessionId={}&type=session_refreshed", first.session_id),
        )
        .await;
    assert_eq!(events.len(), 1, "one rotation, no grace replay: {events:?}");
    assert!(events[0]["reason"].is_null(), "{events:?}");

    let stored = store.load().unwrap().unwrap();
    assert_ne!(stored.session_token, first.session_token);
    assert_ne!(stored.refresh_token, first.refresh_token);
    assert!(tokens.iter().all(|t| *t == stored.session_token));
    assert_eq!(stored.expires_at, START + 3000 + 3600);
    // The new token works and is not due again.
    client.whoami().await.unwrap();
    assert_eq!(s.seen(REFRESH).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_calls_share_one_refresh() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let (client, _) = s.client("t1");
    let first = client.login("alice", PASSWORD).await.unwrap();
    s.clock.advance(3000);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.whoami().await })
        })
        .collect();
    for t in tasks {
        let me = t.await.unwrap().unwrap();
        assert_eq!(me.session.session_id, first.session_id);
        assert_eq!(me.token_expires_at, START + 3000 + 3600, "the new token");
    }
    assert_eq!(s.seen(REFRESH).len(), 1);
    let whoamis = s.seen("/api/v2/session");
    assert_eq!(whoamis.len(), 100);
    assert!(whoamis.iter().all(|w| w.status == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_session_reaches_every_waiter_once_as_relogin_required() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let (client, store) = s.client("t1");
    let first = client.login("alice", PASSWORD).await.unwrap();
    s.revoke("t1", &first.session_id).await;
    s.clock.advance(3000);

    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.token().await })
        })
        .collect();
    for t in tasks {
        match t.await.unwrap() {
            Err(Error::ReloginRequired {
                code: Some(ErrorCode::SessionRevoked),
            }) => {}
            other => panic!("want ReloginRequired(session_revoked), got {other:?}"),
        }
    }
    let refreshes = s.seen(REFRESH);
    assert_eq!(refreshes.len(), 1, "{refreshes:?}");
    assert_eq!(refreshes[0].status, 401);
    assert!(
        store.load().unwrap().is_none(),
        "the ended session is cleared"
    );

    // Later calls get the same answer without asking the server again.
    let e = client.whoami().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::SessionRevoked));
    assert!(e.is_relogin_required());
    assert_eq!(s.seen(REFRESH).len(), 1);
    assert!(s.seen("/api/v2/session").is_empty());

    // A new login starts over.
    let again = client.login("alice", PASSWORD).await.unwrap();
    assert_ne!(again.session_id, first.session_id);
    assert_eq!(client.token().await.unwrap(), again.session_token);
}

#[tokio::test]
async fn revocation_seen_by_a_call_with_a_fresh_token_ends_the_session() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let (phone, phone_store) = s.client("t1");
    let (laptop, laptop_store) = s.client("t1");
    phone.login("alice", PASSWORD).await.unwrap();
    laptop.login("alice", PASSWORD).await.unwrap();

    assert_eq!(laptop.logout_all().await.unwrap(), 2);
    assert!(laptop_store.load().unwrap().is_none());
    assert!(matches!(
        laptop.token().await,
        Err(Error::ReloginRequired { code: None })
    ));

    // The phone's token is not due: the server's answer to whoami ends it.
    match phone.whoami().await {
        Err(Error::ReloginRequired {
            code: Some(ErrorCode::SessionRevoked),
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(phone_store.load().unwrap().is_none());
    assert!(matches!(
        phone.token().await,
        Err(Error::ReloginRequired {
            code: Some(ErrorCode::SessionRevoked)
        })
    ));
}

#[tokio::test]
async fn a_token_the_server_calls_expired_is_refreshed_and_the_call_retried() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({"idleTtl": 0}))
        .await;
    // The client's clock falls behind the server's by 3700 s after login.
    let lag = Arc::new(AtomicI64::new(0));
    let (server_clock, l) = (s.clock.clone(), lag.clone());
    let client = s
        .builder("t1")
        .clock(move || {
            use sessiond_core::Clock;
            server_clock.now() - l.load(Ordering::SeqCst)
        })
        .build()
        .unwrap();
    client.login("alice", PASSWORD).await.unwrap();
    s.clock.advance(3700);
    lag.store(3700, Ordering::SeqCst);

    let me = client.whoami().await.unwrap();
    assert_eq!(me.token_expires_at, START + 3700 + 3600);
    let whoamis = s.seen("/api/v2/session");
    assert_eq!(
        whoamis.iter().map(|w| w.status).collect::<Vec<_>>(),
        [401, 200]
    );
    assert_eq!(whoamis[0].activity, whoamis[1].activity, "one flow");
    assert_eq!(s.seen(REFRESH).len(), 1);
}

#[tokio::test]
async fn a_server_that_is_away_costs_nothing_while_the_token_lasts() {
    let mut s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let (client, store) = s.client("t1");
    let first = client.login("alice", PASSWORD).await.unwrap();
    s.stop();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    s.clock.advance(3000);
    assert_eq!(client.token().await.unwrap(), first.session_token);
    s.clock.advance(700);
    let e = client.token().await.unwrap_err();
    assert!(matches!(e, Error::Http(_)), "{e:?}");
    assert_eq!(store.load().unwrap(), Some(first), "kept for the next try");
}

#[tokio::test]
async fn without_refresh_tokens_the_session_ends_with_its_token() {
    let s = TestServer::start().await;
    s.tenant_with_user("play", "playground", json!({})).await;
    let (client, store) = s.client("play");
    let first = client.login("alice", PASSWORD).await.unwrap();
    assert!(first.refresh_token.is_none());
    s.clock.advance(9000);
    assert_eq!(client.token().await.unwrap(), first.session_token);
    s.clock.advance(1000);
    assert!(matches!(
        client.token().await,
        Err(Error::ReloginRequired {
            code: Some(ErrorCode::TokenExpired)
        })
    ));
    assert!(store.load().unwrap().is_none());
    assert!(s.seen(REFRESH).is_empty());
}

#[tokio::test]
async fn a_caller_that_gives_up_does_not_cut_a_refresh_off() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let (client, store) = s.client("t1");
    let first = client.login("alice", PASSWORD).await.unwrap();
    s.clock.advance(3000);
    // Polled once, then dropped: the refresh it started runs to its end all the same.
    let gave_up = tokio::time::timeout(std::time::Duration::ZERO, client.token()).await;
    assert!(gave_up.is_err());
    let mut waited = 0;
    while store.load().unwrap().unwrap().session_token == first.session_token {
        assert!(waited < 500, "the refresh never landed");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    let refreshed = store.load().unwrap().unwrap();
    assert_eq!(client.token().await.unwrap(), refreshed.session_token);
    assert_eq!(s.seen(REFRESH).len(), 1);
}

/// The audit trail's refresh events of a session: (rotations, grace replays, reuses).
async fn refresh_events(s: &TestServer, session_id: &str) -> (usize, usize, usize) {
    let refreshed = s
        .audit(
            "t1",
            &format!("sessionId={session_id}&type=session_refreshed"),
        )
        .await;
    let replays = refreshed
        .iter()
        .filter(|e| e["reason"] == "grace_replay")
        .count();
    let reused = s
        .audit(
            "t1",
            &format!("sessionId={session_id}&type=refresh_token_reused"),
        )
        .await;
    (refreshed.len() - replays, replays, reused.len())
}

#[tokio::test]
async fn a_lost_refresh_answer_is_sent_again_within_the_grace_window() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let proxy = Proxy::start(&s, REFRESH).await;
    let (client, store) = proxy.client(&s, "t1");
    let first = client.login("alice", PASSWORD).await.unwrap();
    s.clock.advance(3000);

    // The server rotates, then the answer is lost on the way back.
    proxy.push(Fault::Drop);
    let token = client.token().await.unwrap();
    assert_ne!(token, first.session_token);
    let refreshes = s.seen(REFRESH);
    assert_eq!(refreshes.len(), 2, "{refreshes:?}");
    assert!(refreshes.iter().all(|r| r.status == 200));
    assert_eq!(refreshes[0].activity, refreshes[1].activity, "one flight");
    assert_eq!(
        refresh_events(&s, &first.session_id).await,
        (1, 1, 0),
        "one rotation, its grace replay, no reuse"
    );
    let stored = store.load().unwrap().unwrap();
    assert_eq!(stored.session_token, token);
    assert_ne!(stored.refresh_token, first.refresh_token);

    // The session works, and so does its refresh token, long after the grace window.
    client.whoami().await.unwrap();
    s.clock.advance(3000);
    client.refresh().await.unwrap();
    client.whoami().await.unwrap();
    assert_eq!(refresh_events(&s, &first.session_id).await, (2, 1, 0));
}

#[tokio::test]
async fn a_gateway_error_after_the_rotation_is_retried_even_with_an_expired_token() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({"idleTtl": 0}))
        .await;
    let proxy = Proxy::start(&s, REFRESH).await;
    let (client, _) = proxy.client(&s, "t1");
    let first = client.login("alice", PASSWORD).await.unwrap();
    s.clock.advance(3700);

    proxy.push(Fault::BadGateway);
    let me = client.whoami().await.unwrap();
    assert_eq!(me.token_expires_at, START + 3700 + 3600);
    assert_eq!(s.seen(REFRESH).len(), 2);
    assert_eq!(refresh_events(&s, &first.session_id).await, (1, 1, 0));
}

#[tokio::test]
async fn a_refresh_that_times_out_is_retried() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let proxy = Proxy::start(&s, REFRESH).await;
    // The proxy's clients give a refresh attempt 300 ms.
    let (client, _) = proxy.client(&s, "t1");
    let first = client.login("alice", PASSWORD).await.unwrap();
    s.clock.advance(3000);

    proxy.push(Fault::Stall);
    let token = client.token().await.unwrap();
    assert_ne!(token, first.session_token);
    assert_eq!(s.seen(REFRESH).len(), 2);
    assert_eq!(refresh_events(&s, &first.session_id).await, (1, 1, 0));
    client.whoami().await.unwrap();
}

#[tokio::test]
async fn after_two_retries_the_failure_is_returned_and_the_session_kept() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({"idleTtl": 0}))
        .await;
    let proxy = Proxy::start(&s, REFRESH).await;
    let (client, store) = proxy.client(&s, "t1");
    let first = client.login("alice", PASSWORD).await.unwrap();
    s.clock.advance(3700);

    for _ in 0..4 {
        proxy.push(Fault::Drop);
    }
    let e = client.token().await.unwrap_err();
    assert!(matches!(e, Error::Http(_)), "{e:?}");
    assert_eq!(
        s.seen(REFRESH).len(),
        3,
        "the first attempt and two retries"
    );
    assert_eq!(proxy.pending(), 1);
    assert_eq!(store.load().unwrap(), Some(first.clone()), "kept");

    // The next call, still within the grace window, gets the pair (after one more loss).
    let token = client.token().await.unwrap();
    assert_ne!(token, first.session_token);
    assert_eq!(s.seen(REFRESH).len(), 5);
    assert_eq!(refresh_events(&s, &first.session_id).await, (1, 4, 0));
    client.whoami().await.unwrap();
}
