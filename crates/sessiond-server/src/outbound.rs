//! HTTP clients for the requests sessiond makes for a tenant (JWKS fetches, webhook
//! deliveries). What a tenant may reach is decided by `sessiond_core::outbound`; this module
//! enforces it when connecting: a production tenant's URL is checked again before each
//! request (IP literals never reach a resolver), and its host name is resolved by a resolver
//! that drops every non-public address — so a name pointing at 127.0.0.1, or re-pointed there
//! after it was set (DNS rebinding), is never connected to. Neither client follows redirects;
//! the production one ignores proxy settings from the environment (a proxy would resolve the
//! name itself).

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sessiond_core::outbound::{Outbound, is_public};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub(crate) struct OutboundClients {
    any: reqwest::Client,
    /// `None` if it could not be built: production tenants' requests are then refused.
    public_only: Option<reqwest::Client>,
}

impl OutboundClients {
    pub(crate) fn new(timeout: Duration) -> Self {
        let builder = || {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
        };
        let public_only = builder()
            .no_proxy()
            .dns_resolver(Arc::new(PublicOnlyResolver))
            .build()
            .inspect_err(|e| tracing::error!(error = %e, "no HTTP client for production tenants"))
            .ok();
        Self {
            any: builder().build().unwrap_or_default(),
            public_only,
        }
    }

    /// The client to request `url` with under `outbound`, or why `url` may not be requested.
    pub(crate) fn for_url(
        &self,
        url: &str,
        outbound: Outbound,
    ) -> Result<&reqwest::Client, String> {
        outbound.check_url(url)?;
        match outbound {
            Outbound::Any => Ok(&self.any),
            Outbound::PublicOnly => self
                .public_only
                .as_ref()
                .ok_or_else(|| "no HTTP client for production tenants".to_owned()),
        }
    }
}

/// An error and its causes, for logs (reqwest's own message omits the cause).
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Resolves with the system resolver and keeps only public addresses.
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = resolved.filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                tracing::warn!(host, "outbound request refused: no public address");
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn the_production_resolver_drops_loopback_addresses() {
        let name: Name = "localhost".parse().unwrap();
        let r = PublicOnlyResolver.resolve(name).await;
        let err = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("no public address"), "{err}");
    }

    /// The production client itself (without the URL check) never connects to a name that
    /// resolves to loopback; the other client does.
    #[tokio::test]
    async fn the_production_client_connects_only_to_public_addresses() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { "ok" }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://localhost:{}/",
            listener.local_addr().unwrap().port()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let c = OutboundClients::new(Duration::from_secs(5));
        let guarded = c.public_only.as_ref().unwrap();
        let err = guarded.get(&url).send().await.err().unwrap();
        assert!(describe(&err).contains("no public address"), "{err:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 0);
        let ok = c.any.get(&url).send().await.unwrap();
        assert!(ok.status().is_success());
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn production_urls_are_checked_before_any_connection() {
        let c = OutboundClients::new(Duration::from_secs(1));
        for url in [
            "http://127.0.0.1:1/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost/",
        ] {
            assert!(c.for_url(url, Outbound::PublicOnly).is_err(), "{url}");
            assert!(c.for_url(url, Outbound::Any).is_ok(), "{url}");
        }
    }
}
