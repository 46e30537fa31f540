//! Sessions as the API shows them: whoami, the user's session list, revocations.

use crate::ids;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub label: Option<String>,
}

/// A session's state at the time of the response (timeouts included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Active,
    Revoked,
    Expired,
}

/// How a session was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    Password,
    Sso,
}

/// Why a session was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    Logout,
    LogoutAll,
    Displaced,
    PartnerLogout,
    Admin,
    ReuseDetected,
    PasswordChanged,
}

/// A session as the API shows it (times are Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    #[schema(value_type = ids::SessionId)]
    pub session_id: String,
    #[schema(value_type = ids::TenantId)]
    pub tenant_id: String,
    pub user_id: uuid::Uuid,
    pub customer_id: uuid::Uuid,
    /// `password` or `sso`.
    #[schema(value_type = AuthMethod)]
    pub auth_method: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// Absent when the session has no idle timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub idle_expires_at: Option<i64>,
    pub absolute_expires_at: i64,
    pub device: DeviceView,
    pub state: SessionState,
    /// Present when `state` is `revoked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = RevokeReason, required = false)]
    pub revoked_reason: Option<String>,
    /// In the user's own session list: whether this is the session of the calling token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub current: Option<bool>,
}

/// whoami: the session and what the token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoamiResponse {
    #[serde(flatten)]
    pub session: SessionView,
    /// The token's scope.
    pub scope: String,
    /// The token's `exp` (Unix seconds).
    pub token_expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionsResponse {
    pub sessions: Vec<SessionView>,
    /// Admin listings: pass as `cursor` for the next page; absent on the last.
    #[serde(
        rename = "nextCursor",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(required = false, nullable = false)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevokedResponse {
    /// How many sessions this request revoked.
    pub revoked: usize,
}

/// The partner backend's logout of one user. Unknown members are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PartnerLogoutRequest)]
pub struct LogoutUserRequest {
    /// sessiond's user id, or the partner's user id (the SSO token's `sub`).
    #[schema(min_length = 1, max_length = 256)]
    pub user_id: String,
}

/// The answer to the partner backend's logout of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartnerLogoutResponse {
    /// Always `true`; also for a user sessiond has never seen.
    pub success: bool,
    /// How many sessions were revoked.
    pub revoked: usize,
}
