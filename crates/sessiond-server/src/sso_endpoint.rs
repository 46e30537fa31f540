//! Asking a partner's SSO verification endpoint about an opaque SSO token: an RFC 7662-style
//! introspection — `POST` form `token=…` with `Authorization: Bearer <verifySecret>` — bounded
//! in time and size, reaching only the destinations the tenant's profile allows (see
//! [`crate::outbound`]), never following redirects.

use crate::outbound::{OutboundClients, describe};
use async_trait::async_trait;
use serde::Deserialize;
use sessiond_core::outbound::Outbound;
use sessiond_core::sso::{Endpoint, SsoEndpoint};
use std::time::Duration;

const MAX_ANSWER_BYTES: usize = 64 * 1024;

pub struct HttpSsoEndpoint {
    http: OutboundClients,
}

impl HttpSsoEndpoint {
    /// Each question gives up after `timeout` (the login waits that long at most).
    pub fn new(timeout: Duration) -> Self {
        Self {
            http: OutboundClients::new(timeout),
        }
    }
}

/// The members of the partner's answer sessiond reads (RFC 7662 §2.2 names).
#[derive(Deserialize)]
struct Answer {
    active: bool,
    sub: Option<String>,
    exp: Option<i64>,
    aud: Option<Audience>,
    iss: Option<String>,
}

/// `aud`: one string or several.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[async_trait]
impl SsoEndpoint for HttpSsoEndpoint {
    async fn verify(&self, url: &str, secret: &str, token: &str, outbound: Outbound) -> Endpoint {
        let http = match self.http.for_url(url, outbound) {
            Ok(http) => http,
            Err(why) => return Endpoint::Unavailable(format!("address refused: {why}")),
        };
        let sent = http
            .post(url)
            .bearer_auth(secret)
            .header("accept", "application/json")
            .form(&[("token", token), ("token_type_hint", "sso_token")])
            .send()
            .await;
        let mut res = match sent {
            Ok(res) => res,
            Err(e) => return Endpoint::Unavailable(describe(&e)),
        };
        let status = res.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            // sessiond's own credentials were refused: a misconfiguration, not the user's token.
            tracing::error!(url, %status, "the SSO verification endpoint refused sessiond's verifySecret");
            return Endpoint::Refused(format!("answered {status}"));
        }
        if status.is_client_error() {
            return Endpoint::Inactive;
        }
        if !status.is_success() {
            return Endpoint::Unavailable(format!("answered {status}"));
        }
        let mut body = Vec::new();
        loop {
            match res.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_ANSWER_BYTES {
                        return Endpoint::Unavailable("answer larger than 64 KiB".into());
                    }
                }
                Ok(None) => break,
                Err(e) => return Endpoint::Unavailable(describe(&e)),
            }
        }
        match serde_json::from_slice::<Answer>(&body) {
            Ok(Answer {
                active: true,
                sub: Some(sub),
                exp,
                aud,
                iss,
            }) => Endpoint::Active {
                sub,
                exp,
                aud: match aud {
                    None => Vec::new(),
                    Some(Audience::One(a)) => vec![a],
                    Some(Audience::Many(a)) => a,
                },
                iss,
            },
            Ok(Answer { active: true, .. }) => {
                Endpoint::Unavailable("an active answer without `sub`".into())
            }
            Ok(_) => Endpoint::Inactive,
            Err(e) => Endpoint::Unavailable(format!("not an introspection answer: {e}")),
        }
    }
}
