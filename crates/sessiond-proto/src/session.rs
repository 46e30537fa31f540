//! Sessions as the API shows them: whoami, the user's session list, revocations.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub label: Option<String>,
}

/// A session's state at the time of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Active,
    Revoked,
    Expired,
}

/// A session as the API shows it (times are Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub session_id: String,
    pub tenant_id: String,
    pub user_id: uuid::Uuid,
    pub customer_id: uuid::Uuid,
    /// `password` or `sso`.
    #[schema(example = "password")]
    pub auth_method: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// Absent when the session has no idle timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub idle_expires_at: Option<i64>,
    pub absolute_expires_at: i64,
    pub device: DeviceView,
    pub state: SessionState,
    /// Present when `state` is `revoked`: `logout`, `logout_all`, `displaced`,
    /// `partner_logout`, `admin`, `reuse_detected` or `password_changed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevokedResponse {
    /// How many sessions this request revoked.
    pub revoked: usize,
}

/// The partner backend's logout of one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogoutUserRequest {
    /// The partner's id for the user (its external id) or sessiond's user id.
    pub user_id: String,
}
