//! Records the stores persist. Times are unix seconds.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Unix time in seconds.
pub type UnixTime = i64;

/// Unix seconds by the wall clock: how stores stamp change-log entries (`LogEntry::at`).
pub fn wall_clock() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

macro_rules! string_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

string_id!(
    /// A tenant's id (`X-Tenant-ID`): 1–64 characters of `[A-Za-z0-9_-]`.
    TenantId
);
string_id!(
    /// An opaque session id: 128 bits from the OS CSPRNG, base64url.
    SessionId
);

/// Why a value could not become an id.
#[derive(Debug, thiserror::Error)]
#[error("invalid {0}")]
pub struct InvalidId(pub &'static str);

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.to_owned())).ok_or(InvalidId("tenant id"))
    }

    /// The operators' tenant ([`OPERATORS_TENANT`]).
    pub fn operators() -> Self {
        Self(OPERATORS_TENANT.to_owned())
    }

    /// Ids starting with `_` are sessiond's own (the admin API creates no such tenant).
    pub fn is_reserved(&self) -> bool {
        self.0.starts_with('_')
    }
}

impl SessionId {
    /// Accepts the shape sessiond generates (22 base64url characters) and nothing else.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let ok = s.len() == 22
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.to_owned()))
            .ok_or(InvalidId("session id"))
    }

    /// Wraps an id the caller generated from the CSPRNG (see `sessiond-core`).
    pub fn from_generated(s: String) -> Self {
        Self(s)
    }
}

pub type UserId = uuid::Uuid;
pub type CustomerId = uuid::Uuid;

/// SHA-256 of a secret token; the only form in which refresh tokens are stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Playground,
    Integration,
    Production,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Playground => "playground",
            Profile::Integration => "integration",
            Profile::Production => "production",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Playground, Self::Integration, Self::Production]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnLimit {
    #[default]
    EvictOldest,
    Reject,
}

/// Per-tenant policy overrides; `None` means "the profile's default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token_ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_tokens: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute_ttl: Option<u32>,
    /// `Some(0)` turns the idle timeout off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_ttl: Option<u32>,
    /// `Some(0)` means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions_per_user: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_limit: Option<OnLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_grace_seconds: Option<u32>,
    /// Refuse requests that did not arrive over HTTPS (directly or via a trusted proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_only: Option<bool>,
    /// Failed logins of one account before exponential backoff starts (0: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_backoff_after: Option<u32>,
    /// Login attempts per minute for one account (GCRA; 0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_rate_per_minute: Option<u32>,
    /// Where `suspicious_activity` events are POSTed, signed (none: no webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The tenant's CAEP receiver: where `session-revoked` Security Event Tokens are pushed
    /// (RFC 8935) when a session ends (none: no receiver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caep_receiver_url: Option<String>,
    /// Seconds after the session's last authentication beyond which logout-all and revoking
    /// other sessions need a re-authentication (0: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reauth_max_age: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: Option<String>,
    pub profile: Profile,
    pub overrides: PolicyOverrides,
    pub created_at: UnixTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Disabled,
}

#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub customer_id: CustomerId,
    pub username: Option<String>,
    /// Argon2id PHC string.
    pub password_hash: Option<String>,
    pub external_id: Option<String>,
    pub status: UserStatus,
    pub created_at: UnixTime,
    /// Set only on the accounts of the operators' tenant ([`OPERATORS_TENANT`]): what the
    /// operator may do on the admin API and the console.
    pub role: Option<Role>,
}

/// The tenant whose users are sessiond's own operators (console sign-in). Its id starts with
/// `_`, which the admin API refuses for tenants it creates.
pub const OPERATORS_TENANT: &str = "_operators";

/// What a named operator may do. Ordered: each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Also revokes sessions and manages users, partner secrets and service clients.
    Operator,
    /// Also tenants and their policy, SSO trust, keys and operators.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Role::Viewer, Role::Operator, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// A page of a tenant's users ([`crate::IdentityStore::list_users`]), ordered by user id.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Only users whose username, external id or customer id contains this (ASCII case
    /// insensitive).
    pub search: Option<String>,
    /// Only users with an id greater than this (the last id of the previous page).
    pub after: Option<UserId>,
    pub limit: usize,
}

impl UserQuery {
    pub fn matches(&self, u: &User) -> bool {
        self.after.is_none_or(|a| u.id > a)
            && self.search.as_ref().is_none_or(|needle| {
                let needle = needle.to_ascii_lowercase();
                let has = |s: &str| s.to_ascii_lowercase().contains(&needle);
                u.username.as_deref().is_some_and(has)
                    || u.external_id.as_deref().is_some_and(has)
                    || has(&u.customer_id.to_string())
            })
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("username", &self.username)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    Password,
    Sso,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub label: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::LogoutAll => "logout_all",
            RevokeReason::Displaced => "displaced",
            RevokeReason::PartnerLogout => "partner_logout",
            RevokeReason::Admin => "admin",
            RevokeReason::ReuseDetected => "reuse_detected",
            RevokeReason::PasswordChanged => "password_changed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Logout,
            Self::LogoutAll,
            Self::Displaced,
            Self::PartnerLogout,
            Self::Admin,
            Self::ReuseDetected,
            Self::PasswordChanged,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// The stored state. `Active` sessions may still have timed out: see [`Session::status_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Active,
    Revoked { reason: RevokeReason, at: UnixTime },
    Expired { at: UnixTime },
}

/// What a session is at a given instant, timeouts included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Active,
    Revoked(RevokeReason),
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub customer_id: CustomerId,
    pub auth_method: AuthMethod,
    pub created_at: UnixTime,
    /// When the user last proved who they are for this session: `created_at`, moved forward
    /// by each re-authentication ([`crate::SessionStore::reauthenticate`]). Session tokens
    /// carry it as `auth_time`.
    pub auth_time: UnixTime,
    pub last_seen_at: UnixTime,
    pub absolute_expires_at: UnixTime,
    /// Idle timeout in seconds, fixed when the session was created; `None`: no idle timeout.
    pub idle_ttl: Option<u32>,
    pub device: DeviceInfo,
    pub state: SessionState,
}

impl Session {
    pub fn idle_expires_at(&self) -> Option<UnixTime> {
        self.idle_ttl
            .map(|ttl| (self.last_seen_at + i64::from(ttl)).min(self.absolute_expires_at))
    }

    /// Does its idle timeout come before its absolute one? (Which one ended it, once it
    /// timed out: `idle_timeout` or `absolute_timeout`.)
    pub fn idles_out_first(&self) -> bool {
        self.idle_expires_at()
            .is_some_and(|t| t < self.absolute_expires_at)
    }

    /// The instant the session times out, whichever timeout comes first.
    pub fn expires_at(&self) -> UnixTime {
        self.idle_expires_at().unwrap_or(self.absolute_expires_at)
    }

    pub fn status_at(&self, now: UnixTime) -> SessionStatus {
        match self.state {
            SessionState::Revoked { reason, .. } => SessionStatus::Revoked(reason),
            SessionState::Expired { .. } => SessionStatus::Expired,
            SessionState::Active if now >= self.expires_at() => SessionStatus::Expired,
            SessionState::Active => SessionStatus::Active,
        }
    }

    pub fn is_active_at(&self, now: UnixTime) -> bool {
        self.status_at(now) == SessionStatus::Active
    }
}

/// How many active sessions a user may hold, and what happens at the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionLimit {
    Unlimited,
    EvictOldest(u32),
    Reject(u32),
}

#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub hash: TokenHash,
    pub expires_at: UnixTime,
}

/// A session to create, with its first refresh token if the policy issues one.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub session: Session,
    pub refresh: Option<NewRefreshToken>,
}

/// One refresh-token rotation, applied atomically by [`crate::SessionStore::rotate_refresh`].
#[derive(Debug, Clone)]
pub struct Rotation {
    pub tenant_id: TenantId,
    pub presented: TokenHash,
    pub successor: NewRefreshToken,
    /// The successor token, sealed with a key only the presented token derives; returned as
    /// is when the presented token is replayed within the grace window.
    pub sealed_successor: Vec<u8>,
    /// A replay `now - rotated_at < grace_seconds` after the rotation is idempotent.
    pub grace_seconds: u32,
    pub now: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The presented token was current: it is now rotated, the successor is current and the
    /// session's last-seen time is `now`.
    Rotated { session: Session },
    /// The presented token was rotated within the grace window and its successor is still
    /// current: the same successor is handed out again.
    Replayed {
        session: Session,
        sealed_successor: Vec<u8>,
    },
    /// A rotated token came back outside the grace window: the session is now revoked with
    /// reason `reuse_detected` (`revoked` tells whether this call revoked it).
    Reused { session: Session, revoked: bool },
    /// The session the token belongs to is revoked or timed out.
    SessionInactive { session: Session },
    /// Unknown token, another tenant's, or past its expiry.
    Invalid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateFilter {
    Active,
    Revoked,
    Expired,
}

#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    pub user_id: Option<UserId>,
    pub state: Option<StateFilter>,
    /// Only sessions after this one in the listing's order (newest first): the last session
    /// of the previous page. If that session is gone, the listing goes on with the sessions
    /// created before its `created_at`.
    pub before: Option<SessionCursor>,
    pub limit: usize,
}

/// Where a page of sessions ended: its last session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCursor {
    pub created_at: UnixTime,
    pub id: SessionId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, signs new tokens.
    Signing,
    /// Published, will sign after the next rotation.
    Next,
    /// Published until `retire_at`, signs nothing.
    Retiring,
}

/// A signing key as stored: the private half sealed with the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub public: Vec<u8>,
    pub sealed_private: Vec<u8>,
    pub state: KeyState,
    pub created_at: UnixTime,
    pub retire_at: Option<UnixTime>,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    LoginSucceeded,
    LoginFailed,
    SessionCreated,
    SessionRefreshed,
    RefreshTokenReused,
    SessionRevoked,
    SessionExpired,
    SuspiciousActivity,
    /// A session event (back-channel logout token, CAEP SET) reached its receiver; `reason`
    /// names the receiver.
    SessionEventDelivered,
    /// A session event was given up after its attempts, or refused by its receiver.
    SessionEventFailed,
    /// The user re-authenticated an existing session (step-up): its `auth_time` moved.
    SessionReauthenticated,
    /// A change made on the admin API or console; `reason` names it (method and route),
    /// `actor` who made it.
    AdminAction,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::LoginSucceeded => "login_succeeded",
            AuditKind::LoginFailed => "login_failed",
            AuditKind::SessionCreated => "session_created",
            AuditKind::SessionRefreshed => "session_refreshed",
            AuditKind::RefreshTokenReused => "refresh_token_reused",
            AuditKind::SessionRevoked => "session_revoked",
            AuditKind::SessionExpired => "session_expired",
            AuditKind::SuspiciousActivity => "suspicious_activity",
            AuditKind::SessionEventDelivered => "session_event_delivered",
            AuditKind::SessionEventFailed => "session_event_failed",
            AuditKind::SessionReauthenticated => "session_reauthenticated",
            AuditKind::AdminAction => "admin_action",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::LoginSucceeded,
            Self::LoginFailed,
            Self::SessionCreated,
            Self::SessionRefreshed,
            Self::RefreshTokenReused,
            Self::SessionRevoked,
            Self::SessionExpired,
            Self::SuspiciousActivity,
            Self::SessionEventDelivered,
            Self::SessionEventFailed,
            Self::SessionReauthenticated,
            Self::AdminAction,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Builds a write's audit events from its outcome. A store that is also the identity store
/// (one object serving both: the SQLite, PostgreSQL and memory stores, when configured for
/// both) is given `Some` and appends the events to its audit trail **in the write's own
/// transaction**: one commit — one fsync — for the change and its record, and never one
/// without the other. Any other store gets `None`, and the caller appends the events after.
pub type AuditWith<T> = Option<AuditFn<T>>;

/// The function of [`AuditWith`].
pub type AuditFn<T> = std::sync::Arc<dyn Fn(&T) -> Vec<AuditEvent> + Send + Sync>;

/// One append-only audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Assigned by the store on append; ascending in append order.
    #[serde(default)]
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: AuditKind,
    pub tenant_id: TenantId,
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    pub activity_id: String,
    pub correlation_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub reason: Option<String>,
    pub at: UnixTime,
    /// Who did it, for actions on the admin API and console: `operator:<username>` or
    /// `admin-token`. `None` for what users, partners and sessiond itself do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    pub activity_id: Option<String>,
    pub kind: Option<AuditKind>,
    pub since: Option<UnixTime>,
    /// Only events before this time (exclusive).
    pub until: Option<UnixTime>,
    /// Only events with an id below this (the last id of the previous page).
    pub before: Option<i64>,
    pub limit: usize,
}

/// How many events of one kind (and reason) a tenant had in one time bucket
/// ([`crate::IdentityStore::count_audit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCount {
    /// The bucket's start: a multiple of the bucket width (Unix seconds).
    pub bucket: UnixTime,
    pub kind: AuditKind,
    pub reason: Option<String>,
    pub count: u64,
}

impl AuditQuery {
    pub fn matches(&self, e: &AuditEvent) -> bool {
        self.user_id.is_none_or(|u| e.user_id == Some(u))
            && self
                .session_id
                .as_ref()
                .is_none_or(|s| e.session_id.as_ref() == Some(s))
            && self
                .activity_id
                .as_ref()
                .is_none_or(|a| &e.activity_id == a)
            && self.kind.is_none_or(|k| e.kind == k)
            && self.since.is_none_or(|t| e.at >= t)
            && self.until.is_none_or(|t| e.at < t)
            && self.before.is_none_or(|b| e.id < b)
    }
}

impl SessionQuery {
    pub fn matches(&self, s: &Session, now: UnixTime) -> bool {
        self.user_id.is_none_or(|u| s.user_id == u)
            && self.state.is_none_or(|f| {
                matches!(
                    (f, s.status_at(now)),
                    (StateFilter::Active, SessionStatus::Active)
                        | (StateFilter::Revoked, SessionStatus::Revoked(_))
                        | (StateFilter::Expired, SessionStatus::Expired)
                )
            })
    }
}

/// A stored refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub hash: TokenHash,
    pub tenant_id: TenantId,
    pub session_id: SessionId,
    pub expires_at: UnixTime,
    pub rotated: Option<Rotated>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub at: UnixTime,
    pub successor: TokenHash,
    pub sealed_successor: Vec<u8>,
}

/// What a rotation does, decided from the records a backend read inside its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationStep {
    Invalid,
    SessionInactive,
    Rotate,
    Replay,
    Reuse,
}

impl Rotation {
    /// `successor_is_current`: the presented token's successor exists and is not rotated.
    pub fn step(
        &self,
        presented: &RefreshRecord,
        session: &Session,
        successor_is_current: bool,
    ) -> RotationStep {
        if presented.tenant_id != self.tenant_id || session.tenant_id != self.tenant_id {
            return RotationStep::Invalid;
        }
        if !session.is_active_at(self.now) {
            return RotationStep::SessionInactive;
        }
        match &presented.rotated {
            None if self.now >= presented.expires_at => RotationStep::Invalid,
            None => RotationStep::Rotate,
            Some(r) if successor_is_current && self.now - r.at < i64::from(self.grace_seconds) => {
                RotationStep::Replay
            }
            Some(_) => RotationStep::Reuse,
        }
    }
}

/// How a tenant trusts partner-issued SSO tokens: one of an HS256 secret (sealed with the
/// master key), a PEM public key, a JWKS URL, or the partner's verification endpoint for
/// opaque tokens (with the secret sessiond authenticates to it with, sealed).
#[derive(Clone, PartialEq, Eq)]
pub struct SsoSettings {
    pub issuer: Option<String>,
    pub audience: String,
    pub sealed_hs256_secret: Option<Vec<u8>>,
    pub public_key_pem: Option<String>,
    pub jwks_url: Option<String>,
    /// The partner's verification endpoint (an RFC 7662-style introspection URL).
    pub verify_url: Option<String>,
    /// The bearer secret sessiond presents to `verify_url`, sealed with the master key.
    pub sealed_verify_secret: Option<Vec<u8>>,
    pub updated_at: UnixTime,
}

impl fmt::Debug for SsoSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsoSettings")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks_url", &self.jwks_url)
            .field("verify_url", &self.verify_url)
            .finish_non_exhaustive()
    }
}

/// A partner backend's shared secret (`X-PARTNER-SECRET`), stored as its hash. A tenant may
/// hold several at once, for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerSecret {
    pub secret_id: String,
    pub tenant_id: TenantId,
    pub hash: TokenHash,
    pub created_at: UnixTime,
}

/// A trusted backend (introspection, internal access tokens), its secret stored as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceClient {
    pub client_id: String,
    pub tenant_id: TenantId,
    pub secret_hash: TokenHash,
    /// The `aud` of the internal access tokens minted for it.
    pub audience: String,
    /// Where OpenID Connect back-channel logout tokens are POSTed when a session of the
    /// tenant ends (none: the client is not told).
    pub backchannel_logout_uri: Option<String>,
    pub created_at: UnixTime,
}

/// Which of [`Route::COUNT`] partitions a user's sessions, their index and their refresh
/// tokens live in. A sharded backend (Redis Cluster) keeps one partition on one hash slot, so
/// that every read-modify-write of a user is one script on one slot; session ids and refresh
/// tokens carry their route in their first byte, so a store finds the slot from them alone.
/// Other backends ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route(pub u8);

impl Route {
    pub const COUNT: usize = 256;

    /// A user's route: FNV-1a over the user id (routing only, not a secret).
    pub fn of_user(user: &UserId) -> Self {
        let mut h: u32 = 0x811c_9dc5;
        for b in user.as_bytes() {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
        Self((h ^ (h >> 8) ^ (h >> 16) ^ (h >> 24)) as u8)
    }

    /// The route carried by a base64url value's first byte (a session id or refresh token).
    pub fn of_b64(s: &str) -> Self {
        fn sextet(c: u8) -> u8 {
            match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'-' => 62,
                b'_' => 63,
                _ => 0,
            }
        }
        let b = s.as_bytes();
        match (b.first(), b.get(1)) {
            (Some(&c0), Some(&c1)) => Self((sextet(c0) << 2) | (sextet(c1) >> 4)),
            _ => Self(0),
        }
    }

    /// The route of a refresh token's hash (see [`TokenHash::routed`]).
    pub fn of_hash(hash: &TokenHash) -> Self {
        Self(hash.0[0])
    }

    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl SessionId {
    /// A session id of `route`: the route byte, then 15 bytes from the CSPRNG (120 bits).
    pub fn generate(route: Route, random: [u8; 15]) -> Self {
        use base64::Engine as _;
        let mut b = [0u8; 16];
        b[0] = route.0;
        b[1..].copy_from_slice(&random);
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
    }

    pub fn route(&self) -> Route {
        Route::of_b64(&self.0)
    }
}

impl TokenHash {
    /// A refresh token's stored form: its SHA-256 with the first byte replaced by the token's
    /// route, so a sharded store finds the token's slot from the hash alone.
    pub fn routed(mut sha256: [u8; 32], route: Route) -> Self {
        sha256[0] = route.0;
        Self(sha256)
    }
}

/// A change that invalidates state other nodes may have cached. Every backend shared by
/// several nodes appends one to its [`crate::ChangeLog`] in the same transaction (or script)
/// as the change itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A session stopped being active (revoked, displaced, reuse detected).
    SessionEnded {
        tenant: TenantId,
        session: SessionId,
        user: UserId,
        reason: RevokeReason,
        /// The session's `auth_time` when it ended — its `created_at` unless it was
        /// re-authenticated — the newest `auth_time` any of its tokens carries (absent from
        /// entries written before it was logged; older entries call it `created`).
        #[serde(default, alias = "created", skip_serializing_if = "Option::is_none")]
        auth_time: Option<UnixTime>,
    },
    /// Every session of `user` in `tenant` created before `before` has ended (written by
    /// `revoke_user_sessions` without `keep`, after the per-session entries, when it revoked at
    /// least one session). `before` is the `now` the call was given.
    UserSessionsEnded {
        tenant: TenantId,
        user: UserId,
        before: UnixTime,
        reason: RevokeReason,
    },
    /// An active session's idle or absolute timeout was recorded (`mark_expired`, or the
    /// janitor's `expire_sessions` sweep): it ended without a revocation.
    SessionExpired {
        tenant: TenantId,
        session: SessionId,
        user: UserId,
        /// The session's `auth_time` (as in `SessionEnded`).
        auth_time: UnixTime,
        /// The idle timeout came before the absolute one (a token of the session may still be
        /// within its own lifetime); false: the absolute lifetime ended (no token outlives it).
        idle: bool,
        /// When the session timed out (`expires_at()`); the entry is written later, when the
        /// timeout is noticed. No token of the session is valid past this plus the longest
        /// token lifetime.
        #[serde(default)]
        timed_out_at: UnixTime,
    },
    /// A user's password or status changed.
    UserChanged { tenant: TenantId, user: UserId },
    /// A tenant's policy changed.
    TenantChanged { tenant: TenantId },
    /// A tenant's SSO settings changed.
    SsoChanged { tenant: TenantId },
    /// A service client was created or changed.
    ClientChanged { client_id: String },
    /// A partner secret was created or deleted.
    PartnerSecretChanged { secret_id: String },
    /// The keyring was replaced (a rotation).
    KeyringChanged,
    /// A kind of entry this release does not know (written by a newer one): readers skip it.
    #[serde(other)]
    Unknown,
}

impl Change {
    /// The `SessionExpired` entry of a session whose timeout is being recorded.
    pub fn session_expired(s: &Session) -> Self {
        let idle = s.idles_out_first();
        Change::SessionExpired {
            tenant: s.tenant_id.clone(),
            session: s.id.clone(),
            user: s.user_id,
            auth_time: s.auth_time,
            idle,
            timed_out_at: s.expires_at(),
        }
    }
}

/// A small record kept beside a change log, replaced only by compare-and-swap
/// ([`crate::ChangeLog::swap_mark`]); `version` counts its writes, from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub version: u64,
    pub body: String,
}

/// One numbered entry of a change log partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Consecutive within a partition, starting at 1.
    pub seq: u64,
    pub at: UnixTime,
    pub change: Change,
}

/// What a partition holds after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRead {
    /// The entries after the cursor, oldest first (empty: nothing new).
    Entries(Vec<LogEntry>),
    /// Entries after the cursor were already purged: the reader cannot resume and must drop
    /// what it cached; `head` is the partition's last sequence number, to follow on from.
    Gone { head: u64 },
}

/// A shared counter: how many hits since it was last forgotten, and when the latest was
/// (0 when there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hits {
    pub count: u64,
    pub last: UnixTime,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Disabled]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::Sso => "sso",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Password, Self::Sso]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Signing => "signing",
            KeyState::Next => "next",
            KeyState::Retiring => "retiring",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Signing, Self::Next, Self::Retiring]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names stores keep are the serde names, so stored values read like the API's.
    #[test]
    fn enum_names_match_serde() {
        fn check<T: Serialize + Copy + PartialEq + fmt::Debug>(
            all: &[T],
            as_str: fn(T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) {
            for &v in all {
                let json = serde_json::to_value(v).unwrap_or_default();
                assert_eq!(json.as_str(), Some(as_str(v)));
                assert_eq!(parse(as_str(v)), Some(v));
            }
            assert_eq!(parse("staging"), None);
        }
        use Profile as P;
        check(
            &[P::Playground, P::Integration, P::Production],
            P::as_str,
            P::parse,
        );
        check(
            &[UserStatus::Active, UserStatus::Disabled],
            UserStatus::as_str,
            UserStatus::parse,
        );
        check(
            &[AuthMethod::Password, AuthMethod::Sso],
            AuthMethod::as_str,
            AuthMethod::parse,
        );
        use KeyState as K;
        check(&[K::Signing, K::Next, K::Retiring], K::as_str, K::parse);
    }

    /// Log entries are JSON: `auth_time` is left out when unknown, an entry written before it
    /// existed still reads (as `None`), and so does one that calls it `created`; the cut-off
    /// is `user_sessions_ended`.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn change_wire_forms() {
        let tenant = TenantId::parse("tenant-a").unwrap();
        let user = uuid::Uuid::from_u128(7);
        let ended = |auth_time| Change::SessionEnded {
            tenant: tenant.clone(),
            session: SessionId::from_generated("sess-1".into()),
            user,
            reason: RevokeReason::Logout,
            auth_time,
        };
        let old = serde_json::json!({
            "kind": "session_ended",
            "tenant": "tenant-a",
            "session": "sess-1",
            "user": user.to_string(),
            "reason": "logout",
        });
        assert_eq!(serde_json::to_value(ended(None)).unwrap(), old);
        assert_eq!(
            serde_json::from_value::<Change>(old.clone()).unwrap(),
            ended(None)
        );
        let mut created = old.clone();
        created["created"] = serde_json::json!(1_700_000_000);
        assert_eq!(
            serde_json::from_value::<Change>(created).unwrap(),
            ended(Some(1_700_000_000)),
            "an entry of an older sessiond"
        );
        let mut new = old;
        new["auth_time"] = serde_json::json!(1_700_000_100);
        assert_eq!(
            serde_json::to_value(ended(Some(1_700_000_100))).unwrap(),
            new
        );
        assert_eq!(
            serde_json::from_value::<Change>(new).unwrap(),
            ended(Some(1_700_000_100))
        );

        // A kind a newer sessiond writes is skipped, not an error that stops the reader.
        let newer = serde_json::json!({"kind": "something_new", "tenant": "tenant-a", "x": 1});
        assert_eq!(
            serde_json::from_value::<Change>(newer).unwrap(),
            Change::Unknown
        );

        let cut_off = Change::UserSessionsEnded {
            tenant: tenant.clone(),
            user,
            before: 1_700_000_100,
            reason: RevokeReason::LogoutAll,
        };
        let json = serde_json::json!({
            "kind": "user_sessions_ended",
            "tenant": "tenant-a",
            "user": user.to_string(),
            "before": 1_700_000_100,
            "reason": "logout_all",
        });
        assert_eq!(serde_json::to_value(&cut_off).unwrap(), json);
        assert_eq!(serde_json::from_value::<Change>(json).unwrap(), cut_off);
    }
}
