//! The store traits. Each method is one atomic operation: a backend makes it atomic in its
//! own way (a transaction, a single statement, a script) so that no race reaches the caller.

use crate::StoreResult;
use crate::model::*;
use async_trait::async_trait;

/// Hot, per-request session state.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Creates a session (and its first refresh token) under the user's limit. With
    /// `EvictOldest(n)` the oldest active sessions are revoked (`displaced`) until the new one
    /// fits, and their ids are returned; with `Reject(n)` a full user gets
    /// [`crate::StoreError::LimitReached`] and nothing is written. A taken session id or
    /// refresh token hash gives [`crate::StoreError::Conflict`], and nothing is written either.
    /// (A backend whose client may re-send a request after a broken connection — Redis —
    /// answers a repeat of a create it already applied, record for record, as that create.)
    /// `audit` (see [`AuditWith`]) is given the ids of the evicted sessions.
    async fn create_session(
        &self,
        new: NewSession,
        limit: SessionLimit,
        now: UnixTime,
        audit: AuditWith<[SessionId]>,
    ) -> StoreResult<Vec<SessionId>>;

    async fn get_session(&self, tenant: &TenantId, id: &SessionId) -> StoreResult<Option<Session>>;

    /// Moves `last_seen_at` forward to `now` if the session is still active.
    async fn touch_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
    ) -> StoreResult<()>;

    /// Rotates a refresh token: see [`RotateOutcome`] for every case. `audit` (see
    /// [`AuditWith`]) is given the outcome.
    async fn rotate_refresh(
        &self,
        rotation: Rotation,
        audit: AuditWith<RotateOutcome>,
    ) -> StoreResult<RotateOutcome>;

    /// Revokes one session. Returns the session if this call revoked it (idempotent: a
    /// revoked or unknown session gives `None`). `audit` (see [`AuditWith`]) is given the
    /// session this call revoked, if any.
    async fn revoke_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        reason: RevokeReason,
        now: UnixTime,
        audit: AuditWith<[Session]>,
    ) -> StoreResult<Option<Session>>;

    /// Revokes every active session of a user, except `keep`; returns those it revoked.
    /// `audit` (see [`AuditWith`]) is given them.
    async fn revoke_user_sessions(
        &self,
        tenant: &TenantId,
        user: &UserId,
        reason: RevokeReason,
        keep: Option<&SessionId>,
        now: UnixTime,
        audit: AuditWith<[Session]>,
    ) -> StoreResult<Vec<Session>>;

    /// Records a re-authentication (step-up): if the session is active at `now`, sets its
    /// `auth_time` and `last_seen_at` to `now` and returns it as updated; `None` (nothing
    /// written) if it is not active — revoked, timed out, unknown, or of another tenant.
    async fn reauthenticate(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
    ) -> StoreResult<Option<Session>>;

    /// Records the timeouts of up to `batch` sessions still active in state but past their
    /// idle or absolute timeout at `now` (as [`SessionStore::mark_expired`] does for one),
    /// each with its `SessionExpired` change-log entry in the same transaction or script;
    /// returns the sessions it recorded (fewer than `batch`: none are left that this call
    /// could take — rows another sweep holds, or routes counted before, wait for the next
    /// call). The janitor runs it on every node; concurrent sweeps never record a session
    /// twice.
    async fn expire_sessions(&self, now: UnixTime, batch: usize) -> StoreResult<Vec<Session>>;

    /// Records that an active session has timed out (and logs `SessionExpired`). Returns true
    /// if this call recorded it. `audit` (see [`AuditWith`]) is given that answer.
    async fn mark_expired(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
        audit: AuditWith<bool>,
    ) -> StoreResult<bool>;

    /// Sessions of a tenant, newest first.
    async fn find_sessions(
        &self,
        tenant: &TenantId,
        query: &SessionQuery,
        now: UnixTime,
    ) -> StoreResult<Vec<Session>>;

    /// Records a single-use value (an SSO token's `jti`) until `expires_at`. Returns true the
    /// first time; false if it is already recorded and not yet expired. Expired records may be
    /// purged by the call.
    async fn consume_nonce(
        &self,
        tenant: &TenantId,
        nonce: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool>;

    /// How many sessions (all tenants) are active at `now`, timeouts included.
    async fn count_active_sessions(&self, now: UnixTime) -> StoreResult<u64>;

    /// The stored refresh token with this hash, rotated or not (any tenant: callers check).
    async fn get_refresh(&self, hash: &TokenHash) -> StoreResult<Option<RefreshRecord>>;

    /// Is the store reachable?
    async fn ping(&self) -> StoreResult<()>;

    /// Deletes up to `batch` records that can no longer matter at `now` (sessions past their
    /// absolute expiry, their refresh tokens, expired nonces); returns how many. Backends that
    /// expire records by themselves (Redis) or keep few (memory) may do nothing.
    async fn purge_expired(&self, _now: UnixTime, _batch: usize) -> StoreResult<u64> {
        Ok(0)
    }
}

/// The durable, numbered log of [`Change`]s of a store shared by several nodes, in
/// [`ChangeLog::partitions`] independent sequences (one for PostgreSQL; one per [`Route`] on
/// Redis, so that a change is appended by the same script, on the same slot, as the change).
/// Nodes follow it to invalidate their caches; a hint (NOTIFY / PUBLISH) only says that a
/// partition moved, and is never the only way a change is seen.
#[async_trait]
pub trait ChangeLog: Send + Sync + 'static {
    fn partitions(&self) -> usize;

    /// The entries after each `(partition, after)` cursor, oldest first, at most `limit` per
    /// partition; answered in the order asked. A cursor the partition cannot resume from —
    /// its entries were purged, or it lies past the partition's head (the store lost or
    /// restored data) — gets [`LogRead::Gone`].
    async fn read_log(&self, cursors: &[(usize, u64)], limit: usize) -> StoreResult<Vec<LogRead>>;

    /// Waits at most `max_wait` for a hint that partitions moved; returns the partitions
    /// hinted (empty after a timeout, or when the backend has no hints). Never fails: a lost
    /// hint costs latency, not correctness, since readers also poll.
    async fn wait_hint(&self, max_wait: std::time::Duration) -> Vec<usize>;

    /// Deletes entries written before `before`, at most `batch` of them; returns how many.
    async fn purge_log(&self, before: UnixTime, batch: usize) -> StoreResult<u64>;

    /// The mark `name` kept beside the log (a reader's position and lease, such as the
    /// session-event dispatcher's), or `None` if it was never stored.
    async fn load_mark(&self, name: &str) -> StoreResult<Option<Mark>>;

    /// Stores `body` as the mark `name` if its version is still `expected` (`None`: no mark
    /// yet), atomically where several nodes share the log; returns the new version, or `None`
    /// — nothing written — when another writer changed (or created) it first.
    async fn swap_mark(
        &self,
        name: &str,
        expected: Option<u64>,
        body: &str,
    ) -> StoreResult<Option<u64>>;
}

/// Tenants, users, signing keys and the audit trail.
#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    /// [`crate::StoreError::Conflict`] if the id is taken.
    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<()>;
    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>>;
    /// Up to `limit` tenants with an id greater than `after` (byte order), ascending.
    async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> StoreResult<Vec<Tenant>>;
    /// Replaces the tenant's overrides; `None` if there is no such tenant.
    async fn set_tenant_policy(
        &self,
        id: &TenantId,
        overrides: PolicyOverrides,
    ) -> StoreResult<Option<Tenant>>;

    /// [`crate::StoreError::Conflict`] if the username (or external id) is taken in the tenant.
    async fn create_user(&self, user: User) -> StoreResult<()>;
    async fn get_user(&self, tenant: &TenantId, id: &UserId) -> StoreResult<Option<User>>;
    async fn find_user_by_username(
        &self,
        tenant: &TenantId,
        username: &str,
    ) -> StoreResult<Option<User>>;
    /// Returns false if there is no such user.
    async fn set_password_hash(
        &self,
        tenant: &TenantId,
        id: &UserId,
        hash: String,
    ) -> StoreResult<bool>;
    async fn set_user_status(
        &self,
        tenant: &TenantId,
        id: &UserId,
        status: UserStatus,
    ) -> StoreResult<bool>;

    async fn find_user_by_external_id(
        &self,
        tenant: &TenantId,
        external_id: &str,
    ) -> StoreResult<Option<User>>;
    /// A page of a tenant's users matching the query ([`UserQuery::matches`]), ascending by
    /// id.
    async fn list_users(&self, tenant: &TenantId, query: &UserQuery) -> StoreResult<Vec<User>>;
    /// Sets (or with `None` clears) a user's operator role; false if there is no such user.
    async fn set_user_role(
        &self,
        tenant: &TenantId,
        id: &UserId,
        role: Option<Role>,
    ) -> StoreResult<bool>;

    /// Sets (replaces) a tenant's SSO settings.
    async fn set_sso(&self, tenant: &TenantId, settings: SsoSettings) -> StoreResult<()>;
    async fn get_sso(&self, tenant: &TenantId) -> StoreResult<Option<SsoSettings>>;

    /// [`crate::StoreError::Conflict`] if the secret id is taken.
    async fn create_partner_secret(&self, secret: PartnerSecret) -> StoreResult<()>;
    async fn get_partner_secret(&self, secret_id: &str) -> StoreResult<Option<PartnerSecret>>;
    /// Returns false if the tenant has no such secret.
    async fn delete_partner_secret(&self, tenant: &TenantId, secret_id: &str) -> StoreResult<bool>;
    /// A tenant's partner secrets (their hashes), by secret id.
    async fn list_partner_secrets(&self, tenant: &TenantId) -> StoreResult<Vec<PartnerSecret>>;

    /// [`crate::StoreError::Conflict`] if the client id is taken.
    async fn create_client(&self, client: ServiceClient) -> StoreResult<()>;
    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ServiceClient>>;
    /// A tenant's service clients, by client id.
    async fn list_clients(&self, tenant: &TenantId) -> StoreResult<Vec<ServiceClient>>;

    async fn load_keys(&self) -> StoreResult<Vec<StoredKey>>;
    /// Stores `keys` as the keyring if there is none yet, atomically where several nodes may
    /// start at once; returns the keyring as stored (`keys`, or those another node stored
    /// first).
    async fn init_keys(&self, keys: Vec<StoredKey>) -> StoreResult<Vec<StoredKey>> {
        let existing = self.load_keys().await?;
        if !existing.is_empty() {
            return Ok(existing);
        }
        self.replace_keys(keys.clone()).await?;
        Ok(keys)
    }
    /// Replaces the whole keyring in one step.
    async fn replace_keys(&self, keys: Vec<StoredKey>) -> StoreResult<()>;

    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()>;
    /// Deletes the events (all tenants) older than `before`; returns how many.
    async fn purge_audit(&self, before: UnixTime) -> StoreResult<u64>;

    /// Events of a tenant matching the query, newest first.
    async fn find_audit(
        &self,
        tenant: &TenantId,
        query: &AuditQuery,
    ) -> StoreResult<Vec<AuditEvent>>;

    /// A tenant's events with `since <= at < until`, counted per `bucket`-second interval
    /// (starting at multiples of `bucket`), kind and reason; in no particular order, zero
    /// counts left out.
    async fn count_audit(
        &self,
        tenant: &TenantId,
        since: UnixTime,
        until: UnixTime,
        bucket: u32,
    ) -> StoreResult<Vec<AuditCount>>;
}

/// Counters every node shares, for rate limits and login backoff, so that N nodes do not
/// give an attacker N times the budget. One counter per key; a counter whose latest hit is
/// `forget_after` seconds old (or older) restarts from zero. A fixed window is a key that
/// names it (`…:<minute>`).
#[async_trait]
pub trait Counters: Send + Sync + 'static {
    /// Adds one hit at `now`; returns the counter after it.
    async fn hit(&self, key: &str, forget_after: u32, now: UnixTime) -> StoreResult<Hits>;
    /// The counter as it stands at `now` (zero when forgotten or never hit).
    async fn peek(&self, key: &str, forget_after: u32, now: UnixTime) -> StoreResult<Hits>;
    /// Forgets the counter.
    async fn reset(&self, key: &str) -> StoreResult<()>;
}
