//! The crate's one error type: why a token was refused, or why the verifier could not start.

use sessiond_proto::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No `Authorization: Bearer` nor `X-User-Session-Token` header.
    #[error("no session token: send `Authorization: Bearer <token>`")]
    MissingToken,
    #[error("token is malformed, unsigned, or signed by an unknown key")]
    TokenInvalid,
    #[error("token has expired")]
    TokenExpired,
    #[error("the session has ended")]
    SessionRevoked,
    /// The token's tenant is not the request's `X-Tenant-ID`.
    #[error("the token belongs to another tenant")]
    TenantMismatch,
    /// The revocation state is not current (the feed has been silent longer than its bound,
    /// has not synced, or a key change has not been fetched) and introspection is off or
    /// failed.
    #[error("revocation state unavailable; retry shortly")]
    Unavailable,
    /// A bad [`crate::Config`].
    #[error("invalid verifier configuration: {0}")]
    Config(String),
    /// The feed or the JWKS could not be read (kept inside the verifier; never a refusal).
    #[error("sessiond unreachable or misbehaving: {0}")]
    Upstream(String),
}

impl Error {
    /// The problem+json code the layer answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::MissingToken => ErrorCode::MissingHeader,
            Error::TokenInvalid => ErrorCode::TokenInvalid,
            Error::TokenExpired => ErrorCode::TokenExpired,
            Error::SessionRevoked => ErrorCode::SessionRevoked,
            Error::TenantMismatch => ErrorCode::TenantMismatch,
            Error::Unavailable | Error::Upstream(_) => ErrorCode::StoreUnavailable,
            Error::Config(_) => ErrorCode::InternalError,
        }
    }

    /// The HTTP status the layer answers with.
    pub fn status(&self) -> u16 {
        match self {
            Error::Unavailable | Error::Upstream(_) => 503,
            Error::Config(_) => 500,
            _ => 401,
        }
    }
}
