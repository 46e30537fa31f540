//! Rate limits and lock-out, attacked: what is counted per client address and per account,
//! and that neither a busy proxy nor an attacker can get a user refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::*;
use reqwest::Method;
use serde_json::{Value, json};
use sessiond_server::ratelimit::{Limiters, RateLimits};

/// A server behind a trusted proxy (`proxy`: how 127.0.0.1 is listed) with these per-client
/// limits, one tenant `t1` (with `policy`) and user `alice`.
async fn behind_proxy_with(proxy: &'static str, limits: RateLimits, policy: Value) -> TestServer {
    let s = TestServer::start_with(|st| {
        st.trusted_proxies = vec![proxy.parse().unwrap()].into();
        st.limiters = std::sync::Arc::new(Limiters::new(limits));
    })
    .await;
    s.tenant_with_user("t1", "integration", policy).await;
    s
}

/// A server behind a trusted proxy with a ceiling of `per_minute` logins per client.
async fn behind_proxy(proxy: &'static str, per_minute: u32) -> TestServer {
    let limits = RateLimits {
        auth_per_minute: per_minute,
        ..RateLimits::unlimited()
    };
    behind_proxy_with(proxy, limits, json!({})).await
}

/// A login of `user` with `password` through the proxy, with these `X-Forwarded-For` lines.
async fn login_as(s: &TestServer, xff: &[&str], user: &str, password: &str) -> Reply {
    let mut rb = s.api(Method::POST, "/api/v2/auth/login", "t1");
    for line in xff {
        rb = rb.header("X-Forwarded-For", *line);
    }
    TestServer::send(rb.json(&json!({"username": user, "password": password}))).await
}

/// Alice's login through the proxy, with these `X-Forwarded-For` lines.
async fn login_via(s: &TestServer, xff: &[&str]) -> Reply {
    login_as(s, xff, "alice", PASSWORD).await
}

/// A client sends its own `X-Forwarded-For` line; the proxy adds a second line with the
/// address it saw. The forged first line must neither pick the audited address nor a fresh
/// rate-limit budget.
#[tokio::test]
async fn a_forged_forwarded_for_line_neither_picks_the_address_nor_escapes_the_limit() {
    for proxy in ["127.0.0.1", "127.0.0.0/8"] {
        let s = behind_proxy(proxy, 3).await;
        for i in 0..3 {
            let forged = format!("198.51.100.{i}");
            let r = login_via(&s, &[&forged, "203.0.113.7"]).await;
            assert_eq!(r.status, 200, "{proxy}: {}", r.body);
        }
        let audited = s.audit("t1", "type=login_succeeded").await;
        assert!(
            audited.len() == 3 && audited.iter().all(|e| e["ip"] == "203.0.113.7"),
            "{proxy}: {audited:?}"
        );
        // Same client, yet another forged address (also as a list in one line): still limited.
        login_via(&s, &["192.0.2.99", "203.0.113.7"])
            .await
            .problem(429, "rate_limited");
        login_via(&s, &["192.0.2.98, 203.0.113.7"])
            .await
            .problem(429, "rate_limited");
        if proxy.contains('/') {
            // Through a second proxy of the range: skipped, the client is still found.
            login_via(&s, &["192.0.2.97", "203.0.113.7, 127.0.0.5"])
                .await
                .problem(429, "rate_limited");
        }
        // Another client behind the same proxy has its own budget.
        let other = login_via(&s, &["198.51.100.1", "203.0.113.8"]).await;
        assert_eq!(other.status, 200, "{proxy}: {}", other.body);
    }
}

/// IPv6 clients are limited per /64: a host owns the whole /64 and picks any address in it.
#[tokio::test]
async fn ipv6_clients_share_a_limit_per_64() {
    let s = behind_proxy("127.0.0.1", 2).await;
    for client in ["2001:db8:1:2::a", "2001:db8:1:2:ffff:ffff:ffff:fffe"] {
        let r = login_via(&s, &[client]).await;
        assert_eq!(r.status, 200, "{client}: {}", r.body);
    }
    login_via(&s, &["2001:db8:1:2::b"])
        .await
        .problem(429, "rate_limited");
    let neighbour = login_via(&s, &["2001:db8:1:3::a"]).await;
    assert_eq!(neighbour.status, 200, "another /64: {}", neighbour.body);
    // The audit keeps the full address.
    let ips: Vec<_> = s
        .audit("t1", "type=login_succeeded")
        .await
        .iter()
        .map(|e| e["ip"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(ips.iter().any(|ip| ip == "2001:db8:1:2::a"), "{ips:?}");
    assert!(ips.iter().any(|ip| ip == "2001:db8:1:3::a"), "{ips:?}");
}

/// Many users behind one NAT, or a backend that refreshes for all of its users: hundreds of
/// good logins and refreshes a minute from one address get no 429 under the default limits
/// (the old per-address budget of 120 requests a minute refused the 121st).
#[tokio::test]
async fn hundreds_of_good_requests_from_one_address_are_not_limited() {
    let s = TestServer::start_with(|st| {
        st.limiters = std::sync::Arc::new(Limiters::new(RateLimits::default()));
    })
    .await;
    s.tenant_with_user("t1", "integration", json!({"loginRatePerMinute": 0}))
        .await;
    let mut refresh = Vec::new();
    for i in 0..130 {
        let r = s.login("t1", "alice").await;
        assert_eq!(r.status, 200, "login {i}: {}", r.body);
        refresh.push(r.str("refreshToken"));
    }
    for i in 0..300 {
        let slot = i % refresh.len();
        let r = s.refresh("t1", &refresh[slot]).await;
        assert_eq!(r.status, 200, "refresh {i}: {}", r.body);
        refresh[slot] = r.str("refreshToken");
    }
}

/// Credential stuffing and token guessing from one address: its failures are counted (401
/// answers of login, SSO and refresh alike), and once the budget is spent the address gets 429
/// — even for a right password — while other addresses go on.
#[tokio::test]
async fn failures_from_one_address_spend_its_budget() {
    let limits = RateLimits {
        auth_failures_per_minute: 6,
        ..RateLimits::default()
    };
    let s = behind_proxy_with("127.0.0.1", limits, json!({})).await;
    let stuffer = ["203.0.113.66"];
    for i in 0..4 {
        login_as(&s, &stuffer, &format!("victim{i}"), "guess")
            .await
            .problem(401, "invalid_credentials");
    }
    for _ in 0..2 {
        let guess = s
            .api(Method::POST, "/api/v2/auth/refresh", "t1")
            .header("X-Forwarded-For", stuffer[0])
            .json(&json!({"refreshToken": "A".repeat(44)}));
        TestServer::send(guess)
            .await
            .problem(401, "refresh_token_invalid");
    }
    let r = login_via(&s, &stuffer).await;
    r.problem(429, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    let other = login_via(&s, &["203.0.113.67"]).await;
    assert_eq!(other.status, 200, "another address: {}", other.body);
    s.clock.advance(60);
    let later = login_via(&s, &stuffer).await;
    assert_eq!(later.status, 200, "the next minute: {}", later.body);
}

/// An attacker guessing alice's password from one address is held back there, but cannot
/// lock alice out: her right password from her own address gets in at once, and the
/// attacker's right guess from the held address would not.
#[tokio::test]
async fn an_attacker_cannot_lock_a_user_out() {
    let s = behind_proxy_with("127.0.0.1", RateLimits::default(), json!({})).await;
    let attacker = ["198.51.100.7"];
    let mut refused = 0;
    for _ in 0..20 {
        let r = login_as(&s, &attacker, "alice", "guess").await;
        match r.status.as_u16() {
            401 => r.problem(401, "invalid_credentials"),
            _ => {
                r.problem(429, "rate_limited");
                refused += 1;
            }
        }
    }
    assert!(
        refused >= 14,
        "five free failures, then backoff: {refused} refused"
    );
    login_via(&s, &attacker).await.problem(429, "rate_limited");
    let alice = login_via(&s, &["203.0.113.10"]).await;
    assert_eq!(alice.status, 200, "alice from her address: {}", alice.body);
}

/// A botnet, one guess per address: past the account's ceiling (10 × `loginBackoffAfter`
/// failures within a 15-minute window) every address that has failed on the account is held,
/// yet alice gets in — from an address that has not failed, and from her usual address even
/// after a typo.
#[tokio::test]
async fn a_distributed_guess_is_capped_per_account_and_still_cannot_lock_out() {
    let policy = json!({"loginBackoffAfter": 2});
    let s = behind_proxy_with("127.0.0.1", RateLimits::default(), policy).await;
    let home = ["203.0.113.10"];
    assert_eq!(
        login_via(&s, &home).await.status,
        200,
        "alice's usual address"
    );
    for i in 0..20 {
        let bot = format!("198.51.100.{i}");
        login_as(&s, &[&bot], "alice", "guess")
            .await
            .problem(401, "invalid_credentials");
    }
    for i in [0, 7, 19] {
        let bot = format!("198.51.100.{i}");
        let r = login_as(&s, &[&bot], "alice", "guess").await;
        r.problem(429, "rate_limited");
    }
    let elsewhere = login_via(&s, &["203.0.113.11"]).await;
    assert_eq!(
        elsewhere.status, 200,
        "an address that never failed: {}",
        elsewhere.body
    );
    login_as(&s, &home, "alice", "typo")
        .await
        .problem(401, "invalid_credentials");
    let alice = login_via(&s, &home).await;
    assert_eq!(
        alice.status, 200,
        "her usual address after a typo: {}",
        alice.body
    );
    let other = login_as(&s, &["198.51.100.3"], "bob", "guess").await;
    other.problem(401, "invalid_credentials");
}
