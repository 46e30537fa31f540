//! Tokens, passwords and secrets never reach the server's logs (issue 6, DESIGN §6). The real
//! binary runs with `SESSIOND_LOG_LEVEL=debug`; the test drives every flow that handles a
//! secret — including the failing ones, which are the likeliest to log what they refused —
//! then searches the whole of stderr for every secret it sent or received.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::path::Path;

const ADMIN: &str = "no-secrets-admin-token-0123456789";
const PASSWORD: &str = "correct horse battery staple";
const WRONG_PASSWORD: &str = "wrong-password-that-must-not-be-logged";
const SSO_SECRET: &str = "sso-shared-secret-that-must-not-be-logged";

mod common;
use common::Server;

fn start(data_dir: &Path, log: &Path) -> Server {
    let log = std::fs::File::create(log).unwrap();
    common::spawn(|cmd| {
        cmd.env("SESSIOND_DATA_DIR", data_dir)
            .env("SESSIOND_ADMIN_TOKEN", ADMIN)
            .env("SESSIOND_ISSUER", "http://sessiond.test")
            .env("SESSIOND_LOG_LEVEL", "debug")
            .env("SESSIOND_LIMITS_AUTH_PER_MINUTE", "0")
            .stderr(log);
    })
}

fn hs256_jwt(secret: &str, claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &key,
    )
    .unwrap()
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Tenant-ID", "t1")
            .header("X-Activity-ID", uuid::Uuid::new_v4().to_string());
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res = rb.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .to_owned()
}

#[tokio::test]
async fn tokens_passwords_and_secrets_never_appear_in_the_logs() {
    use reqwest::Method as M;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let server = start(&dir.path().join("data"), &log);
    let c = Client {
        http: reqwest::Client::new(),
        base: server.base.clone(),
    };
    let admin = format!("Bearer {ADMIN}");
    let admin_h = [("Authorization", admin.as_str())];
    // Everything secret the test sends or receives.
    let mut secrets: Vec<String> = vec![
        ADMIN.into(),
        PASSWORD.into(),
        WRONG_PASSWORD.into(),
        SSO_SECRET.into(),
    ];

    let (st, _) = c
        .call(
            M::POST,
            "/admin/v1/tenants",
            &admin_h,
            Some(json!({"id": "t1", "profile": "integration"})),
        )
        .await;
    assert_eq!(st, 201);
    let (st, user) = c
        .call(
            M::POST,
            "/admin/v1/tenants/t1/users",
            &admin_h,
            Some(json!({"username": "alice", "password": PASSWORD, "externalId": "ext-alice"})),
        )
        .await;
    assert_eq!(st, 201, "{user}");
    let login_body = json!({"username": "alice", "password": PASSWORD});
    let (st, login) = c
        .call(M::POST, "/api/v2/auth/login", &[], Some(login_body.clone()))
        .await;
    assert_eq!(st, 200, "{login}");
    let token = s(&login, "userSessionToken");
    let refresh = s(&login, "refreshToken");
    secrets.extend([token.clone(), refresh.clone()]);

    // Failures: wrong password, unknown user, the wrong admin token.
    for body in [
        json!({"username": "alice", "password": WRONG_PASSWORD}),
        json!({"username": "nobody", "password": WRONG_PASSWORD}),
    ] {
        let (st, _) = c.call(M::POST, "/api/v2/auth/login", &[], Some(body)).await;
        assert_eq!(st, 401);
    }
    let bad_admin = "Bearer not-the-admin-token-but-secret-all-the-same";
    secrets.push(bad_admin[7..].to_owned());
    let (st, _) = c
        .call(
            M::GET,
            "/admin/v1/keys",
            &[("Authorization", bad_admin)],
            None,
        )
        .await;
    assert_eq!(st, 403);

    // Validation, refresh, reuse, logout.
    let bearer = format!("Bearer {token}");
    let (st, _) = c
        .call(
            M::GET,
            "/api/v2/session",
            &[("Authorization", &bearer)],
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (st, refreshed) = c
        .call(
            M::POST,
            "/api/v2/auth/refresh",
            &[],
            Some(json!({"refreshToken": refresh})),
        )
        .await;
    assert_eq!(st, 200, "{refreshed}");
    let token2 = s(&refreshed, "userSessionToken");
    secrets.extend([token2.clone(), s(&refreshed, "refreshToken")]);
    // A forged token (the real one with a flipped signature) and a garbage refresh token.
    let forged = format!("{}A", &token2[..token2.len() - 1]);
    let forged = if forged == token2 {
        format!("{}B", &token2[..token2.len() - 1])
    } else {
        forged
    };
    secrets.push(forged.clone());
    let (st, _) = c
        .call(
            M::GET,
            "/api/v2/session",
            &[("Authorization", &format!("Bearer {forged}"))],
            None,
        )
        .await;
    assert_eq!(st, 401);
    let guessed = "guessed-refresh-token-that-must-not-be-logged";
    secrets.push(guessed.into());
    let (st, _) = c
        .call(
            M::POST,
            "/api/v2/auth/refresh",
            &[],
            Some(json!({"refreshToken": guessed})),
        )
        .await;
    assert_eq!(st, 401);

    // Service client, internal access token, introspection.
    let (st, client) = c
        .call(
            M::POST,
            "/admin/v1/tenants/t1/clients",
            &admin_h,
            Some(json!({"clientId": "ledger", "audience": "ledger-service"})),
        )
        .await;
    assert_eq!(st, 201, "{client}");
    let client_secret = s(&client, "clientSecret");
    secrets.push(client_secret.clone());
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("ledger:{client_secret}")
        )
    );
    let (st, internal) = c
        .call(
            M::POST,
            "/internal/v1/access-token",
            &[("Authorization", &basic), ("X-User-Session-Token", &token2)],
            None,
        )
        .await;
    assert_eq!(st, 200, "{internal}");
    secrets.push(s(&internal, "access_token"));
    let res = c
        .http
        .post(format!("{}/oauth2/introspect", c.base))
        .header("Authorization", &basic)
        .form(&[("token", token2.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // SSO: a good token, then its replay (refused, and the likeliest to be logged).
    let (st, _) = c
        .call(
            M::PUT,
            "/admin/v1/tenants/t1/sso",
            &admin_h,
            Some(json!({"audience": "sessiond-sso", "hs256Secret": SSO_SECRET})),
        )
        .await;
    assert_eq!(st, 204);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sso = hs256_jwt(
        SSO_SECRET,
        &json!({"sub": "partner-user", "jti": "j1", "aud": "sessiond-sso", "exp": now + 300}),
    );
    let bad_sso = hs256_jwt(
        "not-the-sso-secret-but-secret-all-the-same",
        &json!({"sub": "partner-user", "jti": "j2", "aud": "sessiond-sso", "exp": now + 300}),
    );
    secrets.extend([sso.clone(), bad_sso.clone()]);
    for (token, expected) in [(&sso, 200), (&sso, 401), (&bad_sso, 401)] {
        let (st, body) = c
            .call(
                M::POST,
                "/api/v2/auth/sso",
                &[],
                Some(json!({"ssoToken": token})),
            )
            .await;
        assert_eq!(st, expected, "{body}");
        if st == 200 {
            secrets.extend([s(&body, "userSessionToken"), s(&body, "refreshToken")]);
        }
    }

    // Partner secrets: a good one and a wrong one.
    let (st, partner) = c
        .call(
            M::POST,
            "/admin/v1/tenants/t1/partner-secrets",
            &admin_h,
            None,
        )
        .await;
    assert_eq!(st, 201);
    let partner_secret = s(&partner, "secret");
    let wrong_partner = format!("{}.not-the-partner-secret", s(&partner, "secretId"));
    secrets.extend([partner_secret.clone(), wrong_partner.clone()]);
    for (secret, expected) in [(&wrong_partner, 401), (&partner_secret, 200)] {
        let (st, _) = c
            .call(
                M::POST,
                "/v1/auth/partner/logout-user",
                &[("X-PARTNER-SECRET", secret)],
                Some(json!({"userId": "ext-alice"})),
            )
            .await;
        assert_eq!(st, expected);
    }
    // A password change (the new password) and a last logout.
    let new_password = "new-password-that-must-not-be-logged";
    secrets.push(new_password.into());
    let uid = s(&user, "userId");
    let (st, _) = c
        .call(
            M::POST,
            &format!("/admin/v1/tenants/t1/users/{uid}/password"),
            &admin_h,
            Some(json!({"password": new_password})),
        )
        .await;
    assert_eq!(st, 204);
    let (st, relogin) = c
        .call(
            M::POST,
            "/api/v2/auth/login",
            &[],
            Some(json!({"username": "alice", "password": new_password})),
        )
        .await;
    assert_eq!(st, 200);
    let last = s(&relogin, "userSessionToken");
    secrets.extend([last.clone(), s(&relogin, "refreshToken")]);
    let (st, _) = c
        .call(
            M::POST,
            "/api/v2/auth/logout",
            &[("X-User-Session-Token", &last)],
            None,
        )
        .await;
    assert_eq!(st, 204);

    // The master key the server generated sits in the data dir: never in the log either.
    let master = std::fs::read_to_string(dir.path().join("data/master.key")).unwrap();
    secrets.push(master.trim().to_owned());

    // Let the last lines reach the file, then stop the server.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(server);
    let logged = std::fs::read_to_string(&log).unwrap();
    // The log is the real one: audit events at info, and debug lines (the refused SSO token).
    assert!(
        logged
            .lines()
            .filter(|l| l.contains("sessiond::audit"))
            .count()
            >= 10,
        "the log should hold the audit events: {logged}"
    );
    assert!(
        logged.contains("\"level\":\"DEBUG\""),
        "debug logging should be on: {logged}"
    );
    for secret in &secrets {
        // Any signature segment of a JWT, and any 16-character piece of any other secret,
        // would be a leak too.
        let mut needles = vec![secret.clone()];
        if secret.matches('.').count() == 2 {
            needles.extend(secret.split('.').skip(1).map(str::to_owned));
        }
        if secret.len() >= 32 {
            needles.push(secret[secret.len() - 16..].to_owned());
        }
        for needle in needles {
            assert!(
                !logged.contains(&needle),
                "a secret reached the log: {needle:?} (from {secret:?})"
            );
        }
    }
}
