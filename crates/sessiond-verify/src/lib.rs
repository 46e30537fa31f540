//! Offline verification of sessiond session tokens for resource servers.
//!
//! A [`Verifier`] checks a token's signature against the deployment's JWKS (cached, refetched
//! on an unknown `kid` at most once per short interval, the algorithm pinned per key) and its
//! claims (`typ`, `iss`, `aud`, `exp`, `nbf`, `tid`), then refuses what the revocation feed
//! (`GET /oauth2/revocations`, Server-Sent Events) says has ended: a logged-out session, a
//! user's cut-off, a key that left the JWKS. It follows the feed in a background task; when the
//! feed has been silent longer than its bound (or has not synced yet) the verifier either fails
//! closed or asks the server (introspection), as configured — it never silently trusts a stale
//! copy.
//!
//! [`VerifyLayer`] puts it in front of any tower/axum service; [`VerifiedClaims`] hands the
//! verified [`Claims`] to a handler.
//!
//! ```no_run
//! use sessiond_verify::{ClientCredentials, Config, VerifiedClaims, VerifyLayer, Verifier};
//!
//! # async fn run() -> Result<(), sessiond_verify::Error> {
//! let client = ClientCredentials { id: "billing".into(), secret: "…".into() };
//! let cfg = Config::new("https://auth.example.com", "https://auth.example.com", "sessiond",
//!     "1234567", client);
//! let verifier = Verifier::start(cfg).await?;
//! let app: axum::Router = axum::Router::new()
//!     .route("/me", axum::routing::get(|c: VerifiedClaims| async move { c.sub.to_string() }))
//!     .layer(VerifyLayer::new(verifier));
//! # Ok(()) }
//! ```
//!
//! Refusals are problem+json: 401 `token_invalid`, `token_expired`, `session_revoked`,
//! `missing_header` (no token) or `tenant_mismatch` (with
//! [`VerifyLayer::require_tenant_header`]); 503 `store_unavailable` with `Retry-After: 1` when
//! the revocation state is not current and the policy is [`StalePolicy::FailClosed`] (or
//! introspection failed).

mod clock;
mod config;
mod error;
mod feed;
mod inner;
mod keys;
mod layer;
mod revocations;
mod sse;
mod token;
mod verifier;

pub use clock::{Clock, SystemClock};
pub use config::{ClientCredentials, Config, StalePolicy};
pub use error::Error;
pub use layer::{VerifiedClaims, VerifyLayer, VerifyService};
pub use token::Claims;
pub use verifier::{FeedStatus, Verifier};
#[cfg(test)]
mod testing;
