//! The end-user calls: what they send, what they return, how errors arrive.

use crate::testkit::{Fault, PASSWORD, Proxy, TestServer};
use axum::http::{StatusCode, Uri, header};
use serde_json::json;
use sessiond_client::{Client, DeviceRequest, Error, ErrorCode, LoginRequest, TokenStore};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[tokio::test]
async fn a_wrong_password_is_a_typed_problem() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let (client, store) = s.client("t1");
    let e = client.login("alice", "wrong").await.unwrap_err();
    match &e {
        Error::Api {
            status: 401,
            problem,
        } => {
            assert_eq!(problem.code, ErrorCode::InvalidCredentials);
            assert_eq!(problem.status, 401);
            let sent = &s.seen("/api/v2/auth/login")[0];
            assert_eq!(Some(&problem.activity_id), sent.activity.as_ref());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.code(), Some(ErrorCode::InvalidCredentials));
    assert!(!e.is_relogin_required());
    assert!(store.load().unwrap().is_none());

    let (stranger, _) = s.client("nope");
    let e = stranger.login("alice", PASSWORD).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownTenant), "{e:?}");
}

#[tokio::test]
async fn every_call_sends_the_tenant_and_its_own_activity_id() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let (client, _) = s.client("t1");
    let session = client.login("alice", PASSWORD).await.unwrap();
    client.whoami().await.unwrap();
    client.sessions().await.unwrap();
    client.refresh().await.unwrap();
    client.whoami().await.unwrap();
    client.logout().await.unwrap();

    let calls: Vec<_> = s
        .all_seen()
        .into_iter()
        .filter(|c| c.path.starts_with("/api/"))
        .collect();
    let routes: Vec<_> = calls
        .iter()
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    assert_eq!(
        routes,
        [
            "POST /api/v2/auth/login",
            "GET /api/v2/session",
            "GET /api/v2/sessions",
            "POST /api/v2/auth/refresh",
            "GET /api/v2/session",
            "POST /api/v2/auth/logout",
        ]
    );
    assert!(calls.iter().all(|c| c.tenant.as_deref() == Some("t1")));
    let ids: HashSet<_> = calls
        .iter()
        .map(|c| uuid::Uuid::parse_str(c.activity.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(ids.len(), 6, "a fresh activity id per flow: {calls:?}");

    // The server's audit trail carries them.
    let events = s
        .audit("t1", &format!("sessionId={}", session.session_id))
        .await;
    let audited: HashSet<_> = events
        .iter()
        .filter_map(|e| e["activityId"].as_str())
        .map(|a| uuid::Uuid::parse_str(a).unwrap())
        .collect();
    assert!(audited.len() >= 3 && audited.is_subset(&ids), "{events:?}");
}

#[tokio::test]
async fn tokens_never_appear_in_debug_output() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let (client, store) = s.client("t1");
    let session = client
        .login_with(LoginRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
            device: Some(DeviceRequest {
                label: Some("test rig".into()),
            }),
            mode: Default::default(),
        })
        .await
        .unwrap();
    let token = client.token().await.unwrap();
    let refresh = session.refresh_token.clone().unwrap();
    let printed = format!(
        "{session:?} {session:#?} {client:?} {token:?} {store:?} {:?}",
        store.load().unwrap()
    );
    for secret in [token.expose(), refresh.expose(), PASSWORD] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(printed.contains(&session.session_id));
    let me = client.whoami().await.unwrap();
    assert_eq!(me.session.device.label.as_deref(), Some("test rig"));
}

#[tokio::test]
async fn session_list_and_revocations() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let (phone, _) = s.client("t1");
    let (laptop, laptop_store) = s.client("t1");
    let (tablet, _) = s.client("t1");
    let p = phone.login("alice", PASSWORD).await.unwrap();
    let l = laptop.login("alice", PASSWORD).await.unwrap();
    tablet.login("alice", PASSWORD).await.unwrap();

    let list = phone.sessions().await.unwrap();
    assert_eq!(list.len(), 3);
    let current: Vec<_> = list.iter().filter(|v| v.current == Some(true)).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].session_id, p.session_id);

    phone.revoke_session(&l.session_id).await.unwrap();
    assert_eq!(
        laptop.whoami().await.unwrap_err().code(),
        Some(ErrorCode::SessionRevoked)
    );
    assert!(laptop_store.load().unwrap().is_none());

    let e = phone.revoke_session("no-such-session").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e:?}");
    assert!(phone.session().unwrap().is_some(), "a 404 ends nothing");

    assert_eq!(phone.revoke_other_sessions().await.unwrap(), 1);
    assert!(tablet.whoami().await.unwrap_err().is_relogin_required());

    phone.revoke_session(&p.session_id).await.unwrap();
    assert!(phone.session().unwrap().is_none());
    assert!(matches!(
        phone.token().await,
        Err(Error::ReloginRequired { code: None })
    ));
}

#[tokio::test]
async fn logout_revokes_and_forgets() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({"idleTtl": 0}))
        .await;
    let (client, store) = s.client("t1");
    let session = client.login("alice", PASSWORD).await.unwrap();
    // Even with an expired token: the server accepts the session's own.
    s.clock.advance(3700);
    client.logout().await.unwrap();
    assert!(store.load().unwrap().is_none());
    assert!(s.seen("/api/v2/auth/refresh").is_empty());
    let revoked = s
        .audit(
            "t1",
            &format!("sessionId={}&type=session_revoked", session.session_id),
        )
        .await;
    assert_eq!(revoked[0]["reason"], "logout");
    client.logout().await.unwrap();
    assert_eq!(
        s.seen("/api/v2/auth/logout").len(),
        1,
        "nothing left to log out"
    );
}

#[tokio::test]
async fn a_base_url_with_a_path_prefix_and_a_trailing_slash() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let client = Client::builder(format!("{}/", s.base), "t1")
        .build()
        .unwrap();
    let e = client.login("alice", "wrong").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidCredentials));
    assert_eq!(s.seen("/api/v2/auth/login").len(), 1);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    for status in [
        StatusCode::TEMPORARY_REDIRECT,
        StatusCode::PERMANENT_REDIRECT,
    ] {
        // Sends everything on to the real server, body and all, if followed.
        let target = s.base.clone();
        let redirect = axum::Router::new().fallback(move |uri: Uri| async move {
            (status, [(header::LOCATION, format!("{target}{uri}"))])
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, redirect).await });

        let client = Client::new(&base, "t1").unwrap();
        let e = client.login("alice", PASSWORD).await.unwrap_err();
        match e {
            Error::UnexpectedStatus { status: got } => assert_eq!(got, status.as_u16()),
            other => panic!("{other:?}"),
        }
        assert!(client.session().unwrap().is_none());
        assert!(
            s.seen("/api/v2/auth/login").is_empty(),
            "the password went nowhere"
        );
    }
}

#[tokio::test]
async fn logout_waits_for_a_refresh_in_flight_and_stays_logged_out() {
    const REFRESH: &str = "/api/v2/auth/refresh";
    const LOGOUT: &str = "/api/v2/auth/logout";
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let proxy = Proxy::start(&s, REFRESH).await;
    let (client, store) = proxy.client(&s, "t1");
    let first = client.login("alice", PASSWORD).await.unwrap();

    // A refresh the server has done, its answer held on the way back.
    let release = Arc::new(Notify::new());
    proxy.push(Fault::Hold(release.clone()));
    let refreshing = tokio::spawn({
        let c = client.clone();
        async move { c.refresh().await }
    });
    let mut waited = 0;
    while s.seen(REFRESH).is_empty() {
        assert!(waited < 500, "the refresh never reached the server");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    let logging_out = tokio::spawn({
        let c = client.clone();
        async move { c.logout().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(s.seen(LOGOUT).is_empty(), "logout waits for the flight");

    release.notify_one();
    let refreshed = refreshing.await.unwrap().unwrap();
    assert_eq!(refreshed.session_id, first.session_id);
    logging_out.await.unwrap().unwrap();

    assert!(store.load().unwrap().is_none());
    assert!(matches!(
        client.token().await,
        Err(Error::ReloginRequired { code: None })
    ));
    assert_eq!(s.seen(REFRESH).len(), 1, "no refresh after the logout");
    let revoked = s
        .audit(
            "t1",
            &format!("sessionId={}&type=session_revoked", first.session_id),
        )
        .await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["reason"], "logout");
}

/// Step-up through the client: a stale session is asked to re-authenticate before ending the
/// others; after `reauthenticate` the stored token carries the new `auth_time` and the
/// refresh token still works.
#[tokio::test]
async fn reauthentication_renews_the_stored_token_and_keeps_the_refresh_token() {
    use sessiond_client::ReauthenticateRequest;
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({"reauthMaxAge": 60}))
        .await;
    let (phone, store) = s.client("t1");
    let (laptop, _) = s.client("t1");
    let first = phone.login("alice", PASSWORD).await.unwrap();
    laptop.login("alice", PASSWORD).await.unwrap();
    s.clock.advance(61);
    let e = phone.revoke_other_sessions().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ReauthenticationRequired), "{e:?}");
    let wrong = phone
        .reauthenticate(ReauthenticateRequest {
            password: Some("not the password".into()),
            sso_token: None,
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Some(ErrorCode::InvalidCredentials));
    assert!(
        phone.session().unwrap().is_some(),
        "a wrong password ends nothing"
    );
    let fresh = phone
        .reauthenticate(ReauthenticateRequest {
            password: Some(PASSWORD.into()),
            sso_token: None,
        })
        .await
        .unwrap();
    assert_eq!(fresh.session_id, first.session_id);
    assert_eq!(store.load().unwrap().unwrap().session_id, first.session_id);
    assert!(fresh.refresh_token.is_some(), "the refresh token stays");
    assert_eq!(phone.revoke_other_sessions().await.unwrap(), 1);
    assert!(laptop.whoami().await.unwrap_err().is_relogin_required());
    phone.refresh().await.unwrap();
}
