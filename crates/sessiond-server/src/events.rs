//! Delivers session events over HTTP (see `sessiond_core::events`): a back-channel logout
//! token as `logout_token=<JWT>`, form-encoded (OpenID Connect Back-Channel Logout 1.0 §2.5),
//! a CAEP Security Event Token as an `application/secevent+jwt` body (RFC 8935 §2). A
//! production tenant's receivers are reached only at public addresses (see
//! [`crate::outbound`]), never through redirects.

use crate::outbound::{OutboundClients, describe};
use sessiond_core::events::{Channel, Deliver, Delivery, Outcome};
use std::time::Duration;

pub struct HttpDeliver {
    http: OutboundClients,
}

impl HttpDeliver {
    /// Each attempt gives up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            http: OutboundClients::new(timeout),
        }
    }
}

#[async_trait::async_trait]
impl Deliver for HttpDeliver {
    async fn post(&self, d: &Delivery, token: &str) -> Outcome {
        let http = match self.http.for_url(&d.url, d.outbound) {
            Ok(http) => http,
            Err(why) => return Outcome::Refused(format!("address refused: {why}")),
        };
        let req = match d.channel {
            Channel::BackchannelLogout => http
                .post(&d.url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("logout_token={token}")),
            Channel::Caep => http
                .post(&d.url)
                .header("content-type", "application/secevent+jwt")
                .header("accept", "application/json")
                .body(token.to_owned()),
        };
        match req.send().await {
            Ok(r) if r.status().is_success() => Outcome::Delivered,
            Ok(r) => {
                let status = r.status();
                // A receiver that cannot use the event says so with a 4xx (both specifications
                // answer 400); another attempt would get the same answer. A 408 or 429, a
                // 5xx and a redirect (not followed) are worth another try.
                if status.is_client_error()
                    && status != reqwest::StatusCode::REQUEST_TIMEOUT
                    && status != reqwest::StatusCode::TOO_MANY_REQUESTS
                {
                    Outcome::Refused(format!("answered {status}"))
                } else {
                    Outcome::Retry(format!("answered {status}"))
                }
            }
            Err(e) => Outcome::Retry(describe(&e)),
        }
    }
}
