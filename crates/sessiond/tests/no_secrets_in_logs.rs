//! Tokens, passwords and secrets never reach the server's logs (issue 6, DESIGN §6). The real
//! binary runs with `SESSIOND_LOG_LEVEL=debug`; the test drives every flow that handles a
//! secret — including the failing ones, which are the likeliest to log what they refused —
//! then searches the whole of stderr for every secret it sent or received.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const ADMIN: &str = "no-secrets-admin-token-0123456789";
const PASSWORD: &str = "correct horse battery staple";
const WRONG_PASSWORD: &str = "wrong-password-that-must-not-be-logged";
const SSO_SECRET: &str = "sso-shared-secret-that-must-not-be-logged";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &Path, log: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .arg("serve")
        .env("SESSIOND_LISTEN", "127.0.0.1:0")
        .env("SESSIOND_DATA_DIR", data_dir)
        .env("SESSIOND_ADMIN_TOKEN", ADMIN)
        .env("SESSIOND_ISSUER", "http://sessiond.test")
        .env("SESSIOND_LOG_LEVEL", "debug")
        .env("SESSIOND_LIMITS_AUTH_PER_MINUTE", "0")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("sessiond exited before listening")
            .unwrap();
        if let Some(url) = line.strip_prefix("sessiond listening on ") {
            break url.to_owned();
        }
    };
    Server { child, base }
}

// A minimal SHA-256 and HMAC (FIPS 180-4, RFC 2104), to mint a partner's HS256 SSO token
// without a crypto crate in this package's dependencies.
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7]
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [
                t1.wrapping_add(t2),
                v[0],
                v[1],
                v[2],
                v[3].wrapping_add(t1),
                v[4],
                v[5],
                v[6],
            ];
        }
        for (a, b) in h.iter_mut().zip(v) {
            *a = a.wrapping_add(b);
        }
    }
    let mut out = [0u8; 32];
    for (i, word) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = sha256(&[pad(0x36), msg.to_vec()].concat());
    sha256(&[pad(0x5c), inner.to_vec()].concat())
}

fn b64url(bytes: &[u8]) -> String {
    sessiond_core::secret::b64(bytes)
}

fn hs256_jwt(secret: &str, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    );
    let sig = hmac_sha256(secret.as_bytes(), input.as_bytes());
    format!("{input}.{}", b64url(&sig))
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
        base64_std(format!("ledger:{client_secret}").as_bytes())
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

fn base64_std(bytes: &[u8]) -> String {
    b64url(bytes).replace('-', "+").replace('_', "/") + &"=".repeat((3 - bytes.len() % 3) % 3)
}
