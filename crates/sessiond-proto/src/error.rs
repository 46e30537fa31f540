//! RFC 9457 problem details and the contract's error codes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The contract's error codes (`internal_error`, `store_unavailable` and `sso_unavailable`
/// only with 5xx).
///
/// Its OpenAPI schema lists the codes of [`ErrorCode::ALL`]: `Unknown` is no code the server
/// sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    MissingHeader,
    InvalidHeader,
    UnknownTenant,
    TenantMismatch,
    InvalidCredentials,
    AccountDisabled,
    TokenInvalid,
    TokenExpired,
    SessionRevoked,
    SessionDisplaced,
    SessionExpired,
    RefreshTokenInvalid,
    RefreshTokenReused,
    RefreshNotEnabled,
    InvalidPartnerSecret,
    SsoTokenInvalid,
    ReauthenticationRequired,
    RateLimited,
    /// Only with 503: a partner's SSO verification endpoint cannot be reached.
    SsoUnavailable,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    InternalError,
    StoreUnavailable,
    /// A code this version does not know (a newer server); kept so a client can still read
    /// the problem.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code the contract defines, in the contract's order.
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::InvalidRequest,
        ErrorCode::MissingHeader,
        ErrorCode::InvalidHeader,
        ErrorCode::UnknownTenant,
        ErrorCode::TenantMismatch,
        ErrorCode::InvalidCredentials,
        ErrorCode::AccountDisabled,
        ErrorCode::TokenInvalid,
        ErrorCode::TokenExpired,
        ErrorCode::SessionRevoked,
        ErrorCode::SessionDisplaced,
        ErrorCode::SessionExpired,
        ErrorCode::RefreshTokenInvalid,
        ErrorCode::RefreshTokenReused,
        ErrorCode::RefreshNotEnabled,
        ErrorCode::InvalidPartnerSecret,
        ErrorCode::SsoTokenInvalid,
        ErrorCode::ReauthenticationRequired,
        ErrorCode::RateLimited,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::PayloadTooLarge,
        ErrorCode::InternalError,
        ErrorCode::StoreUnavailable,
        ErrorCode::SsoUnavailable,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::MissingHeader => "missing_header",
            ErrorCode::InvalidHeader => "invalid_header",
            ErrorCode::UnknownTenant => "unknown_tenant",
            ErrorCode::TenantMismatch => "tenant_mismatch",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::AccountDisabled => "account_disabled",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::SessionRevoked => "session_revoked",
            ErrorCode::SessionDisplaced => "session_displaced",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::RefreshTokenInvalid => "refresh_token_invalid",
            ErrorCode::RefreshTokenReused => "refresh_token_reused",
            ErrorCode::RefreshNotEnabled => "refresh_not_enabled",
            ErrorCode::InvalidPartnerSecret => "invalid_partner_secret",
            ErrorCode::SsoTokenInvalid => "sso_token_invalid",
            ErrorCode::ReauthenticationRequired => "reauthentication_required",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::SsoUnavailable => "sso_unavailable",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// Does this code end the session for good, so that only a new login helps? (What a
    /// client turns into "log in again".)
    pub fn ends_session(self) -> bool {
        matches!(
            self,
            ErrorCode::SessionRevoked
                | ErrorCode::SessionDisplaced
                | ErrorCode::SessionExpired
                | ErrorCode::RefreshTokenInvalid
                | ErrorCode::RefreshTokenReused
                | ErrorCode::RefreshNotEnabled
                | ErrorCode::AccountDisabled
        )
    }
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "The contract's error codes (`internal_error`, `store_unavailable` and \
                 `sso_unavailable` only with 5xx).",
            ))
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl ToSchema for ErrorCode {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("ErrorCode")
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem: every error response of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// `https://sessiond.dev/problems/<code>`.
    #[serde(rename = "type")]
    #[schema(example = "https://sessiond.dev/problems/token_invalid")]
    pub r#type: String,
    /// The HTTP status's reason phrase.
    #[schema(example = "Unauthorized")]
    pub title: String,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599, example = 401)]
    pub status: u16,
    /// What went wrong, for humans.
    pub detail: String,
    pub code: ErrorCode,
    /// The request's `X-Activity-ID` (the client's, or a generated one).
    #[schema(format = Uuid)]
    pub activity_id: String,
}

impl Problem {
    /// The `type` URI of a code.
    pub fn type_uri(code: ErrorCode) -> String {
        format!("https://sessiond.dev/problems/{}", code.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_json() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap_or(ErrorCode::Unknown);
            assert_eq!(back, code);
        }
        let newer: ErrorCode =
            serde_json::from_str("\"quota_exceeded\"").unwrap_or(ErrorCode::InvalidRequest);
        assert_eq!(newer, ErrorCode::Unknown);
    }

    /// The schema lists the contract's codes, not `unknown`.
    #[test]
    fn the_schema_lists_the_contract_codes() {
        let schema = serde_json::to_value(<ErrorCode as utoipa::PartialSchema>::schema())
            .unwrap_or_default();
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(schema["enum"], serde_json::json!(codes));
        assert_eq!(schema["type"], "string");
        assert_eq!(<ErrorCode as ToSchema>::name(), "ErrorCode");
    }
}
