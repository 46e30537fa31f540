//! A typed async client of sessiond's end-user API, with automatic single-flight refresh.
//!
//! [`Client`] covers every end-user endpoint: [`login`](Client::login),
//! [`sso`](Client::sso), [`refresh`](Client::refresh), [`logout`](Client::logout),
//! [`logout_all`](Client::logout_all), [`whoami`](Client::whoami),
//! [`sessions`](Client::sessions), [`revoke_session`](Client::revoke_session) and
//! [`revoke_other_sessions`](Client::revoke_other_sessions). Each call sends `X-Tenant-ID`
//! and a fresh `X-Activity-ID`; error answers (RFC 9457 problem+json) become [`Error`].
//!
//! The client keeps one session in a [`TokenStore`] ([`MemoryStore`] unless you give it
//! another). [`Client::token`] returns a token valid now and refreshes it once the
//! configured share of its lifetime is left (0.2 by default, plus a random jitter). Clones of
//! a client share the session, and however many tasks need the token at once, one refresh
//! request goes out; when the server ends the session (revoked, displaced, expired, the
//! refresh token reused), every one of them gets [`Error::ReloginRequired`] and the stored
//! session is cleared. Tokens print as `<redacted>` in `Debug` output and are never logged.
//!
//! ```no_run
//! use sessiond_client::{Client, Error};
//!
//! # async fn run() -> Result<(), Error> {
//! let client = Client::new("https://sessions.example.com", "1234567")?;
//! let session = client.login("alice", "correct horse battery").await?;
//! println!("logged in: session {}", session.session_id);
//!
//! // Anywhere, from any number of tasks: a token valid now, refreshed when due.
//! let token = client.token().await?;
//! let _request = reqwest::Client::new()
//!     .get("https://api.example.com/orders")
//!     .bearer_auth(token.expose());
//!
//! match client.whoami().await {
//!     Ok(me) => println!("user {} until {}", me.session.user_id, me.token_expires_at),
//!     Err(Error::ReloginRequired { code }) => println!("log in again ({code:?})"),
//!     Err(e) => return Err(e),
//! }
//! client.logout().await
//! # }
//! ```
//!
//! Settings, a store of your own and an injected clock come through the builder:
//!
//! ```
//! use sessiond_client::{Client, MemoryStore};
//! use std::sync::Arc;
//!
//! let store = Arc::new(MemoryStore::new());
//! let client = Client::builder("http://127.0.0.1:8080", "1234567")
//!     .refresh_share(0.25)
//!     .jitter(0.0)
//!     .store(store.clone())
//!     .build()?;
//! assert!(client.session()?.is_none());
//! # Ok::<(), sessiond_client::Error>(())
//! ```

mod client;
mod error;
mod session;

pub use client::{
    Client, ClientBuilder, DEFAULT_JITTER, DEFAULT_REFRESH_SHARE, DEFAULT_REFRESH_TIMEOUT,
};
pub use error::Error;
pub use session::{MemoryStore, Session, Token, TokenStore};
/// The wire types the client's calls return (re-exported from `sessiond-proto`).
pub use sessiond_proto::{
    DeviceRequest, ErrorCode, LoginRequest, Problem, ReauthenticateRequest, SessionState,
    SessionView, SsoRequest, WhoamiResponse,
};
