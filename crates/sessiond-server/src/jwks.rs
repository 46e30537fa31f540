//! Fetching a partner's JWKS over HTTP(S), bounded in time and size, from the destinations
//! the tenant's profile allows (see [`crate::outbound`]).

use crate::outbound::{OutboundClients, describe};
use async_trait::async_trait;
use sessiond_core::outbound::Outbound;
use sessiond_core::sso::JwksFetcher;
use std::time::Duration;

const MAX_JWKS_BYTES: usize = 1024 * 1024;

pub struct HttpJwksFetcher {
    http: OutboundClients,
}

impl HttpJwksFetcher {
    pub fn new() -> Self {
        Self {
            http: OutboundClients::new(Duration::from_secs(5)),
        }
    }
}

#[async_trait]
impl JwksFetcher for HttpJwksFetcher {
    async fn fetch(&self, url: &str, outbound: Outbound) -> Result<String, String> {
        let http = self.http.for_url(url, outbound)?;
        let mut res = http.get(url).send().await.map_err(|e| describe(&e))?;
        if !res.status().is_success() {
            return Err(format!("HTTP {}", res.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| describe(&e))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err("JWKS larger than 1 MiB".into());
            }
        }
        String::from_utf8(body).map_err(|e| e.to_string())
    }
}
