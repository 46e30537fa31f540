//! Request and response bodies of the HTTP API (camelCase JSON, as the contract shows).

use serde::{Deserialize, Serialize};
use sessiond_core::{Issued, Policy, TenantPolicy};
use sessiond_store::{
    AuditEvent, AuthMethod, CustomerId, KeyState, PolicyOverrides, Profile, Session, SessionId,
    SessionStatus, StoredKey, TenantId, UnixTime, User, UserId,
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceRequest {
    pub label: Option<String>,
}

/// Unknown members are refused (e.g. `"mode": "cookie"`, which this build does not offer).
/// Where login, SSO and refresh put the tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Body,
    /// `__Host-` cookies; the body carries only the CSRF token.
    Cookie,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    pub device: Option<DeviceRequest>,
    #[serde(default)]
    pub mode: Mode,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoRequest {
    pub sso_token: String,
    pub device: Option<DeviceRequest>,
    #[serde(default)]
    pub mode: Mode,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    /// Absent in cookie mode: the refresh cookie is used.
    pub refresh_token: Option<String>,
}

/// The TokenResponse of login and refresh (DESIGN §5).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    #[serde(rename = "expires_in")]
    pub expires_in: i64,
    #[serde(rename = "token_type")]
    pub token_type: &'static str,
    pub scope: &'static str,
    pub customer_id: CustomerId,
    pub tenant_id: TenantId,
    pub session_id: SessionId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_session_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(rename = "refresh_expires_in", skip_serializing_if = "Option::is_none")]
    pub refresh_expires_in: Option<i64>,
    /// Cookie mode: send it back as `X-CSRF-Token` on state-changing requests.
    #[serde(skip_serializing_if = "Option::is_none")]
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

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub label: Option<String>,
}

/// A session as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub session_id: SessionId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub customer_id: CustomerId,
    pub auth_method: AuthMethod,
    pub created_at: UnixTime,
    pub last_seen_at: UnixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_expires_at: Option<UnixTime>,
    pub absolute_expires_at: UnixTime,
    pub device: DeviceView,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WhoamiResponse {
    #[serde(flatten)]
    pub session: SessionView,
    pub scope: String,
    pub token_expires_at: UnixTime,
}

#[derive(Debug, Serialize)]
pub struct SessionsResponse {
    pub sessions: Vec<SessionView>,
}

#[derive(Debug, Serialize)]
pub struct RevokedResponse {
    pub revoked: usize,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTenantRequest {
    pub id: String,
    pub name: Option<String>,
    pub profile: Profile,
    #[serde(default)]
    pub policy: PolicyOverrides,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantResponse {
    pub id: TenantId,
    pub name: Option<String>,
    pub profile: Profile,
    pub policy: Policy,
    pub overrides: PolicyOverrides,
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUserRequest {
    pub username: String,
    pub password: String,
    pub customer_id: Option<CustomerId>,
    pub external_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserResponse {
    pub user_id: UserId,
    pub customer_id: CustomerId,
    pub username: Option<String>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    pub password: String,
}

#[derive(Debug, Serialize)]
pub struct AuditResponse {
    pub events: Vec<AuditEvent>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub kid: String,
    pub alg: String,
    pub state: KeyState,
    pub created_at: UnixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<UnixTime>,
}

#[derive(Debug, Serialize)]
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartnerSecretResponse {
    pub secret_id: String,
    pub secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateClientRequest {
    pub client_id: Option<String>,
    pub audience: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientResponse {
    pub client_id: String,
    pub client_secret: String,
}
