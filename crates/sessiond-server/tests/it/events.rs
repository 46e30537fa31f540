//! Session events over real HTTP: every end of a session reaches each registered receiver
//! once — an OpenID Connect back-channel logout token per client, a CAEP `session-revoked`
//! SET per tenant — verified with an outside JOSE library (jsonwebtoken) against the JWKS;
//! retried when a receiver fails; refused addresses; and an event token is no session token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::{Reply, TestServer};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use reqwest::Method;
use serde_json::{Value, json};
use sessiond_core::dispatch::Options;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BCL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const REVOKED_EVENT: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

#[derive(Debug, Clone)]
struct Got {
    path: String,
    content_type: String,
    body: String,
}

/// A local receiver: records every POST; answers `fail_with` to the first `fail_first`.
#[derive(Clone)]
struct Inbox {
    base: String,
    got: Arc<Mutex<Vec<Got>>>,
    fail_first: Arc<AtomicUsize>,
    fail_with: Arc<Mutex<StatusCode>>,
}

impl Inbox {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let inbox = Inbox {
            base: format!("http://{}", listener.local_addr().unwrap()),
            got: Arc::default(),
            fail_first: Arc::default(),
            fail_with: Arc::new(Mutex::new(StatusCode::SERVICE_UNAVAILABLE)),
        };
        async fn take(
            State(inbox): State<Inbox>,
            uri: Uri,
            headers: HeaderMap,
            body: String,
        ) -> StatusCode {
            inbox.got.lock().unwrap().push(Got {
                path: uri.path().to_owned(),
                content_type: headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
                body,
            });
            if inbox
                .fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return *inbox.fail_with.lock().unwrap();
            }
            if uri.path() == "/caep" {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            }
        }
        let app = axum::Router::new()
            .fallback(axum::routing::post(take))
            .with_state(inbox.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        inbox
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived (at most 10 s), then a little longer for extras.
    async fn until(&self, n: usize) -> Vec<Got> {
        for _ in 0..1000 {
            if self.got().len() >= n {
                tokio::time::sleep(Duration::from_millis(300)).await;
                return self.got();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{} requests arrived, expected {n}: {:?}",
            self.got().len(),
            self.got()
        );
    }
}

fn quick() -> Options {
    Options {
        first_retry: Duration::from_millis(50),
        attempts: 4,
        renew: Duration::from_millis(100),
        ..Options::default()
    }
}

async fn client(s: &TestServer, tenant: &str, id: &str, uri: Option<String>) -> Reply {
    TestServer::send(
        s.admin(Method::POST, &format!("/admin/v1/tenants/{tenant}/clients"))
            .json(&json!({"clientId": id, "backchannelLogoutUri": uri})),
    )
    .await
}

/// The token of a received request: the form's `logout_token`, or the SET body.
fn token_of(g: &Got) -> String {
    match g.body.strip_prefix("logout_token=") {
        Some(t) => t.to_owned(),
        None => g.body.clone(),
    }
}

/// Verifies `token` with jsonwebtoken against the server's JWKS; returns (typ, claims).
async fn verify(s: &TestServer, token: &str, aud: &str) -> (String, Value) {
    let jwks: JwkSet = s
        .http
        .get(format!("{}/.well-known/jwks.json", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_audience(&[aud]);
    v.set_issuer(&[sessiond_testkit::ISSUER]);
    v.set_required_spec_claims(&["iss", "aud", "iat"]);
    // The server's clock is a test clock ahead of this machine's.
    v.validate_exp = false;
    let data =
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v).unwrap();
    (header.typ.unwrap_or_default(), data.claims)
}

fn session_of(r: &Reply) -> (String, String, String) {
    (
        r.str("sessionId"),
        r.str("userSessionToken"),
        r.str("refreshToken"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_session_end_reaches_each_receiver_once() {
    let s = TestServer::start_with_events(quick()).await;
    let rx = Inbox::start().await;
    let caep = format!("{}/caep", rx.base);
    let alice = s
        .tenant_with_user(
            "ev",
            "integration",
            json!({"caepReceiverUrl": caep, "refreshGraceSeconds": 0}),
        )
        .await;
    for id in ["app1", "app2"] {
        let r = client(&s, "ev", id, Some(format!("{}/bcl/{id}", rx.base))).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    assert_eq!(client(&s, "ev", "quiet", None).await.status, 201);

    // (session id, the reason its SET must carry, its initiating entity)
    let mut ended: Vec<(String, &str, &str)> = Vec::new();

    let (sid, token, _) = session_of(&s.login_ok("ev", "alice").await);
    assert_eq!(s.logout("ev", &token).await.status, 204);
    ended.push((sid, "logout", "user"));

    let (sid1, token, _) = session_of(&s.login_ok("ev", "alice").await);
    let (sid2, ..) = session_of(&s.login_ok("ev", "alice").await);
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/logout-all", "ev")
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    ended.push((sid1, "logout_all", "user"));
    ended.push((sid2, "logout_all", "user"));

    let (sid, ..) = session_of(&s.login_ok("ev", "alice").await);
    let r = TestServer::send(s.admin(
        Method::DELETE,
        &format!("/admin/v1/tenants/ev/sessions/{sid}"),
    ))
    .await;
    assert!(r.status.is_success(), "{}", r.body);
    ended.push((sid, "admin", "admin"));

    let (sid, ..) = session_of(&s.login_ok("ev", "alice").await);
    let r = TestServer::send(s.admin(Method::POST, "/admin/v1/tenants/ev/partner-secrets")).await;
    let secret = r.str("secret");
    let r = TestServer::send(
        s.req(Method::POST, "/v1/auth/partner/logout-user")
            .header("X-PARTNER-SECRET", &secret)
            .json(&json!({"userId": alice})),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.body);
    ended.push((sid, "partner_logout", "admin"));

    let (sid, _, rt0) = session_of(&s.login_ok("ev", "alice").await);
    assert_eq!(s.refresh("ev", &rt0).await.status, 200);
    s.clock.advance(1);
    s.refresh("ev", &rt0)
        .await
        .problem(401, "refresh_token_reused");
    ended.push((sid, "reuse_detected", "system"));

    let r = TestServer::send(
        s.admin(Method::PATCH, "/admin/v1/tenants/ev/policy")
            .json(&json!({"maxSessionsPerUser": 1, "onLimit": "evict_oldest"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (sid, ..) = session_of(&s.login_ok("ev", "alice").await);
    let (last, ..) = session_of(&s.login_ok("ev", "alice").await);
    ended.push((sid, "displaced", "policy"));

    let r = TestServer::send(
        s.admin(
            Method::POST,
            &format!("/admin/v1/tenants/ev/users/{alice}/password"),
        )
        .json(&json!({"password": "a new correct horse battery"})),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.body);
    ended.push((last, "password_changed", "user"));

    // Three receivers per end: app1, app2 and the CAEP receiver; nothing for `quiet`.
    let got = rx.until(3 * ended.len()).await;
    assert_eq!(got.len(), 3 * ended.len(), "exactly one each: {got:#?}");
    let mut seen: BTreeMap<(String, String), Value> = BTreeMap::new();
    for g in &got {
        let token = token_of(g);
        let (path, aud) = match g.path.as_str() {
            "/caep" => ("caep".to_owned(), caep.clone()),
            p => {
                let id = p.strip_prefix("/bcl/").unwrap();
                (id.to_owned(), id.to_owned())
            }
        };
        let (typ, claims) = verify(&s, &token, &aud).await;
        let sid = if path == "caep" {
            assert_eq!(g.content_type, "application/secevent+jwt");
            assert_eq!(typ, "secevent+jwt");
            assert_eq!(claims["sub_id"]["format"], "complex");
            assert_eq!(claims["sub_id"]["user"]["id"], alice.as_str());
            claims["sub_id"]["session"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        } else {
            assert_eq!(g.content_type, "application/x-www-form-urlencoded");
            assert_eq!(typ, "logout+jwt");
            assert_eq!(claims["sub"], alice.as_str());
            assert!(claims["events"][BCL_EVENT].as_object().unwrap().is_empty());
            assert!(claims.get("nonce").is_none(), "no nonce in a logout token");
            assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
            claims["sid"].as_str().unwrap().to_owned()
        };
        assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
        let dup = seen.insert((sid, path), claims);
        assert!(
            dup.is_none(),
            "a second event for the same session and receiver"
        );
    }
    for (sid, reason, entity) in &ended {
        for receiver in ["app1", "app2"] {
            assert!(
                seen.contains_key(&(sid.clone(), receiver.to_owned())),
                "{receiver} heard of {reason}"
            );
        }
        let set = &seen[&(sid.clone(), "caep".to_owned())];
        let ev = &set["events"][REVOKED_EVENT];
        assert_eq!(ev["reason_admin"]["en"], *reason);
        assert_eq!(ev["initiating_entity"], *entity, "{reason}");
        assert!(ev["event_timestamp"].is_i64());
    }

    // The audit trail names every delivery's receiver.
    let delivered = s
        .audit("ev", "type=session_event_delivered&limit=100")
        .await;
    assert_eq!(delivered.len(), 3 * ended.len());
    for receiver in ["backchannel_logout:app1", "backchannel_logout:app2", "caep"] {
        let n = delivered.iter().filter(|e| e["reason"] == receiver).count();
        assert_eq!(n, ended.len(), "{receiver}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_event_on_retry_and_a_refusing_one_is_recorded() {
    let s = TestServer::start_with_events(quick()).await;
    let rx = Inbox::start().await;
    s.tenant_with_user("ev", "integration", json!({})).await;
    let r = client(&s, "ev", "app", Some(format!("{}/bcl/app", rx.base))).await;
    assert_eq!(r.status, 201, "{}", r.body);

    rx.fail_first.store(2, Ordering::SeqCst);
    let (sid, token, _) = session_of(&s.login_ok("ev", "alice").await);
    assert_eq!(s.logout("ev", &token).await.status, 204);
    let got = rx.until(3).await;
    assert_eq!(got.len(), 3, "two failures, then delivered: {got:#?}");
    let jtis: Vec<Value> = {
        let mut out = Vec::new();
        for g in &got {
            out.push(verify(&s, &token_of(g), "app").await.1["jti"].clone());
        }
        out
    };
    assert!(
        jtis.iter().all(|j| *j == jtis[0]),
        "one jti for every attempt"
    );
    let delivered = s.audit("ev", "type=session_event_delivered").await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["sessionId"], sid.as_str());
    assert_eq!(delivered[0]["reason"], "backchannel_logout:app");

    // A 400 means the receiver cannot use the event: one attempt, recorded as failed.
    *rx.fail_with.lock().unwrap() = StatusCode::BAD_REQUEST;
    rx.fail_first.store(1, Ordering::SeqCst);
    let (sid, token, _) = session_of(&s.login_ok("ev", "alice").await);
    assert_eq!(s.logout("ev", &token).await.status, 204);
    let got = rx.until(4).await;
    assert_eq!(got.len(), 4, "no retry after a 400");
    for _ in 0..100 {
        if !s.audit("ev", "type=session_event_failed").await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed = s.audit("ev", "type=session_event_failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["sessionId"], sid.as_str());
}

#[tokio::test]
async fn a_production_tenant_cannot_send_events_to_private_addresses() {
    let s = TestServer::start_with_events(quick()).await;
    s.tenant("prod", "production", json!({})).await;
    client(&s, "prod", "app", Some("http://127.0.0.1:9/bcl".into()))
        .await
        .problem(400, "invalid_request");
    client(&s, "prod", "app", Some("ftp://example.com/x".into()))
        .await
        .problem(400, "invalid_request");
    // A public address, but tokens would travel in clear.
    client(&s, "prod", "app", Some("http://rp.example.com/bcl".into()))
        .await
        .problem(400, "invalid_request");
    for url in ["http://10.0.0.1/caep", "http://receiver.example.com/caep"] {
        let r = TestServer::send(
            s.admin(Method::PATCH, "/admin/v1/tenants/prod/policy")
                .json(&json!({"caepReceiverUrl": url})),
        )
        .await;
        r.problem(400, "invalid_request");
    }
    let r = client(&s, "prod", "app", Some("https://rp.example.com/bcl".into())).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// A logout token is signed by the session-token keyring, but it is no session token: the
/// API refuses it as a bearer token (its `typ` and claims are another kind's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_token_is_refused_as_a_session_token() {
    let s = TestServer::start_with_events(quick()).await;
    let rx = Inbox::start().await;
    s.tenant_with_user("ev", "integration", json!({})).await;
    let r = client(&s, "ev", "sessiond", Some(format!("{}/bcl/x", rx.base))).await;
    // The session tokens' audience is no client id: the client is refused…
    assert_eq!(r.status, 400, "{}", r.body);
    let r = client(&s, "ev", "app", Some(format!("{}/bcl/app", rx.base))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (_, token, _) = session_of(&s.login_ok("ev", "alice").await);
    let (_, other, _) = session_of(&s.login_ok("ev", "alice").await);
    assert_eq!(s.logout("ev", &token).await.status, 204);
    let got = rx.until(1).await;
    let logout_token = token_of(&got[0]);
    // …and the logout token of one session opens no other.
    s.whoami("ev", &logout_token)
        .await
        .problem(401, "token_invalid");
    assert_eq!(s.whoami("ev", &other).await.status, 200);

    // Not even with every session claim in it: the `typ` alone tells the kinds apart. The
    // same claims under `at+jwt` (the control) are accepted.
    use sessiond_store::IdentityStore as _;
    let master = sessiond_core::secret::MasterKey::parse(&"42".repeat(32)).unwrap();
    let keyring =
        sessiond_core::token::Keyring::load(&master, s.store.load_keys().await.unwrap()).unwrap();
    let payload = other.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: sessiond_core::token::Claims = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let typed = keyring.sign_typed("logout+jwt", &claims).unwrap();
    s.whoami("ev", &typed).await.problem(401, "token_invalid");
    assert_eq!(
        s.whoami("ev", &keyring.sign(&claims).unwrap()).await.status,
        200
    );
}

/// Timeouts are session ends too: an idle timeout noticed when the session is presented, an
/// idle timeout nobody noticed (the janitor's sweep) and an absolute one each reach every
/// receiver once, as `idle_timeout` / `absolute_timeout` initiated by `policy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_absolute_timeouts_reach_each_receiver_once() {
    let s = TestServer::start_with_events(quick()).await;
    let rx = Inbox::start().await;
    let caep = format!("{}/caep", rx.base);
    s.tenant_with_user(
        "ev",
        "integration",
        json!({"caepReceiverUrl": caep, "idleTtl": 100, "absoluteTtl": 1000}),
    )
    .await;
    let r = client(&s, "ev", "app", Some(format!("{}/bcl/app", rx.base))).await;
    assert_eq!(r.status, 201, "{}", r.body);

    let (noticed, noticed_token, _) = session_of(&s.login_ok("ev", "alice").await);
    let (abandoned, ..) = session_of(&s.login_ok("ev", "alice").await);
    let (kept, kept_token, _) = session_of(&s.login_ok("ev", "alice").await);
    s.clock.advance(90);
    assert_eq!(s.whoami("ev", &kept_token).await.status, 200, "kept alive");
    s.clock.advance(11);
    s.whoami("ev", &noticed_token)
        .await
        .problem(401, "session_expired");
    // The janitor sweeps 30 s behind its clock (skew between nodes).
    s.clock.advance(30);
    assert_eq!(
        s.engine.expire_timed_out(100).await.unwrap(),
        1,
        "the abandoned one"
    );
    assert_eq!(s.engine.expire_timed_out(100).await.unwrap(), 0, "once");
    // The kept one stays in use until its absolute end (t = 1000): announced as that.
    // (last seen at 90; then every 80 s from 131 to 931: its idle deadline passes 1000)
    assert_eq!(s.whoami("ev", &kept_token).await.status, 200);
    for _ in 0..10 {
        s.clock.advance(80);
        assert_eq!(s.whoami("ev", &kept_token).await.status, 200);
    }
    s.clock.advance(130);
    assert_eq!(s.engine.expire_timed_out(100).await.unwrap(), 1);

    let got = rx.until(6).await;
    assert_eq!(got.len(), 6, "two receivers, three sessions: {got:#?}");
    let mut reasons = BTreeMap::new();
    for g in &got {
        let token = token_of(g);
        if g.path == "/caep" {
            let (_, c) = verify(&s, &token, &caep).await;
            let ev = &c["events"][REVOKED_EVENT];
            assert_eq!(ev["initiating_entity"], "policy");
            let sid = c["sub_id"]["session"]["id"].as_str().unwrap().to_owned();
            reasons.insert(sid, ev["reason_admin"]["en"].as_str().unwrap().to_owned());
        } else {
            let (typ, c) = verify(&s, &token, "app").await;
            assert_eq!(typ, "logout+jwt");
            assert!(
                [&noticed, &abandoned, &kept].contains(&&c["sid"].as_str().unwrap().to_owned())
            );
        }
    }
    assert_eq!(reasons[&noticed], "idle_timeout");
    assert_eq!(reasons[&abandoned], "idle_timeout");
    assert_eq!(reasons[&kept], "absolute_timeout");
    let audited = s.audit("ev", "type=session_expired").await;
    assert_eq!(audited.len(), 3, "{audited:?}");
}
