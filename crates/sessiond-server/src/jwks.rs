//! Fetching a partner's JWKS over HTTP(S), bounded in time and size.

use async_trait::async_trait;
use sessiond_core::sso::JwksFetcher;
use std::time::Duration;

const MAX_JWKS_BYTES: usize = 1024 * 1024;

pub struct HttpJwksFetcher {
    http: reqwest::Client,
}

impl HttpJwksFetcher {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { http }
    }
}

#[async_trait]
impl JwksFetcher for HttpJwksFetcher {
    async fn fetch(&self, url: &str) -> Result<String, String> {
        let mut res = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("HTTP {}", res.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err("JWKS larger than 1 MiB".into());
            }
        }
        String::from_utf8(body).map_err(|e| e.to_string())
    }
}
