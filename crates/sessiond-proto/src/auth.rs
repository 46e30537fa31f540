//! Login, SSO and refresh: requests and the TokenResponse.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The device a new session is created on.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceRequest {
    /// A label for the device (kept to 128 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Where login, SSO and refresh put the tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(
    description = "Where login, SSO and refresh put the tokens: in the body (default), or \
    in `__Host-` cookies with only the CSRF token in the body."
)]
pub enum Mode {
    #[default]
    Body,
    /// `__Host-` cookies; the body carries only the CSRF token.
    Cookie,
}

impl Mode {
    fn is_body(&self) -> bool {
        *self == Mode::Body
    }
}

/// Unknown members are refused (e.g. a misspelt `"devcie"`).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(max_length = 256)]
    pub username: String,
    #[schema(max_length = 1024)]
    pub password: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceRequest>,
    #[serde(default, skip_serializing_if = "Mode::is_body")]
    pub mode: Mode,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("device", &self.device)
            .field("mode", &self.mode)
            .finish()
    }
}

#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoRequest {
    /// The partner-signed JWT.
    pub sso_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceRequest>,
    #[serde(default, skip_serializing_if = "Mode::is_body")]
    pub mode: Mode,
}

impl std::fmt::Debug for SsoRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoRequest")
            .field("sso_token", &"<redacted>")
            .field("device", &self.device)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Proof for a re-authentication (step-up): exactly one of `password` (a session created
/// with a password) and `ssoToken` (a fresh SSO token of the same partner user, for a session
/// created with one).
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReauthenticateRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sso_token: Option<String>,
}

impl std::fmt::Debug for ReauthenticateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("ReauthenticateRequest")
            .field("password", &redacted(&self.password))
            .field("sso_token", &redacted(&self.sso_token))
            .finish()
    }
}

#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    /// Absent in cookie mode: the refresh cookie is used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshRequest")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The TokenResponse of login, SSO and refresh.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    /// The session token's lifetime, seconds.
    #[serde(rename = "expires_in")]
    pub expires_in: i64,
    #[serde(rename = "token_type")]
    #[schema(example = "Bearer")]
    pub token_type: String,
    #[schema(example = "session")]
    pub scope: String,
    pub customer_id: uuid::Uuid,
    /// The tenant id (`X-Tenant-ID`).
    #[schema(value_type = crate::ids::TenantId)]
    pub tenant_id: String,
    /// The session id.
    #[schema(value_type = crate::ids::SessionId)]
    pub session_id: String,
    /// The session token (a JWT, `typ: at+jwt`); absent in cookie mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub user_session_token: Option<String>,
    /// The refresh token; absent where the profile issues none, and in cookie mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub refresh_token: Option<String>,
    /// The refresh token's lifetime, seconds; absent where the profile issues none.
    #[serde(
        rename = "refresh_expires_in",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub refresh_expires_in: Option<i64>,
    /// Cookie mode: send it back as `X-CSRF-Token` on state-changing requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub csrf_token: Option<String>,
}

/// Tokens never reach `Debug` output (logs, panics).
impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("token_type", &self.token_type)
            .field("scope", &self.scope)
            .field("customer_id", &self.customer_id)
            .field("tenant_id", &self.tenant_id)
            .field("session_id", &self.session_id)
            .field("user_session_token", &redacted(&self.user_session_token))
            .field("refresh_token", &redacted(&self.refresh_token))
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("csrf_token", &redacted(&self.csrf_token))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let t = TokenResponse {
            expires_in: 60,
            token_type: "Bearer".into(),
            scope: "session".into(),
            customer_id: uuid::Uuid::nil(),
            tenant_id: "t".into(),
            session_id: "s".into(),
            user_session_token: Some("eyJsecret".into()),
            refresh_token: Some("rt-secret".into()),
            refresh_expires_in: Some(60),
            csrf_token: Some("csrf-secret".into()),
        };
        let l = LoginRequest {
            username: "alice".into(),
            password: "pw-secret".into(),
            device: None,
            mode: Mode::Body,
        };
        let r = RefreshRequest {
            refresh_token: Some("rt-secret".into()),
        };
        let s = SsoRequest {
            sso_token: "sso-secret".into(),
            device: None,
            mode: Mode::Body,
        };
        let all = format!("{t:?} {l:?} {r:?} {s:?}");
        assert!(!all.contains("secret"), "{all}");
        assert!(all.contains("alice"));
    }

    #[test]
    fn a_body_mode_request_serialises_without_mode() {
        let l = LoginRequest {
            username: "a".into(),
            password: "b".into(),
            device: None,
            mode: Mode::Body,
        };
        let json = serde_json::to_value(&l).unwrap_or_default();
        assert_eq!(json, serde_json::json!({"username": "a", "password": "b"}));
    }
}
