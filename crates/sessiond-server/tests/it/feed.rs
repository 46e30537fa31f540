//! The revocation feed (`GET /oauth2/revocations`) over real HTTP: what it sends, to whom,
//! how it resumes, and that it stays small.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::{Reply, TestServer};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, Clone)]
struct Ev {
    id: String,
    name: String,
    data: Value,
}

/// An open feed stream, parsed event by event.
struct Stream {
    res: reqwest::Response,
    buf: String,
}

impl Stream {
    async fn open(s: &TestServer, creds: &(String, String), cursor: Option<&str>) -> Self {
        let mut rb = s
            .req(Method::GET, "/oauth2/revocations")
            .basic_auth(&creds.0, Some(&creds.1))
            .header("accept", "text/event-stream");
        if let Some(c) = cursor {
            rb = rb.header("last-event-id", c);
        }
        let res = rb.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        assert_eq!(res.headers()["cache-control"], "no-store");
        Self {
            res,
            buf: String::new(),
        }
    }

    /// The next event (heartbeats included), within `within`.
    async fn next(&mut self, within: Duration) -> Option<Ev> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut name, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim_start().to_owned();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim_start().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if name.is_empty() {
                    continue;
                }
                let data: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(
                    data["type"],
                    name.as_str(),
                    "the event name is the data's type"
                );
                return Some(Ev { id, name, data });
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .ok()?;
            let chunk = chunk.unwrap()?;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event that is not a heartbeat.
    async fn next_entry(&mut self, within: Duration) -> Option<Ev> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let e = self.next(left).await?;
            if e.name != "heartbeat" {
                return Some(e);
            }
        }
    }

    /// Everything up to and including `synced`.
    async fn until_synced(&mut self) -> Vec<Ev> {
        let mut out = Vec::new();
        loop {
            let e = self
                .next_entry(Duration::from_secs(5))
                .await
                .expect("synced within 5 s");
            let done = e.name == "synced";
            out.push(e);
            if done {
                return out;
            }
        }
    }
}

const SEC: Duration = Duration::from_secs(3);

async fn logout_all(s: &TestServer, tenant: &str, token: &str) -> Reply {
    TestServer::send(
        s.api(Method::POST, "/api/v2/auth/logout-all", tenant)
            .bearer_auth(token),
    )
    .await
}

#[tokio::test]
async fn a_logout_reaches_the_feed_of_its_tenant_only() {
    let s = TestServer::start().await;
    let alice = s.tenant_with_user("acme", "integration", json!({})).await;
    s.tenant_with_user("other", "integration", json!({})).await;
    let creds = s.service_client("acme").await;
    let mut feed = Stream::open(&s, &creds, None).await;
    let first = feed.until_synced().await;
    assert_eq!(
        first[0].name, "reset",
        "a stream without a cursor starts with a reset"
    );
    assert_eq!(first.len(), 2, "nothing revoked yet: {first:?}");

    // Heartbeats while nothing happens, several a second.
    let started = tokio::time::Instant::now();
    for _ in 0..4 {
        let e = feed
            .next(Duration::from_millis(600))
            .await
            .expect("a heartbeat");
        assert_eq!(e.name, "heartbeat");
    }
    assert!(started.elapsed() < Duration::from_millis(2_000));

    // Another tenant's logout is not this client's business.
    let other = s.login("other", "alice").await;
    s.logout("other", &other.str("userSessionToken")).await;
    let login = s.login("acme", "alice").await;
    s.logout("acme", &login.str("userSessionToken")).await;
    let e = feed.next_entry(SEC).await.expect("the logout");
    assert_eq!(e.name, "session");
    assert_eq!(e.data["sid"], login.str("sessionId").as_str());
    assert_eq!(e.data["tid"], "acme");
    assert_eq!(e.data["sub"], alice.as_str());
    assert!(e.data["until"].as_i64().unwrap() > e.data["at"].as_i64().unwrap() + 86_000);
}

#[tokio::test]
async fn a_logout_of_every_session_is_one_cutoff() {
    let s = TestServer::start().await;
    let alice = s.tenant_with_user("acme", "integration", json!({})).await;
    let creds = s.service_client("acme").await;
    let logins = [
        s.login("acme", "alice").await,
        s.login("acme", "alice").await,
        s.login("acme", "alice").await,
    ];
    let mut feed = Stream::open(&s, &creds, None).await;
    feed.until_synced().await;
    // Sessions created in the second of the cut-off are not covered by it (`auth_time` is in
    // seconds): they would be listed one by one.
    s.clock.advance(1);
    let r = logout_all(&s, "acme", &logins[0].str("userSessionToken")).await;
    assert_eq!(r.body["revoked"], 3);
    let e = feed.next_entry(SEC).await.expect("the cut-off");
    assert_eq!(e.name, "cutoff", "{e:?}");
    assert_eq!(e.data["sub"], alice.as_str());
    assert_eq!(e.data["before"], crate::testkit::START + 1);
    assert!(
        feed.next_entry(Duration::from_millis(700)).await.is_none(),
        "no entry per session"
    );
    // A new client is told the same, in one entry.
    let mut late = Stream::open(&s, &creds, None).await;
    let all = late.until_synced().await;
    let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["reset", "cutoff", "synced"]);
    // No cursor before `synced`: a stream cut off during the snapshot starts over.
    assert_eq!((all[0].id.as_str(), all[1].id.as_str()), ("", ""));
    assert!(all[2].id.starts_with("s1."), "{:?}", all[2]);
}

#[tokio::test]
async fn a_dropped_stream_resumes_without_missing_an_entry() {
    let s = TestServer::start().await;
    s.tenant_with_user("acme", "integration", json!({})).await;
    let creds = s.service_client("acme").await;
    let a = s.login("acme", "alice").await;
    let b = s.login("acme", "alice").await;
    let c = s.login("acme", "alice").await;
    let mut feed = Stream::open(&s, &creds, None).await;
    feed.until_synced().await;
    s.logout("acme", &a.str("userSessionToken")).await;
    let seen = feed.next_entry(SEC).await.unwrap();
    assert_eq!(seen.data["sid"], a.str("sessionId").as_str());
    drop(feed);
    // While disconnected: two more logouts.
    s.logout("acme", &b.str("userSessionToken")).await;
    s.logout("acme", &c.str("userSessionToken")).await;
    let mut again = Stream::open(&s, &creds, Some(&seen.id)).await;
    let got = again.until_synced().await;
    let names: Vec<&str> = got.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["session", "session", "synced"], "{got:?}");
    assert_eq!(got[0].data["sid"], b.str("sessionId").as_str());
    assert_eq!(got[1].data["sid"], c.str("sessionId").as_str());

    // Another node on the same store resumes this node's cursor.
    let node2 = s.second_node().await;
    let mut there = Stream::open(&node2, &creds, Some(&got[1].id)).await;
    let got2 = there.until_synced().await;
    assert_eq!(got2.len(), 1, "nothing missed, nothing repeated: {got2:?}");

    // A cursor from elsewhere gets a reset and everything in force.
    let mut lost = Stream::open(&s, &creds, Some("s1.999999")).await;
    let all = lost.until_synced().await;
    let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["reset", "session", "session", "session", "synced"]);
}

#[tokio::test]
async fn a_key_rotation_is_announced() {
    let s = TestServer::start().await;
    s.tenant("acme", "integration", json!({})).await;
    let creds = s.service_client("acme").await;
    let mut feed = Stream::open(&s, &creds, None).await;
    feed.until_synced().await;
    let r = TestServer::send(s.admin(Method::POST, "/admin/v1/keys/rotate")).await;
    assert!(r.status.is_success(), "{}", r.body);
    let e = feed.next_entry(SEC).await.expect("the key change");
    assert_eq!(e.name, "keys");
    // A verifier fetches the keys on this event: this node already serves the new ones.
    let next = r.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "next")
        .map(|k| k["kid"].clone())
        .expect("a new next key");
    let jwks = TestServer::send(s.req(Method::GET, "/.well-known/jwks.json")).await;
    let kids: Vec<&Value> = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert!(kids.contains(&&next), "{next} not in {kids:?}");
}

#[tokio::test]
async fn the_feed_needs_a_service_client() {
    let s = TestServer::start().await;
    s.tenant("acme", "integration", json!({})).await;
    let (id, _) = s.service_client("acme").await;
    let none = TestServer::send(s.req(Method::GET, "/oauth2/revocations")).await;
    assert_eq!(none.status, 401, "{}", none.body);
    let wrong = TestServer::send(
        s.req(Method::GET, "/oauth2/revocations")
            .basic_auth(&id, Some("not-the-secret")),
    )
    .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
}
