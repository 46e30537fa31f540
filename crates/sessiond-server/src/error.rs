//! The one place where errors become HTTP: every problem+json `code` is decided here.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sessiond_core::CoreError;
use sessiond_store::StoreError;

/// An API error: a status, a contract `code` and a human-readable detail. Rendered as RFC
/// 9457 problem+json by [`crate::middleware::echo_headers`], which adds the activity id.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Seconds, sent as `Retry-After` (with `rate_limited` and `store_unavailable`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }

    pub fn missing_header(name: &str) -> Self {
        let status = if name.eq_ignore_ascii_case("authorization") {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(
            status,
            "missing_header",
            format!("the {name} header is required"),
        )
    }

    pub fn invalid_header(name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            format!("the {name} header {why}"),
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            CoreError::InvalidRequest(_) => (S::BAD_REQUEST, "invalid_request"),
            CoreError::Conflict(_) => (S::CONFLICT, "invalid_request"),
            CoreError::UnknownTenant => (S::BAD_REQUEST, "unknown_tenant"),
            CoreError::TenantMismatch => (S::UNAUTHORIZED, "tenant_mismatch"),
            CoreError::InvalidCredentials => (S::UNAUTHORIZED, "invalid_credentials"),
            CoreError::AccountDisabled => (S::FORBIDDEN, "account_disabled"),
            CoreError::TokenInvalid => (S::UNAUTHORIZED, "token_invalid"),
            CoreError::TokenExpired => (S::UNAUTHORIZED, "token_expired"),
            CoreError::SessionRevoked => (S::UNAUTHORIZED, "session_revoked"),
            CoreError::SessionDisplaced => (S::UNAUTHORIZED, "session_displaced"),
            CoreError::SessionExpired => (S::UNAUTHORIZED, "session_expired"),
            CoreError::RefreshTokenInvalid => (S::UNAUTHORIZED, "refresh_token_invalid"),
            CoreError::RefreshTokenReused => (S::UNAUTHORIZED, "refresh_token_reused"),
            CoreError::RefreshNotEnabled => (S::BAD_REQUEST, "refresh_not_enabled"),
            CoreError::SsoTokenInvalid => (S::UNAUTHORIZED, "sso_token_invalid"),
            CoreError::InvalidPartnerSecret => (S::UNAUTHORIZED, "invalid_partner_secret"),
            CoreError::InvalidClient => (S::UNAUTHORIZED, "forbidden"),
            CoreError::RateLimited { retry_after } => {
                let mut e = Self::new(S::TOO_MANY_REQUESTS, "rate_limited", e.to_string());
                e.retry_after = Some(*retry_after);
                return e;
            }
            CoreError::Forbidden(_) => (S::FORBIDDEN, "forbidden"),
            CoreError::NotFound(_) => (S::NOT_FOUND, "not_found"),
            CoreError::Internal(_) | CoreError::Store(StoreError::Backend(_)) => {
                tracing::error!(error = %e, "request failed");
                return Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the server failed; see its log",
                );
            }
            CoreError::Store(StoreError::Unavailable(_)) => {
                tracing::warn!(error = %e, "store unavailable");
                let mut e = Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the session store is unavailable; retry shortly",
                );
                e.retry_after = Some(1);
                return e;
            }
            CoreError::Store(StoreError::Conflict) => (S::CONFLICT, "invalid_request"),
            CoreError::Store(StoreError::LimitReached) => (S::FORBIDDEN, "forbidden"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        if self.status == StatusCode::UNAUTHORIZED && self.code != "invalid_credentials" {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res.extensions_mut().insert(self);
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
