//! Request and response bodies of the HTTP API (camelCase JSON, as the contract shows).

use crate::openapi as oa;
use serde::{Deserialize, Serialize};
use sessiond_core::{Issued, Policy, TenantPolicy};
use sessiond_store::{
    AuditEvent, AuthMethod, CustomerId, KeyState, PolicyOverrides, Profile, Session, SessionId,
    SessionStatus, StoredKey, TenantId, UnixTime, User, UserId,
};
use utoipa::ToSchema;

/// The device a new session is created on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceRequest {
    /// A label for the device (kept to 128 characters).
    pub label: Option<String>,
}

/// Unknown members are refused (e.g. `"mode": "cookie"`, which this build does not offer).
/// Where login, SSO and refresh put the tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
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

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(max_length = 256)]
    pub username: String,
    #[schema(max_length = 1024)]
    pub password: String,
    pub device: Option<DeviceRequest>,
    #[serde(default)]
    pub mode: Mode,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoRequest {
    /// The partner-signed JWT.
    pub sso_token: String,
    pub device: Option<DeviceRequest>,
    #[serde(default)]
    pub mode: Mode,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    /// Absent in cookie mode: the refresh cookie is used.
    pub refresh_token: Option<String>,
}

/// The TokenResponse of login and refresh (DESIGN §5).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    /// The session token's lifetime, seconds.
    #[serde(rename = "expires_in")]
    pub expires_in: i64,
    #[serde(rename = "token_type")]
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    #[schema(value_type = String, example = "session")]
    pub scope: &'static str,
    #[schema(value_type = uuid::Uuid)]
    pub customer_id: CustomerId,
    #[schema(value_type = oa::TenantId)]
    pub tenant_id: TenantId,
    #[schema(value_type = oa::SessionId)]
    pub session_id: SessionId,
    /// The session token (a JWT, `typ: at+jwt`); absent in cookie mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub user_session_token: Option<String>,
    /// The refresh token; absent where the profile issues none, and in cookie mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub refresh_token: Option<String>,
    /// The refresh token's lifetime, seconds; absent where the profile issues none.
    #[serde(rename = "refresh_expires_in", skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub refresh_expires_in: Option<i64>,
    /// Cookie mode: send it back as `X-CSRF-Token` on state-changing requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub csrf_token: Option<String>,
}

impl From<Issued> for TokenResponse {
    fn from(i: Issued) -> Self {
        Self {
            expires_in: i.expires_in,
            token_type: "Bearer",
            scope: sessiond_core::engine::SCOPE,
            customer_id: i.session.customer_id,
            tenant_id: i.session.tenant_id,
            session_id: i.session.id,
            user_session_token: Some(i.session_token),
            refresh_token: i.refresh_token,
            refresh_expires_in: i.refresh_expires_in,
            csrf_token: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub label: Option<String>,
}

/// A session as the API shows it (times are Unix seconds).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    #[schema(value_type = oa::SessionId)]
    pub session_id: SessionId,
    #[schema(value_type = oa::TenantId)]
    pub tenant_id: TenantId,
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    #[schema(value_type = uuid::Uuid)]
    pub customer_id: CustomerId,
    #[schema(value_type = oa::AuthMethod)]
    pub auth_method: AuthMethod,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
    #[schema(value_type = i64)]
    pub last_seen_at: UnixTime,
    /// Absent when the session has no idle timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = i64, required = false)]
    pub idle_expires_at: Option<UnixTime>,
    #[schema(value_type = i64)]
    pub absolute_expires_at: UnixTime,
    pub device: DeviceView,
    #[schema(value_type = oa::SessionState)]
    pub state: &'static str,
    /// Present when `state` is `revoked`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = oa::RevokeReason, required = false)]
    pub revoked_reason: Option<&'static str>,
    /// In the user's own session list: whether this is the session of the calling token.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub current: Option<bool>,
}

impl SessionView {
    pub fn new(s: Session, now: UnixTime, current: Option<&SessionId>) -> Self {
        let (state, revoked_reason) = match s.status_at(now) {
            SessionStatus::Active => ("active", None),
            SessionStatus::Revoked(r) => ("revoked", Some(r.as_str())),
            SessionStatus::Expired => ("expired", None),
        };
        Self {
            idle_expires_at: s.idle_expires_at(),
            current: current.map(|c| c == &s.id),
            session_id: s.id,
            tenant_id: s.tenant_id,
            user_id: s.user_id,
            customer_id: s.customer_id,
            auth_method: s.auth_method,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            absolute_expires_at: s.absolute_expires_at,
            device: DeviceView {
                user_agent: s.device.user_agent,
                ip: s.device.ip,
                label: s.device.label,
            },
            state,
            revoked_reason,
        }
    }
}

/// whoami: the session and what the token says.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoamiResponse {
    #[serde(flatten)]
    pub session: SessionView,
    /// The token's scope.
    pub scope: String,
    /// The token's `exp` (Unix seconds).
    #[schema(value_type = i64)]
    pub token_expires_at: UnixTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsResponse {
    pub sessions: Vec<SessionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedResponse {
    /// How many sessions this request revoked.
    pub revoked: usize,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// 1 to 64 characters of `A-Z`, `a-z`, `0-9`, `-` and `_`.
    #[schema(value_type = oa::TenantId)]
    pub id: String,
    pub name: Option<String>,
    #[schema(value_type = oa::Profile)]
    pub profile: Profile,
    #[serde(default)]
    #[schema(value_type = oa::PolicyOverrides)]
    pub policy: PolicyOverrides,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantResponse {
    #[schema(value_type = oa::TenantId)]
    pub id: TenantId,
    pub name: Option<String>,
    #[schema(value_type = oa::Profile)]
    pub profile: Profile,
    /// The effective policy.
    #[schema(value_type = oa::Policy)]
    pub policy: Policy,
    /// The tenant's own overrides of its profile's defaults.
    #[schema(value_type = oa::PolicyOverrides)]
    pub overrides: PolicyOverrides,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
}

impl From<&TenantPolicy> for TenantResponse {
    fn from(t: &TenantPolicy) -> Self {
        Self {
            id: t.tenant.id.clone(),
            name: t.tenant.name.clone(),
            profile: t.tenant.profile,
            policy: t.policy.clone(),
            overrides: t.tenant.overrides.clone(),
            created_at: t.tenant.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUserRequest {
    /// 1 to 256 characters (NFC), no control characters or surrounding spaces.
    pub username: String,
    /// 8 to 1024 characters.
    pub password: String,
    /// Generated when absent.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub customer_id: Option<CustomerId>,
    /// The partner's id for this user (the SSO token's `sub`).
    pub external_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserResponse {
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    #[schema(value_type = uuid::Uuid)]
    pub customer_id: CustomerId,
    /// `null` for users provisioned by SSO.
    pub username: Option<String>,
    #[schema(value_type = oa::UserStatus)]
    pub status: sessiond_store::UserStatus,
}

impl From<User> for UserResponse {
    fn from(u: User) -> Self {
        Self {
            user_id: u.id,
            customer_id: u.customer_id,
            username: u.username,
            status: u.status,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    /// 8 to 1024 characters.
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditResponse {
    /// Newest first.
    #[schema(value_type = Vec<oa::AuditEvent>)]
    pub events: Vec<AuditEvent>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub kid: String,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    #[schema(value_type = oa::KeyState)]
    pub state: KeyState,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
    /// Retiring keys: when they leave the JWKS (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = i64, required = false)]
    pub retire_at: Option<UnixTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeysResponse {
    pub keys: Vec<KeyView>,
}

impl From<Vec<StoredKey>> for KeysResponse {
    fn from(keys: Vec<StoredKey>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|k| KeyView {
                    kid: k.kid,
                    alg: k.alg,
                    state: k.state,
                    created_at: k.created_at,
                    retire_at: k.retire_at,
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerSecretResponse {
    pub secret_id: String,
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateClientRequest {
    /// Generated when absent.
    pub client_id: Option<String>,
    /// The audience of the client's internal access tokens.
    pub audience: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientResponse {
    pub client_id: String,
    pub client_secret: String,
}
