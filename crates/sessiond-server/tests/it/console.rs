//! Named operators and the console: operators sign in with sessiond's own cookie mode on the
//! tenant `_operators`; their role decides what the admin API lets them do; every change is
//! recorded with who made it; the listings page with cursors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::testkit::*;
use reqwest::Method;
use serde_json::{Value, json};

const OPS: &str = "_operators";

/// Creates an operator with the admin token; returns its user id.
async fn operator(s: &TestServer, username: &str, role: &str) -> String {
    let r = TestServer::send(
        s.admin(Method::POST, "/admin/v1/operators")
            .json(&json!({"username": username, "password": PASSWORD, "role": role})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["role"], role);
    r.str("userId")
}

/// A console sign-in: the `Cookie` header its `Set-Cookie`s make, and its CSRF token.
async fn sign_in(s: &TestServer, username: &str) -> (String, String) {
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/login", OPS)
            .json(&json!({"username": username, "password": PASSWORD, "mode": "cookie"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let jar = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    (jar, r.str("csrfToken"))
}

/// A console request: the session cookie, and for a change the CSRF token.
fn console(
    s: &TestServer,
    m: Method,
    path: &str,
    jar: &str,
    csrf: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut rb = s.req(m, path).header("Cookie", jar);
    if let Some(c) = csrf {
        rb = rb.header("X-CSRF-Token", c);
    }
    rb
}

async fn get(s: &TestServer, path: &str, jar: &str) -> Reply {
    TestServer::send(console(s, Method::GET, path, jar, None)).await
}

#[tokio::test]
async fn each_role_may_do_what_it_allows_and_no_more() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let alice = s.login_ok("t1", "alice").await;
    let sid = alice.str("sessionId");
    let token = alice.str("userSessionToken");
    for (name, role) in [("vera", "viewer"), ("otto", "operator"), ("ada", "admin")] {
        operator(&s, name, role).await;
    }
    let (viewer, viewer_csrf) = sign_in(&s, "vera").await;
    let (op, op_csrf) = sign_in(&s, "otto").await;
    let (adm, adm_csrf) = sign_in(&s, "ada").await;

    let me = get(&s, "/admin/v1/me", &viewer).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(
        (me.body["role"].as_str(), me.body["actor"].as_str()),
        (Some("viewer"), Some("operator:vera"))
    );

    // A viewer reads everything it is shown, and changes nothing.
    for path in [
        "/admin/v1/tenants",
        "/admin/v1/tenants/t1",
        "/admin/v1/tenants/t1/users",
        "/admin/v1/tenants/t1/sessions",
        "/admin/v1/tenants/t1/audit",
        "/admin/v1/tenants/t1/audit/counts",
        "/admin/v1/tenants/t1/partner-secrets",
        "/admin/v1/tenants/t1/clients",
        "/admin/v1/keys",
    ] {
        let r = get(&s, path, &viewer).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let revoke = format!("/admin/v1/tenants/t1/sessions/{sid}");
    TestServer::send(console(
        &s,
        Method::DELETE,
        &revoke,
        &viewer,
        Some(&viewer_csrf),
    ))
    .await
    .problem(403, "forbidden");
    assert_eq!(
        s.whoami("t1", &token).await.status,
        200,
        "the viewer revoked nothing"
    );
    // The webhook secret, operators and the operators' tenant are for admins.
    for path in ["/admin/v1/tenants/t1/webhook", "/admin/v1/operators"] {
        get(&s, path, &op).await.problem(403, "forbidden");
    }
    get(&s, "/admin/v1/tenants/_operators/sessions", &op)
        .await
        .problem(404, "not_found");
    let listed = get(&s, "/admin/v1/tenants", &op).await;
    assert!(
        listed.body["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["id"] != OPS),
        "{}",
        listed.body
    );
    // An operator rotates no keys and creates no tenants.
    TestServer::send(console(
        &s,
        Method::POST,
        "/admin/v1/keys/rotate",
        &op,
        Some(&op_csrf),
    ))
    .await
    .problem(403, "forbidden");
    TestServer::send(
        console(&s, Method::POST, "/admin/v1/tenants", &op, Some(&op_csrf))
            .json(&json!({"id": "t9", "profile": "playground"})),
    )
    .await
    .problem(403, "forbidden");

    // An operator revokes the session; the user's token is refused at once.
    let r = TestServer::send(console(&s, Method::DELETE, &revoke, &op, Some(&op_csrf))).await;
    assert_eq!(r.status, 204, "{}", r.body);
    s.whoami("t1", &token).await.problem(401, "session_revoked");
    // Recorded with who did it: the revocation and the change itself.
    let trail = s
        .audit("t1", &format!("sessionId={sid}&type=session_revoked"))
        .await;
    assert_eq!(trail[0]["actor"], "operator:otto", "{trail:?}");
    let changes = s.audit("t1", "type=admin_action").await;
    let change = changes
        .iter()
        .find(|e| e["reason"] == "DELETE /admin/v1/tenants/{tenant}/sessions/{session}")
        .unwrap_or_else(|| panic!("{changes:?}"));
    assert_eq!(change["actor"], "operator:otto");
    // Refused attempts change nothing and are not recorded as changes.
    assert!(
        changes.iter().all(|e| e["actor"] != "operator:vera"),
        "{changes:?}"
    );

    // An admin does what admins do; a key rotation is recorded in the operators' trail.
    let r = TestServer::send(console(
        &s,
        Method::POST,
        "/admin/v1/keys/rotate",
        &adm,
        Some(&adm_csrf),
    ))
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ops_trail = s.audit(OPS, "type=admin_action").await;
    assert!(
        ops_trail
            .iter()
            .any(|e| e["reason"] == "POST /admin/v1/keys/rotate" && e["actor"] == "operator:ada"),
        "{ops_trail:?}"
    );
    assert!(
        ops_trail
            .iter()
            .any(|e| e["reason"] == "POST /admin/v1/operators role=admin"
                && e["actor"] == "admin-token"),
        "creating operators with the admin token is recorded too: {ops_trail:?}"
    );
}

#[tokio::test]
async fn a_console_change_needs_the_sessions_csrf_token() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let sid = s.login_ok("t1", "alice").await.str("sessionId");
    operator(&s, "otto", "operator").await;
    operator(&s, "mallory", "operator").await;
    let (op, _) = sign_in(&s, "otto").await;
    let (_, other_csrf) = sign_in(&s, "mallory").await;
    let revoke = format!("/admin/v1/tenants/t1/sessions/{sid}");
    for csrf in [None, Some("guess"), Some(other_csrf.as_str())] {
        TestServer::send(console(&s, Method::DELETE, &revoke, &op, csrf))
            .await
            .problem(403, "forbidden");
    }
    // A foreign Origin, even with the right token.
    let (_, op_csrf) = (op.clone(), {
        let me = get(&s, "/admin/v1/me", &op).await;
        assert_eq!(me.status, 200);
        op.split("; ")
            .find_map(|p| p.strip_prefix("__Host-sessiond-csrf="))
            .unwrap()
            .to_owned()
    });
    TestServer::send(
        console(&s, Method::DELETE, &revoke, &op, Some(&op_csrf))
            .header("Origin", "https://evil.example"),
    )
    .await
    .problem(403, "forbidden");
    let sessions = s.admin_sessions("t1", "state=active").await;
    assert_eq!(sessions.len(), 1, "nothing was revoked");
}

#[tokio::test]
async fn only_an_operators_live_session_of_the_operators_tenant_counts() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let otto = operator(&s, "otto", "operator").await;
    // An end user's cookie session (another tenant) is not an operator's.
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/login", "t1")
            .json(&json!({"username": "alice", "password": PASSWORD, "mode": "cookie"})),
    )
    .await;
    let user_jar = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    get(&s, "/admin/v1/me", &user_jar)
        .await
        .problem(401, "tenant_mismatch");
    // Operators are made with a role: not as plain users of the operators' tenant.
    TestServer::send(
        s.admin(Method::POST, "/admin/v1/tenants/_operators/users")
            .json(&json!({"username": "norole", "password": PASSWORD})),
    )
    .await
    .problem(400, "invalid_request");
    // An account of the operators' tenant whose role is gone (in the store) is refused.
    let norole_id = operator(&s, "norole", "viewer").await;
    use sessiond_store::IdentityStore as _;
    assert!(
        s.store
            .set_user_role(
                &sessiond_store::TenantId::operators(),
                &uuid::Uuid::parse_str(&norole_id).unwrap(),
                None
            )
            .await
            .unwrap()
    );
    let (norole, _) = sign_in(&s, "norole").await;
    get(&s, "/admin/v1/tenants", &norole)
        .await
        .problem(403, "forbidden");

    // The console session is a session like any other: an admin sees and revokes it.
    let (op, _) = sign_in(&s, "otto").await;
    assert_eq!(get(&s, "/admin/v1/me", &op).await.status, 200);
    let listed = s
        .admin_sessions(OPS, &format!("userId={otto}&state=active"))
        .await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let path = format!(
        "/admin/v1/tenants/{OPS}/sessions/{}",
        listed[0]["sessionId"].as_str().unwrap()
    );
    assert_eq!(
        TestServer::send(s.admin(Method::DELETE, &path))
            .await
            .status,
        204
    );
    get(&s, "/admin/v1/me", &op)
        .await
        .problem(401, "session_revoked");

    // A role change applies from the next request; disabling ends the sessions.
    let (op, op_csrf) = sign_in(&s, "otto").await;
    let r = TestServer::send(
        s.admin(Method::PUT, &format!("/admin/v1/operators/{otto}/role"))
            .json(&json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(r.body["role"], "viewer", "{}", r.body);
    assert_eq!(get(&s, "/admin/v1/me", &op).await.body["role"], "viewer");
    TestServer::send(console(
        &s,
        Method::POST,
        "/admin/v1/tenants/t1/partner-secrets",
        &op,
        Some(&op_csrf),
    ))
    .await
    .problem(403, "forbidden");
    let r = TestServer::send(s.admin(Method::POST, &format!("/admin/v1/operators/{otto}/disable")))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    get(&s, "/admin/v1/me", &op)
        .await
        .problem(401, "session_revoked");
    let r = TestServer::send(
        s.api(Method::POST, "/api/v2/auth/login", OPS)
            .json(&json!({"username": "otto", "password": PASSWORD, "mode": "cookie"})),
    )
    .await;
    assert!(
        r.status.is_client_error(),
        "a disabled operator cannot sign in: {}",
        r.body
    );

    // Tenant ids starting with `_` are sessiond's.
    TestServer::send(
        s.admin(Method::POST, "/admin/v1/tenants")
            .json(&json!({"id": "_mine", "profile": "playground"})),
    )
    .await
    .problem(400, "invalid_request");
}

/// Follows `nextCursor` from `first` to the end; returns every item of `key`.
async fn all_pages(s: &TestServer, first: &str, key: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut path = first.to_owned();
    for _ in 0..100 {
        let r = TestServer::send(s.admin(Method::GET, &path)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        items.extend(r.body[key].as_array().unwrap().iter().cloned());
        match r.body["nextCursor"].as_str() {
            Some(c) => {
                let sep = if first.contains('?') { '&' } else { '?' };
                path = format!("{first}{sep}cursor={c}");
            }
            None => return items,
        }
    }
    panic!("the pages never ended");
}

#[tokio::test]
async fn listings_page_with_cursors() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    for t in ["t2", "t3", "t4"] {
        s.tenant(t, "playground", json!({})).await;
    }
    for u in ["bob", "carol", "dave", "Alicia"] {
        s.user("t1", u).await;
    }
    for _ in 0..5 {
        s.login_ok("t1", "alice").await;
        s.clock.advance(1);
    }
    // Tenants by id; the operators' tenant (created with the first operator) for admins only.
    operator(&s, "ada", "admin").await;
    let tenants: Vec<String> = all_pages(&s, "/admin/v1/tenants?limit=2", "tenants")
        .await
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tenants, ["_operators", "t1", "t2", "t3", "t4"]);
    // Users, and a search.
    let users = all_pages(&s, "/admin/v1/tenants/t1/users?limit=2", "users").await;
    assert_eq!(users.len(), 5);
    let found = all_pages(&s, "/admin/v1/tenants/t1/users?search=ALI&limit=1", "users").await;
    let mut names: Vec<&str> = found
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["Alicia", "alice"]);
    // Sessions newest first, each once.
    let sessions = all_pages(&s, "/admin/v1/tenants/t1/sessions?limit=2", "sessions").await;
    let created: Vec<i64> = sessions
        .iter()
        .map(|x| x["createdAt"].as_i64().unwrap())
        .collect();
    assert_eq!(created.len(), 5);
    assert!(created.windows(2).all(|w| w[0] > w[1]), "{created:?}");
    // Audit events newest first, each once, all of them.
    let all = s.audit("t1", "limit=1000").await;
    let paged = all_pages(&s, "/admin/v1/tenants/t1/audit?limit=3", "events").await;
    assert_eq!(paged, all);
    // A cursor is the server's: a forged one is refused.
    for path in [
        "/admin/v1/tenants/t1/sessions?cursor=bm9wZQ",
        "/admin/v1/tenants/t1/audit?cursor=%%%",
        "/admin/v1/tenants?cursor=eyJ4IjoxfQ",
    ] {
        TestServer::send(s.admin(Method::GET, path))
            .await
            .problem(400, "invalid_request");
    }
}

#[tokio::test]
async fn the_chart_counts_a_burst_of_failed_logins() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    s.login_ok("t1", "alice").await;
    let counts = |s: &TestServer| {
        let path = format!(
            "/admin/v1/tenants/t1/audit/counts?since={}&until={}&bucket=60",
            START - 120,
            START + 60
        );
        let rb = s.admin(Method::GET, &path);
        async move {
            let r = TestServer::send(rb).await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body
        }
    };
    let before = counts(&s).await;
    let buckets = before["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 3, "{before}");
    assert_eq!(buckets[2]["logins"], 1);
    assert_eq!(buckets[2]["failures"], 0);
    for _ in 0..4 {
        let r = TestServer::send(
            s.api(Method::POST, "/api/v2/auth/login", "t1")
                .json(&json!({"username": "alice", "password": "wrong password"})),
        )
        .await;
        assert!(r.status.is_client_error());
    }
    let after = counts(&s).await;
    assert_eq!(after["buckets"][2]["failures"], 4, "{after}");
    assert_eq!(after["buckets"][0]["failures"], 0);
    // Too many buckets is refused, counted as aligned: 30,000 s from 59 spans 501 minutes.
    TestServer::send(s.admin(
        Method::GET,
        "/admin/v1/tenants/t1/audit/counts?since=59&until=30059&bucket=60",
    ))
    .await
    .problem(400, "invalid_request");
    let r = TestServer::send(s.admin(
        Method::GET,
        "/admin/v1/tenants/t1/audit/counts?since=60&until=30060&bucket=60",
    ))
    .await;
    assert_eq!(
        r.body["buckets"].as_array().map(Vec::len),
        Some(500),
        "{}",
        r.body
    );
    TestServer::send(s.admin(
        Method::GET,
        &format!("/admin/v1/tenants/t1/audit/counts?since=0&until={START}&bucket=1"),
    ))
    .await
    .problem(400, "invalid_request");
}

#[tokio::test]
async fn the_console_is_served_under_a_strict_policy() {
    let s = TestServer::start().await;
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let r = TestServer::send(s.req(Method::GET, path)).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "require-trusted-types-for 'script'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(r.headers["x-frame-options"], "DENY");
    }
}

#[tokio::test]
async fn a_change_is_recorded_against_what_it_changed_however_the_path_is_spelled() {
    let s = TestServer::start().await;
    let alice = s.tenant_with_user("t1", "integration", json!({})).await;
    operator(&s, "otto", "operator").await;
    let (op, op_csrf) = sign_in(&s, "otto").await;
    // `t%31` is `t1`, and the user id with its first character percent-encoded is the same
    // user.
    let spelled = format!("%{:02X}{}", alice.as_bytes()[0], &alice[1..]);
    let path = format!("/admin/v1/tenants/t%31/users/{spelled}/disable");
    let r = TestServer::send(console(&s, Method::POST, &path, &op, Some(&op_csrf))).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let changes = s
        .audit("t1", &format!("userId={alice}&type=admin_action"))
        .await;
    assert_eq!(
        changes.len(),
        2,
        "its creation and its disabling: {changes:?}"
    );
    assert_eq!(changes[1]["actor"], "admin-token");
    assert_eq!(changes[0]["actor"], "operator:otto");
    assert_eq!(
        changes[0]["reason"],
        "POST /admin/v1/tenants/{tenant}/users/{user}/disable"
    );
    let elsewhere = s.audit(OPS, "type=admin_action").await;
    assert!(
        elsewhere.iter().all(|e| e["actor"] != "operator:otto"),
        "{elsewhere:?}"
    );

    // Pointing sessiond's requests at an address of one's choosing is an admin's call.
    TestServer::send(
        console(
            &s,
            Method::POST,
            "/admin/v1/tenants/t1/clients",
            &op,
            Some(&op_csrf),
        )
        .json(&json!({"backchannelLogoutUri": "http://127.0.0.1:9/logout"})),
    )
    .await
    .problem(403, "forbidden");
    let r = TestServer::send(
        console(
            &s,
            Method::POST,
            "/admin/v1/tenants/t1/clients",
            &op,
            Some(&op_csrf),
        )
        .json(&json!({})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // Bounded reads: a search with a control character, a count over more than 31 days.
    for path in [
        "/admin/v1/tenants/t1/users?search=a%00b".to_owned(),
        format!("/admin/v1/tenants/t1/audit/counts?since=0&until={START}&bucket=4294967295"),
    ] {
        get(&s, &path, &op).await.problem(400, "invalid_request");
    }
}

#[tokio::test]
async fn an_operator_scripts_the_admin_api_with_their_own_session_token() {
    let s = TestServer::start().await;
    s.tenant_with_user("t1", "integration", json!({})).await;
    let sid = s.login_ok("t1", "alice").await.str("sessionId");
    let otto = operator(&s, "otto", "operator").await;
    let vera = operator(&s, "vera", "viewer").await;
    let token = |name: &'static str| {
        let rb = s
            .api(Method::POST, "/api/v2/auth/login", OPS)
            .json(&json!({"username": name, "password": PASSWORD}));
        async move {
            let r = TestServer::send(rb).await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.str("userSessionToken")
        }
    };
    let (op, viewer) = (token("otto").await, token("vera").await);
    let call = |m: Method, path: &str, t: &str| s.req(m, path).bearer_auth(t);
    let me = TestServer::send(call(Method::GET, "/admin/v1/me", &op)).await;
    assert_eq!(me.body["actor"], "operator:otto", "{}", me.body);
    // A bearer token needs no CSRF token: no browser sends it by itself.
    let revoke = format!("/admin/v1/tenants/t1/sessions/{sid}");
    TestServer::send(call(Method::DELETE, &revoke, &viewer))
        .await
        .problem(403, "forbidden");
    let r = TestServer::send(call(Method::DELETE, &revoke, &op)).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let trail = s.audit("t1", "type=admin_action").await;
    assert_eq!(trail[0]["actor"], "operator:otto", "{trail:?}");
    // An end user's token is not an operator's; a wrong admin token is refused as before.
    let user_token = s.login_ok("t1", "alice").await.str("userSessionToken");
    TestServer::send(call(Method::GET, "/admin/v1/me", &user_token))
        .await
        .problem(401, "tenant_mismatch");
    TestServer::send(call(Method::GET, "/admin/v1/me", "not-the-admin-token"))
        .await
        .problem(403, "forbidden");
    // Creating an operator and changing a role say whom and what.
    let created = s.audit(OPS, "type=admin_action").await;
    let made = created
        .iter()
        .find(|e| e["userId"] == vera.as_str())
        .unwrap_or_else(|| panic!("{created:?}"));
    assert_eq!(made["reason"], "POST /admin/v1/operators role=viewer");
    let r = TestServer::send(
        s.admin(Method::PUT, &format!("/admin/v1/operators/{otto}/role"))
            .json(&json!({"role": "admin"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let changed = s
        .audit(OPS, &format!("userId={otto}&type=admin_action"))
        .await;
    assert_eq!(
        changed[0]["reason"],
        "PUT /admin/v1/operators/{user}/role role=admin"
    );
    // The operator's bearer token is refused once the operator is disabled.
    let r = TestServer::send(s.admin(Method::POST, &format!("/admin/v1/operators/{otto}/disable")))
        .await;
    assert_eq!(r.status, 204);
    TestServer::send(call(Method::GET, "/admin/v1/me", &op))
        .await
        .problem(401, "session_revoked");
}
