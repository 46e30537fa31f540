//! The one place where errors become HTTP: every problem+json `code` is decided here.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sessiond_core::CoreError;
use sessiond_proto::{ErrorCode, Problem};
use sessiond_store::StoreError;

/// An API error: a status, a contract `code` and a human-readable detail. Rendered as an RFC
/// 9457 [`Problem`] ([`ApiError::problem`]) by [`crate::middleware::echo_headers`], which
/// knows the activity id.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub detail: String,
    /// Seconds, sent as `Retry-After` (with `rate_limited` and `store_unavailable`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, detail)
    }

    pub fn missing_header(name: &str) -> Self {
        let status = if name.eq_ignore_ascii_case("authorization") {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(
            status,
            ErrorCode::MissingHeader,
            format!("the {name} header is required"),
        )
    }

    pub fn invalid_header(name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidHeader,
            format!("the {name} header {why}"),
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{what} not found"),
        )
    }

    pub fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }

    /// The problem+json body of this error, for the request `activity_id`.
    pub fn problem(&self, activity_id: &str) -> Problem {
        Problem {
            r#type: Problem::type_uri(self.code),
            title: self.title().to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code,
            activity_id: activity_id.to_owned(),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            CoreError::InvalidRequest(_) => (S::BAD_REQUEST, ErrorCode::InvalidRequest),
            CoreError::Conflict(_) => (S::CONFLICT, ErrorCode::InvalidRequest),
            CoreError::UnknownTenant => (S::BAD_REQUEST, ErrorCode::UnknownTenant),
            CoreError::TenantMismatch => (S::UNAUTHORIZED, ErrorCode::TenantMismatch),
            CoreError::InvalidCredentials => (S::UNAUTHORIZED, ErrorCode::InvalidCredentials),
            CoreError::AccountDisabled => (S::FORBIDDEN, ErrorCode::AccountDisabled),
            CoreError::TokenInvalid => (S::UNAUTHORIZED, ErrorCode::TokenInvalid),
            CoreError::TokenExpired => (S::UNAUTHORIZED, ErrorCode::TokenExpired),
            CoreError::SessionRevoked => (S::UNAUTHORIZED, ErrorCode::SessionRevoked),
            CoreError::SessionDisplaced => (S::UNAUTHORIZED, ErrorCode::SessionDisplaced),
            CoreError::SessionExpired => (S::UNAUTHORIZED, ErrorCode::SessionExpired),
            CoreError::RefreshTokenInvalid => (S::UNAUTHORIZED, ErrorCode::RefreshTokenInvalid),
            CoreError::RefreshTokenReused => (S::UNAUTHORIZED, ErrorCode::RefreshTokenReused),
            CoreError::RefreshNotEnabled => (S::BAD_REQUEST, ErrorCode::RefreshNotEnabled),
            CoreError::SsoTokenInvalid => (S::UNAUTHORIZED, ErrorCode::SsoTokenInvalid),
            CoreError::ReauthenticationRequired => {
                (S::UNAUTHORIZED, ErrorCode::ReauthenticationRequired)
            }
            CoreError::SsoUnavailable { retry_after } => {
                let mut e = Self::new(
                    S::SERVICE_UNAVAILABLE,
                    ErrorCode::SsoUnavailable,
                    e.to_string(),
                );
                e.retry_after = Some(*retry_after);
                return e;
            }
            CoreError::InvalidPartnerSecret => (S::UNAUTHORIZED, ErrorCode::InvalidPartnerSecret),
            CoreError::InvalidClient => (S::UNAUTHORIZED, ErrorCode::Forbidden),
            CoreError::RateLimited { retry_after } => {
                let mut e = Self::new(S::TOO_MANY_REQUESTS, ErrorCode::RateLimited, e.to_string());
                e.retry_after = Some(*retry_after);
                return e;
            }
            CoreError::Forbidden(_) => (S::FORBIDDEN, ErrorCode::Forbidden),
            CoreError::NotFound(_) => (S::NOT_FOUND, ErrorCode::NotFound),
            CoreError::Internal(_) | CoreError::Store(StoreError::Backend(_)) => {
                tracing::error!(error = %e, "request failed");
                return Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    ErrorCode::InternalError,
                    "the server failed; see its log",
                );
            }
            CoreError::Store(StoreError::Unavailable(_)) => {
                tracing::warn!(error = %e, "store unavailable");
                let mut e = Self::new(
                    S::SERVICE_UNAVAILABLE,
                    ErrorCode::StoreUnavailable,
                    "the session store is unavailable; retry shortly",
                );
                e.retry_after = Some(1);
                return e;
            }
            CoreError::Store(StoreError::Conflict) => (S::CONFLICT, ErrorCode::InvalidRequest),
            CoreError::Store(StoreError::LimitReached) => (S::FORBIDDEN, ErrorCode::Forbidden),
        };
        Self::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        if self.status == StatusCode::UNAUTHORIZED && self.code != ErrorCode::InvalidCredentials {
            // RFC 9470: a valid token whose authentication is too old asks for a new one.
            let challenge = if self.code == ErrorCode::ReauthenticationRequired {
                "Bearer error=\"insufficient_user_authentication\""
            } else {
                "Bearer error=\"invalid_token\""
            };
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The problem+json body: RFC 9457 members, the contract's code and the activity id.
    #[test]
    fn an_error_renders_as_a_problem() {
        let e = ApiError::from(CoreError::TokenExpired);
        let json = serde_json::to_value(e.problem("a1")).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "https://sessiond.dev/problems/token_expired",
                "title": "Unauthorized",
                "status": 401,
                "detail": CoreError::TokenExpired.to_string(),
                "code": "token_expired",
                "activityId": "a1",
            })
        );
    }
}
