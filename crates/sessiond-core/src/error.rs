//! The domain errors of sessiond. The server maps each to its problem+json `code` in one place.

use sessiond_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("unknown tenant")]
    UnknownTenant,
    #[error("the token belongs to another tenant")]
    TenantMismatch,
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("the account is disabled")]
    AccountDisabled,
    #[error("the token is invalid")]
    TokenInvalid,
    #[error("the token has expired")]
    TokenExpired,
    #[error("the session has been revoked")]
    SessionRevoked,
    #[error("the session was ended by a newer login (session limit)")]
    SessionDisplaced,
    #[error("the session has expired")]
    SessionExpired,
    #[error("the refresh token is invalid")]
    RefreshTokenInvalid,
    #[error("the refresh token was already used; the session has been revoked")]
    RefreshTokenReused,
    #[error("this tenant's profile issues no refresh tokens")]
    RefreshNotEnabled,
    #[error("the SSO token is invalid, expired, already used, or not trusted by this tenant")]
    SsoTokenInvalid,
    #[error("invalid partner secret")]
    InvalidPartnerSecret,
    #[error("this operation needs a recent authentication: re-authenticate the session first")]
    ReauthenticationRequired,
    #[error(
        "the partner's SSO verification endpoint could not be asked or gave no usable answer; retry in {retry_after} s"
    )]
    SsoUnavailable { retry_after: u64 },
    #[error("invalid client credentials")]
    InvalidClient,
    #[error("too many requests; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type CoreResult<T> = Result<T, CoreError>;
