//! The SQLite backend of sessiond's stores: one database file in WAL mode holds tenants, users,
//! keys, the audit trail, sessions, single-use nonces, SSO settings, partner secrets,
//! service clients, and the change log (one partition, appended in the transaction of each
//! change, as on the shared backends).
//!
//! SQLite is synchronous, so none of it runs on the async executor. Writes go to one writer
//! thread that group-commits them; reads go to a few reader threads. Every
//! trait method is one closure run on one of those connections: for writes, inside one
//! transaction, so each is atomic.

mod backup;
mod changes;
mod codec;
mod error;
mod filter;
mod identity;
mod readers;
mod schema;
mod sessions;
mod writer;

pub use backup::backup;

use async_trait::async_trait;
use readers::Readers;
use sessiond_store::{
    AuditCount, AuditEvent, AuditQuery, AuditWith, ChangeLog, IdentityStore, LogRead, Mark,
    NewSession, PartnerSecret, PolicyOverrides, RefreshRecord, RevokeReason, Role, RotateOutcome,
    Rotation, ServiceClient, Session, SessionId, SessionLimit, SessionQuery, SessionStore,
    SsoSettings, StoreError, StoreResult, StoredKey, Tenant, TenantId, TokenHash, UnixTime, User,
    UserId, UserQuery, UserStatus,
};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use writer::Writer;

/// How many connections serve reads.
const READERS: usize = 4;

/// Sessions and identity data in one SQLite file. A write that returned `Ok` is on disk
/// (WAL, `synchronous = FULL`): it survives a crash of the process or the machine.
///
/// It is also a [`ChangeLog`] of one partition, appended in the transaction of each change;
/// [`ChangeLog::wait_hint`] wakes after a commit of this process that moved the log.
pub struct SqliteStore {
    writer: Writer,
    readers: Readers,
    /// Notified by the writer thread after a commit that appended to the change log.
    hint: Arc<Notify>,
    /// Transactions the writer has committed since the store was opened.
    commits: Arc<AtomicU64>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file and migrating its schema as needed, and
    /// starts the writer and reader threads. They stop when the store is dropped.
    ///
    /// Blocks while it opens and migrates: call it at startup, or from `spawn_blocking`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let writer_conn = schema::open_writer(path)?;
        let reader_conns = (0..READERS)
            .map(|_| schema::open_reader(path))
            .collect::<Result<Vec<_>, _>>()?;
        let thread_error =
            |e: std::io::Error| StoreError::Backend(format!("cannot start a thread: {e}"));
        let hint = Arc::new(Notify::new());
        let mut head = changes::head(&writer_conn)?;
        let woken = hint.clone();
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        // After each commit (one cheap read of the head row per batch): count it, and wake
        // the waiters if the batch appended to the log. If the head cannot be read, wake them
        // anyway: a spurious hint costs one read, a lost one costs latency.
        let on_commit = move |c: &rusqlite::Connection, _batch: usize| {
            counted.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("sessiond_store_commits_total", "store" => "sqlite").increment(1);
            match changes::head(c) {
                Ok(now) if now == head => {}
                Ok(now) => {
                    head = now;
                    woken.notify_waiters();
                }
                Err(_) => woken.notify_waiters(),
            }
        };
        Ok(Self {
            readers: Readers::spawn(reader_conns).map_err(thread_error)?,
            writer: Writer::spawn(writer_conn, on_commit).map_err(thread_error)?,
            hint,
            commits,
        })
    }

    /// How many transactions the writer has committed since the store was opened: each is
    /// one fsync, however many writes it grouped (a session write and its audit events are
    /// one). Also counted in `sessiond_store_commits_total{store="sqlite"}`.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(
        &self,
        new: NewSession,
        limit: SessionLimit,
        now: UnixTime,
        audit: AuditWith<[SessionId]>,
    ) -> StoreResult<Vec<SessionId>> {
        self.writer
            .call(move |c| {
                let evicted = sessions::create(c, &new, limit, now)?;
                identity::append_audit_with(c, &audit, &evicted[..])?;
                Ok(evicted)
            })
            .await
    }

    async fn get_session(&self, tenant: &TenantId, id: &SessionId) -> StoreResult<Option<Session>> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.readers
            .call(move |c| sessions::get(c, &tenant, &id))
            .await
    }

    async fn touch_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
    ) -> StoreResult<()> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.writer
            .call(move |c| sessions::touch(c, &tenant, &id, now))
            .await
    }

    async fn rotate_refresh(
        &self,
        rotation: Rotation,
        audit: AuditWith<RotateOutcome>,
    ) -> StoreResult<RotateOutcome> {
        self.writer
            .call(move |c| {
                let outcome = sessions::rotate(c, &rotation)?;
                identity::append_audit_with(c, &audit, &outcome)?;
                Ok(outcome)
            })
            .await
    }

    async fn revoke_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        reason: RevokeReason,
        now: UnixTime,
        audit: AuditWith<[Session]>,
    ) -> StoreResult<Option<Session>> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.writer
            .call(move |c| {
                let revoked = sessions::revoke(c, &tenant, &id, reason, now)?;
                identity::append_audit_with(c, &audit, revoked.as_slice())?;
                Ok(revoked)
            })
            .await
    }

    async fn revoke_user_sessions(
        &self,
        tenant: &TenantId,
        user: &UserId,
        reason: RevokeReason,
        keep: Option<&SessionId>,
        now: UnixTime,
        audit: AuditWith<[Session]>,
    ) -> StoreResult<Vec<Session>> {
        let (tenant, user, keep) = (tenant.clone(), *user, keep.cloned());
        self.writer
            .call(move |c| {
                let revoked = sessions::revoke_user(c, &tenant, &user, reason, keep.as_ref(), now)?;
                identity::append_audit_with(c, &audit, &revoked[..])?;
                Ok(revoked)
            })
            .await
    }

    async fn reauthenticate(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
    ) -> StoreResult<Option<Session>> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.writer
            .call(move |c| sessions::reauthenticate(c, &tenant, &id, now))
            .await
    }

    async fn expire_sessions(&self, now: UnixTime, batch: usize) -> StoreResult<Vec<Session>> {
        self.writer
            .call(move |c| sessions::expire_sessions(c, now, batch))
            .await
    }

    async fn mark_expired(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
        audit: AuditWith<bool>,
    ) -> StoreResult<bool> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.writer
            .call(move |c| {
                let recorded = sessions::mark_expired(c, &tenant, &id, now)?;
                identity::append_audit_with(c, &audit, &recorded)?;
                Ok(recorded)
            })
            .await
    }

    async fn find_sessions(
        &self,
        tenant: &TenantId,
        query: &SessionQuery,
        now: UnixTime,
    ) -> StoreResult<Vec<Session>> {
        let (tenant, query) = (tenant.clone(), query.clone());
        self.readers
            .call(move |c| sessions::find(c, &tenant, &query, now))
            .await
    }

    async fn consume_nonce(
        &self,
        tenant: &TenantId,
        nonce: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let (tenant, nonce) = (tenant.clone(), nonce.to_owned());
        self.writer
            .call(move |c| sessions::consume_nonce(c, &tenant, &nonce, expires_at, now))
            .await
    }

    async fn count_active_sessions(&self, now: UnixTime) -> StoreResult<u64> {
        self.readers
            .call(move |c| sessions::count_active(c, now))
            .await
    }

    async fn get_refresh(&self, hash: &TokenHash) -> StoreResult<Option<RefreshRecord>> {
        let hash = *hash;
        self.readers
            .call(move |c| sessions::get_refresh(c, &hash))
            .await
    }

    /// Both the readers and the writer answer.
    async fn ping(&self) -> StoreResult<()> {
        self.readers
            .call(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await?;
        self.writer.call(|_| Ok(())).await
    }
}

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<()> {
        self.writer
            .call(move |c| identity::create_tenant(c, &tenant))
            .await
    }

    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        let id = id.clone();
        self.readers
            .call(move |c| identity::get_tenant(c, &id))
            .await
    }

    async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> StoreResult<Vec<Tenant>> {
        let after = after.cloned();
        self.readers
            .call(move |c| identity::list_tenants(c, after.as_ref(), limit))
            .await
    }

    async fn set_tenant_policy(
        &self,
        id: &TenantId,
        overrides: PolicyOverrides,
    ) -> StoreResult<Option<Tenant>> {
        let id = id.clone();
        self.writer
            .call(move |c| identity::set_tenant_policy(c, &id, &overrides))
            .await
    }

    async fn create_user(&self, user: User) -> StoreResult<()> {
        self.writer
            .call(move |c| identity::create_user(c, &user))
            .await
    }

    async fn get_user(&self, tenant: &TenantId, id: &UserId) -> StoreResult<Option<User>> {
        let (tenant, id) = (tenant.clone(), *id);
        self.readers
            .call(move |c| identity::get_user(c, &tenant, &id))
            .await
    }

    async fn find_user_by_username(
        &self,
        tenant: &TenantId,
        username: &str,
    ) -> StoreResult<Option<User>> {
        let (tenant, username) = (tenant.clone(), username.to_owned());
        self.readers
            .call(move |c| identity::find_user_by_username(c, &tenant, &username))
            .await
    }

    async fn set_password_hash(
        &self,
        tenant: &TenantId,
        id: &UserId,
        hash: String,
    ) -> StoreResult<bool> {
        let (tenant, id) = (tenant.clone(), *id);
        self.writer
            .call(move |c| identity::set_password_hash(c, &tenant, &id, &hash))
            .await
    }

    async fn set_user_status(
        &self,
        tenant: &TenantId,
        id: &UserId,
        status: UserStatus,
    ) -> StoreResult<bool> {
        let (tenant, id) = (tenant.clone(), *id);
        self.writer
            .call(move |c| identity::set_user_status(c, &tenant, &id, status))
            .await
    }

    async fn find_user_by_external_id(
        &self,
        tenant: &TenantId,
        external_id: &str,
    ) -> StoreResult<Option<User>> {
        let (tenant, external_id) = (tenant.clone(), external_id.to_owned());
        self.readers
            .call(move |c| identity::find_user_by_external_id(c, &tenant, &external_id))
            .await
    }

    async fn list_users(&self, tenant: &TenantId, query: &UserQuery) -> StoreResult<Vec<User>> {
        let (tenant, query) = (tenant.clone(), query.clone());
        self.readers
            .call(move |c| identity::list_users(c, &tenant, &query))
            .await
    }

    async fn set_user_role(
        &self,
        tenant: &TenantId,
        id: &UserId,
        role: Option<Role>,
    ) -> StoreResult<bool> {
        let (tenant, id) = (tenant.clone(), *id);
        self.writer
            .call(move |c| identity::set_user_role(c, &tenant, &id, role))
            .await
    }

    async fn set_sso(&self, tenant: &TenantId, settings: SsoSettings) -> StoreResult<()> {
        let tenant = tenant.clone();
        self.writer
            .call(move |c| identity::set_sso(c, &tenant, &settings))
            .await
    }

    async fn get_sso(&self, tenant: &TenantId) -> StoreResult<Option<SsoSettings>> {
        let tenant = tenant.clone();
        self.readers
            .call(move |c| identity::get_sso(c, &tenant))
            .await
    }

    async fn create_partner_secret(&self, secret: PartnerSecret) -> StoreResult<()> {
        self.writer
            .call(move |c| identity::create_partner_secret(c, &secret))
            .await
    }

    async fn get_partner_secret(&self, secret_id: &str) -> StoreResult<Option<PartnerSecret>> {
        let secret_id = secret_id.to_owned();
        self.readers
            .call(move |c| identity::get_partner_secret(c, &secret_id))
            .await
    }

    async fn delete_partner_secret(&self, tenant: &TenantId, secret_id: &str) -> StoreResult<bool> {
        let (tenant, secret_id) = (tenant.clone(), secret_id.to_owned());
        self.writer
            .call(move |c| identity::delete_partner_secret(c, &tenant, &secret_id))
            .await
    }

    async fn list_partner_secrets(&self, tenant: &TenantId) -> StoreResult<Vec<PartnerSecret>> {
        let tenant = tenant.clone();
        self.readers
            .call(move |c| identity::list_partner_secrets(c, &tenant))
            .await
    }

    async fn create_client(&self, client: ServiceClient) -> StoreResult<()> {
        self.writer
            .call(move |c| identity::create_client(c, &client))
            .await
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ServiceClient>> {
        let client_id = client_id.to_owned();
        self.readers
            .call(move |c| identity::get_client(c, &client_id))
            .await
    }

    async fn list_clients(&self, tenant: &TenantId) -> StoreResult<Vec<ServiceClient>> {
        let tenant = tenant.clone();
        self.readers
            .call(move |c| identity::list_clients(c, &tenant))
            .await
    }

    async fn load_keys(&self) -> StoreResult<Vec<StoredKey>> {
        self.readers.call(identity::load_keys).await
    }

    /// Checked and stored in one write: several callers at once store one keyring.
    async fn init_keys(&self, keys: Vec<StoredKey>) -> StoreResult<Vec<StoredKey>> {
        self.writer
            .call(move |c| identity::init_keys(c, keys))
            .await
    }

    async fn replace_keys(&self, keys: Vec<StoredKey>) -> StoreResult<()> {
        self.writer
            .call(move |c| identity::replace_keys(c, &keys))
            .await
    }

    async fn purge_audit(&self, before: UnixTime) -> StoreResult<u64> {
        self.writer
            .call(move |c| {
                let n = c
                    .prepare_cached("DELETE FROM audit_events WHERE at < :before")?
                    .execute(rusqlite::named_params! {":before": before})?;
                Ok(n as u64)
            })
            .await
    }

    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.writer
            .call(move |c| identity::append_audit(c, &events))
            .await
    }

    async fn find_audit(
        &self,
        tenant: &TenantId,
        query: &AuditQuery,
    ) -> StoreResult<Vec<AuditEvent>> {
        let (tenant, query) = (tenant.clone(), query.clone());
        self.readers
            .call(move |c| identity::find_audit(c, &tenant, &query))
            .await
    }

    async fn count_audit(
        &self,
        tenant: &TenantId,
        since: UnixTime,
        until: UnixTime,
        bucket: u32,
    ) -> StoreResult<Vec<AuditCount>> {
        let tenant = tenant.clone();
        self.readers
            .call(move |c| identity::count_audit(c, &tenant, since, until, bucket))
            .await
    }
}

#[async_trait]
impl ChangeLog for SqliteStore {
    fn partitions(&self) -> usize {
        1
    }

    async fn read_log(&self, cursors: &[(usize, u64)], limit: usize) -> StoreResult<Vec<LogRead>> {
        if let Some(&(partition, _)) = cursors.iter().find(|&&(p, _)| p != 0) {
            return Err(StoreError::Backend(format!(
                "no change log partition {partition}"
            )));
        }
        let afters: Vec<u64> = cursors.iter().map(|&(_, after)| after).collect();
        self.readers
            .call(move |c| {
                afters
                    .into_iter()
                    .map(|after| changes::read(c, after, limit))
                    .collect()
            })
            .await
    }

    async fn wait_hint(&self, max_wait: Duration) -> Vec<usize> {
        match tokio::time::timeout(max_wait, self.hint.notified()).await {
            Ok(()) => vec![0],
            Err(_) => Vec::new(),
        }
    }

    async fn purge_log(&self, before: UnixTime, batch: usize) -> StoreResult<u64> {
        self.writer
            .call(move |c| changes::purge(c, before, batch))
            .await
    }

    async fn load_mark(&self, name: &str) -> StoreResult<Option<Mark>> {
        let name = name.to_owned();
        self.readers
            .call(move |c| changes::load_mark(c, &name))
            .await
    }

    /// One conditional statement in the writer's transaction (which also holds the file's
    /// write lock against other processes).
    async fn swap_mark(
        &self,
        name: &str,
        expected: Option<u64>,
        body: &str,
    ) -> StoreResult<Option<u64>> {
        let (name, body) = (name.to_owned(), body.to_owned());
        self.writer
            .call(move |c| changes::swap_mark(c, &name, expected, &body))
            .await
    }
}
