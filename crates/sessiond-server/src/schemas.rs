//! Mirror schemas of the types of other crates (`sessiond_store`, `sessiond_core`) that the
//! operator API shows, and of the bodies handlers build as JSON values, so those crates need no
//! OpenAPI dependency. Each must follow the serde shape of what it mirrors (the `openapi` tests
//! check it). The public end-user API's types are in `sessiond_proto`, schemas and all.

#![allow(dead_code)]

use sessiond_proto::ids::{SessionId, TenantId};
use utoipa::ToSchema;

/// A tenant's profile: the defaults its policy starts from.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Profile {
    Playground,
    Integration,
    Production,
}

/// What a new login does when the user is at `maxSessionsPerUser`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum OnLimit {
    EvictOldest,
    Reject,
}

/// A tenant's effective policy: its profile's defaults with its overrides applied.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Policy {
    /// Session token lifetime, seconds (≤ 86400).
    session_token_ttl: u32,
    /// Whether refresh tokens are issued.
    refresh_tokens: bool,
    /// Refresh token lifetime, seconds.
    refresh_token_ttl: u32,
    /// Absolute session lifetime, seconds.
    absolute_ttl: u32,
    /// Idle timeout, seconds; 0 = none.
    idle_ttl: u32,
    /// Active sessions per user; 0 = unlimited.
    max_sessions_per_user: u32,
    on_limit: OnLimit,
    /// Headers end-user requests must carry (always `Authorization` and `X-Tenant-ID`).
    required_headers: Vec<String>,
    /// Seconds during which a just-rotated refresh token returns the same successor (≤ 300).
    refresh_grace_seconds: u32,
    /// Requests must arrive over HTTPS (directly or via a trusted proxy).
    https_only: bool,
    /// Failed logins of one account from one client address before that address backs off
    /// exponentially (the account's failures from all addresses are capped at 10× this);
    /// 0 = never.
    login_backoff_after: u32,
    /// Login attempts per minute at one account from one client address; 0 = no limit.
    login_rate_per_minute: u32,
    /// Where `suspicious_activity` events are POSTed, signed; absent: no webhook.
    #[schema(nullable = false)]
    webhook_url: Option<String>,
    /// Where `session-revoked` Security Event Tokens (CAEP, RFC 8417) are pushed (RFC 8935)
    /// when a session ends; absent: no receiver.
    #[schema(nullable = false)]
    caep_receiver_url: Option<String>,
    /// Seconds after a session's last authentication (`auth_time`) beyond which logout-all
    /// and revoking other sessions answer 401 `reauthentication_required` until the session
    /// is re-authenticated (`POST /api/v2/auth/reauthenticate`); 0 = never.
    reauth_max_age: u32,
}

/// Per-tenant policy overrides; an absent member keeps the profile's default.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct PolicyOverrides {
    session_token_ttl: Option<u32>,
    refresh_tokens: Option<bool>,
    refresh_token_ttl: Option<u32>,
    absolute_ttl: Option<u32>,
    /// 0 turns the idle timeout off.
    idle_ttl: Option<u32>,
    /// 0 means unlimited.
    max_sessions_per_user: Option<u32>,
    on_limit: Option<OnLimit>,
    required_headers: Option<Vec<String>>,
    refresh_grace_seconds: Option<u32>,
    https_only: Option<bool>,
    /// 0 turns the per-account login backoff off.
    login_backoff_after: Option<u32>,
    /// 0 turns the per-account login rate limit off.
    login_rate_per_minute: Option<u32>,
    /// An http(s) URL of at most 2048 characters.
    webhook_url: Option<String>,
    /// The tenant's CAEP receiver: an http(s) URL of at most 2048 characters (production
    /// tenants: https at a public address).
    caep_receiver_url: Option<String>,
    /// At most one year; 0 = no re-authentication required.
    reauth_max_age: Option<u32>,
}

/// A JSON merge patch (RFC 7396) of the tenant's overrides: a member sets an override, `null`
/// restores the profile's default, an absent member is left alone.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct PolicyPatch {
    session_token_ttl: Option<u32>,
    refresh_tokens: Option<bool>,
    refresh_token_ttl: Option<u32>,
    absolute_ttl: Option<u32>,
    idle_ttl: Option<u32>,
    max_sessions_per_user: Option<u32>,
    on_limit: Option<OnLimit>,
    required_headers: Option<Vec<String>>,
    refresh_grace_seconds: Option<u32>,
    https_only: Option<bool>,
    /// 0 turns the per-account login backoff off.
    login_backoff_after: Option<u32>,
    /// 0 turns the per-account login rate limit off.
    login_rate_per_minute: Option<u32>,
    /// An http(s) URL of at most 2048 characters.
    webhook_url: Option<String>,
    /// The tenant's CAEP receiver: an http(s) URL of at most 2048 characters (production
    /// tenants: https at a public address).
    caep_receiver_url: Option<String>,
    /// At most one year; 0 = no re-authentication required.
    reauth_max_age: Option<u32>,
}

/// A tenant's SSO trust: the expected audience (and issuer), and exactly one of a shared HS256
/// secret, a PEM public key (RS256, ES256 or EdDSA), a JWKS URL, or the partner's
/// verification endpoint for opaque tokens (`verifyUrl` with `verifySecret`).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct SsoConfig {
    /// The SSO token's expected `iss` (with `verifyUrl`: the `iss` the partner's answer must
    /// name).
    issuer: Option<String>,
    /// The SSO token's expected `aud` (with `verifyUrl`: what the partner's answer's `aud`
    /// must include).
    audience: String,
    hs256_secret: Option<String>,
    public_key_pem: Option<String>,
    jwks_url: Option<String>,
    /// The partner's verification endpoint for opaque SSO tokens: sessiond POSTs
    /// `token=<ssoToken>&token_type_hint=sso_token` (form) with
    /// `Authorization: Bearer <verifySecret>` and expects an
    /// RFC 7662 answer — `{"active": true, "sub": "<external id>", "aud": <including
    /// audience>, "exp": <Unix seconds>, "iss"?}` or `{"active": false}`. An http(s) URL of at
    /// most 2048 characters (production tenants: https at public addresses only).
    verify_url: Option<String>,
    /// With `verifyUrl` (and only with it): the bearer secret sessiond presents, 32 to 1024
    /// characters; stored sealed, never shown again.
    verify_secret: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Disabled,
}

/// A signing key's place in the rotation.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, signs new tokens.
    Signing,
    /// Published, signs after the next rotation.
    Next,
    /// Published until `retireAt`, signs nothing.
    Retiring,
}

/// An audit event type.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum AuditKind {
    LoginSucceeded,
    LoginFailed,
    SessionCreated,
    SessionRefreshed,
    RefreshTokenReused,
    SessionRevoked,
    SessionExpired,
    SuspiciousActivity,
    /// A session event (back-channel logout token or CAEP SET) reached its receiver, named in
    /// `reason` (`backchannel_logout:<clientId>` or `caep`).
    SessionEventDelivered,
    /// A session event was refused by its receiver or given up after its attempts.
    SessionEventFailed,
    /// The user re-authenticated an existing session (step-up); `reason`: `pwd` or `sso`.
    SessionReauthenticated,
    /// A change on the admin API or console; `reason`: its method and route, `actor`: who.
    AdminAction,
}

/// One append-only audit record.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Ascending in append order.
    id: i64,
    r#type: AuditKind,
    tenant_id: TenantId,
    user_id: Option<uuid::Uuid>,
    session_id: Option<SessionId>,
    activity_id: String,
    correlation_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    /// For `session_revoked`: the revocation reason; for `session_event_*`: the receiver;
    /// for `admin_action`: the method and route of the change.
    reason: Option<String>,
    /// Unix seconds.
    at: i64,
    /// Who did it, for changes on the admin API and console: `operator:<username>` or
    /// `admin-token`. Absent for what users, partners and sessiond itself do.
    #[schema(required = false, nullable = false)]
    actor: Option<String>,
}

/// What a named operator may do; each role may also do what the ones before it may.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Also revokes sessions and manages users, partner secrets and service clients.
    Operator,
    /// Also tenants and their policy, SSO trust, keys and operators.
    Admin,
}

/// The session-state filter of the admin session search.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum StateFilter {
    Active,
    Revoked,
    Expired,
}

// ---- bodies built as JSON values in the handlers -----------------------------------------------

/// A tenant's webhook: its URL and the secret deliveries are signed with
/// (`X-Sessiond-Signature: v1=HMAC-SHA256(secret, timestamp + "." + body)`).
#[derive(ToSchema)]
pub struct Webhook {
    url: String,
    secret: String,
}

/// `{"status": "ok"}`.
#[derive(ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: String,
}

/// Issuer metadata (the subset of OpenID Connect Discovery / RFC 8414 that applies).
#[derive(ToSchema)]
pub struct Discovery {
    issuer: String,
    jwks_uri: String,
    introspection_endpoint: String,
    introspection_endpoint_auth_methods_supported: Vec<String>,
    revocation_endpoint: String,
    revocation_endpoint_auth_methods_supported: Vec<String>,
    access_token_signing_alg_values_supported: Vec<String>,
    token_types_supported: Vec<String>,
}
