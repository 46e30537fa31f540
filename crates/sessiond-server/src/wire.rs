//! The operator API's request and response bodies (camelCase JSON, as the contract shows),
//! and the conversions from the core's and the store's types to the public API's bodies
//! ([`sessiond_proto`]), which the server cannot implement as `From` (both types are foreign).

use crate::schemas;
use serde::{Deserialize, Serialize};
use sessiond_core::{Issued, Policy, TenantPolicy};
use sessiond_proto::ids;
use sessiond_proto::{DeviceView, SessionState, SessionView, TokenResponse};
use sessiond_store::{
    AuditEvent, CustomerId, KeyState, PolicyOverrides, Profile, Session, SessionId, SessionStatus,
    StoredKey, TenantId, UnixTime, User, UserId,
};
use utoipa::ToSchema;

/// The TokenResponse of login, SSO and refresh, with the tokens in the body (cookie mode
/// moves them out).
pub fn token_response(i: Issued) -> TokenResponse {
    TokenResponse {
        expires_in: i.expires_in,
        token_type: "Bearer".to_owned(),
        scope: sessiond_core::engine::SCOPE.to_owned(),
        customer_id: i.session.customer_id,
        tenant_id: i.session.tenant_id.to_string(),
        session_id: i.session.id.to_string(),
        user_session_token: Some(i.session_token),
        refresh_token: i.refresh_token,
        refresh_expires_in: i.refresh_expires_in,
        csrf_token: None,
    }
}

/// A session as the API shows it at `now`; `current` flags the caller's own session (in the
/// user's own list).
pub fn session_view(s: &Session, now: UnixTime, current: Option<&SessionId>) -> SessionView {
    let (state, revoked_reason) = match s.status_at(now) {
        SessionStatus::Active => (SessionState::Active, None),
        SessionStatus::Revoked(r) => (SessionState::Revoked, Some(r.as_str().to_owned())),
        SessionStatus::Expired => (SessionState::Expired, None),
    };
    SessionView {
        idle_expires_at: s.idle_expires_at(),
        current: current.map(|c| c == &s.id),
        session_id: s.id.to_string(),
        tenant_id: s.tenant_id.to_string(),
        user_id: s.user_id,
        customer_id: s.customer_id,
        auth_method: s.auth_method.as_str().to_owned(),
        created_at: s.created_at,
        last_seen_at: s.last_seen_at,
        absolute_expires_at: s.absolute_expires_at,
        device: DeviceView {
            user_agent: s.device.user_agent.clone(),
            ip: s.device.ip.clone(),
            label: s.device.label.clone(),
        },
        state,
        revoked_reason,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// 1 to 64 characters of `A-Z`, `a-z`, `0-9`, `-` and `_`.
    #[schema(value_type = ids::TenantId)]
    pub id: String,
    pub name: Option<String>,
    #[schema(value_type = schemas::Profile)]
    pub profile: Profile,
    #[serde(default)]
    #[schema(value_type = schemas::PolicyOverrides)]
    pub policy: PolicyOverrides,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantResponse {
    #[schema(value_type = ids::TenantId)]
    pub id: TenantId,
    pub name: Option<String>,
    #[schema(value_type = schemas::Profile)]
    pub profile: Profile,
    /// The effective policy.
    #[schema(value_type = schemas::Policy)]
    pub policy: Policy,
    /// The tenant's own overrides of its profile's defaults.
    #[schema(value_type = schemas::PolicyOverrides)]
    pub overrides: PolicyOverrides,
    /// The profile's defaults (what a `null` in a policy patch restores).
    #[schema(value_type = schemas::Policy)]
    pub defaults: Policy,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
}

/// A page of tenants, by id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantsPage {
    pub tenants: Vec<TenantResponse>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

impl From<&TenantPolicy> for TenantResponse {
    fn from(t: &TenantPolicy) -> Self {
        Self {
            id: t.tenant.id.clone(),
            name: t.tenant.name.clone(),
            profile: t.tenant.profile,
            policy: t.policy.clone(),
            overrides: t.tenant.overrides.clone(),
            defaults: Policy::defaults(t.tenant.profile),
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
    /// The partner's id for the user (the SSO token's `sub`), if any.
    pub external_id: Option<String>,
    #[schema(value_type = schemas::UserStatus)]
    pub status: sessiond_store::UserStatus,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
}

impl From<User> for UserResponse {
    fn from(u: User) -> Self {
        Self {
            user_id: u.id,
            customer_id: u.customer_id,
            username: u.username,
            external_id: u.external_id,
            status: u.status,
            created_at: u.created_at,
        }
    }
}

/// A page of a tenant's users, by user id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsersPage {
    pub users: Vec<UserResponse>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// One user (a lookup by `username` or `externalId`), or a page of users (a listing).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum UserLookup {
    One(UserResponse),
    Page(UsersPage),
}

/// An operator: a user of the operators' tenant with a role.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorResponse {
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    pub username: Option<String>,
    #[schema(value_type = Option<schemas::Role>)]
    pub role: Option<sessiond_store::Role>,
    #[schema(value_type = schemas::UserStatus)]
    pub status: sessiond_store::UserStatus,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
}

impl From<User> for OperatorResponse {
    fn from(u: User) -> Self {
        Self {
            user_id: u.id,
            username: u.username,
            role: u.role,
            status: u.status,
            created_at: u.created_at,
        }
    }
}

/// A page of operators, by user id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorsPage {
    pub operators: Vec<OperatorResponse>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOperatorRequest {
    /// 1 to 256 characters (NFC), no control characters or surrounding spaces.
    pub username: String,
    /// 8 to 1024 characters.
    pub password: String,
    #[schema(value_type = schemas::Role)]
    pub role: sessiond_store::Role,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleRequest {
    #[schema(value_type = schemas::Role)]
    pub role: sessiond_store::Role,
}

/// Who is calling the admin API.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeResponse {
    /// As recorded in the audit trail: `operator:<username>` or `admin-token`.
    pub actor: String,
    #[schema(value_type = schemas::Role)]
    pub role: sessiond_store::Role,
    /// Absent for the admin token.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = uuid::Uuid, required = false, nullable = false)]
    pub user_id: Option<UserId>,
    /// The operator's session (absent for the admin token).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = ids::SessionId, required = false, nullable = false)]
    pub session_id: Option<SessionId>,
}

/// A tenant's partner secrets (never the secrets themselves).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerSecretsResponse {
    pub secrets: Vec<PartnerSecretView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerSecretView {
    pub secret_id: String,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
}

/// A tenant's service clients (never their secrets).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientsResponse {
    pub clients: Vec<ClientView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientView {
    pub client_id: String,
    pub audience: String,
    pub backchannel_logout_uri: Option<String>,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
}

/// Audit counts over time, for a chart: every bucket from the first to the last, zeros
/// included, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditCountsResponse {
    /// Each bucket's width in seconds.
    pub bucket: u32,
    pub buckets: Vec<AuditBucket>,
}

/// One interval's counts.
#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditBucket {
    /// The interval's start (Unix seconds).
    pub at: i64,
    /// `login_succeeded`.
    pub logins: u64,
    /// `login_failed`, but for the rate-limited ones.
    pub failures: u64,
    /// `login_failed` with reason `rate_limited` or `backoff`.
    pub rate_limited: u64,
    /// `session_refreshed`.
    pub refreshes: u64,
    /// `refresh_token_reused`.
    pub reuse_detections: u64,
    /// `session_revoked`.
    pub revocations: u64,
    /// `suspicious_activity`.
    pub alerts: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    /// 8 to 1024 characters.
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditResponse {
    /// Newest first.
    #[schema(value_type = Vec<schemas::AuditEvent>)]
    pub events: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub kid: String,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    #[schema(value_type = schemas::KeyState)]
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
    /// Where OpenID Connect back-channel logout tokens are POSTed (`logout_token=<JWT>`,
    /// form-encoded) whenever a session of the tenant ends: an http(s) URL of at most 2048
    /// characters that the tenant's profile may reach (production: public addresses only).
    #[schema(nullable = false, example = "https://app.example/backchannel-logout")]
    pub backchannel_logout_uri: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientResponse {
    pub client_id: String,
    pub client_secret: String,
}
