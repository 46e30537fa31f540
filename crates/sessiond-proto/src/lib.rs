//! The wire types of sessiond's public HTTP API, shared by the server, the client
//! (`sessiond-client`), the verifier (`sessiond-verify`) and the OpenAPI document.
//!
//! Plain data: no I/O, no dependency on tokio, the store or the hashing code. Every type
//! serialises to the JSON the API sends (camelCase except where the contract fixes OAuth
//! names such as `expires_in`).

pub mod auth;
pub mod error;
pub mod feed;
pub mod ids;
pub mod keys;
pub mod session;

pub use auth::{
    DeviceRequest, LoginRequest, Mode, ReauthenticateRequest, RefreshRequest, SsoRequest,
    TokenResponse,
};
pub use error::{ErrorCode, Problem};
pub use feed::{Cutoff, FeedEvent, FeedMessage, KeysChanged, SessionRevoked};
pub use keys::Introspection;
pub use keys::{Jwk, Jwks};
pub use session::{
    AuthMethod, DeviceView, LogoutUserRequest, PartnerLogoutResponse, RevokeReason,
    RevokedResponse, SessionState, SessionView, SessionsResponse, WhoamiResponse,
};

/// Request headers of the end-user API.
pub mod headers {
    /// The tenant every end-user request belongs to.
    pub const TENANT_ID: &str = "x-tenant-id";
    /// The caller's id for one user flow (a UUID); echoed on every response.
    pub const ACTIVITY_ID: &str = "x-activity-id";
    /// The FinHub form of the session token (instead of `Authorization: Bearer`).
    pub const USER_SESSION_TOKEN: &str = "x-user-session-token";
    /// The partner backend's shared secret.
    pub const PARTNER_SECRET: &str = "x-partner-secret";
    /// Cookie mode: the CSRF token on state-changing requests.
    pub const CSRF_TOKEN: &str = "x-csrf-token";
}

/// Paths of the public API.
pub mod paths {
    pub const LOGIN: &str = "/api/v2/auth/login";
    pub const SSO: &str = "/api/v2/auth/sso";
    pub const REFRESH: &str = "/api/v2/auth/refresh";
    pub const LOGOUT: &str = "/api/v2/auth/logout";
    pub const LOGOUT_ALL: &str = "/api/v2/auth/logout-all";
    pub const REAUTHENTICATE: &str = "/api/v2/auth/reauthenticate";
    pub const SESSION: &str = "/api/v2/session";
    pub const SESSIONS: &str = "/api/v2/sessions";
    pub const PARTNER_LOGOUT_USER: &str = "/v1/auth/partner/logout-user";
    pub const JWKS: &str = "/.well-known/jwks.json";
    pub const DISCOVERY: &str = "/.well-known/openid-configuration";
    pub const INTROSPECT: &str = "/oauth2/introspect";
    pub const REVOKE: &str = "/oauth2/revoke";
    pub const REVOCATION_FEED: &str = "/oauth2/revocations";
}
