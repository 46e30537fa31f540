//! The in-memory backend: one mutex over plain maps. For tests and single-process trials;
//! nothing survives a restart.

use crate::model::*;
use crate::{ChangeLog, Counters, IdentityStore, SessionStore, StoreError, StoreResult};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
struct Data {
    sessions: HashMap<SessionId, Session>,
    /// Each session's place in creation order: ties of `created_at` go by it.
    created: HashMap<SessionId, u64>,
    refresh: HashMap<TokenHash, RefreshRecord>,
    tenants: HashMap<TenantId, Tenant>,
    users: HashMap<(TenantId, UserId), User>,
    keys: Vec<StoredKey>,
    audit: Vec<AuditEvent>,
    /// The last audit id handed out (ids never repeat, purges or not).
    audit_seq: i64,
    nonces: HashMap<(TenantId, String), UnixTime>,
    sso: HashMap<TenantId, SsoSettings>,
    partner_secrets: HashMap<String, PartnerSecret>,
    clients: HashMap<String, ServiceClient>,
    /// The change log (one partition); entries up to `log_purged` were purged.
    log: Vec<LogEntry>,
    log_purged: u64,
    marks: HashMap<String, Mark>,
    hint: std::sync::Arc<tokio::sync::Notify>,
}

#[derive(Default)]
pub struct MemoryStore {
    data: Mutex<Data>,
    counters: MemoryCounters,
}

/// [`Counters`] in this process's memory: one node's rate limits and backoff when there is no
/// shared store (also the counters of [`MemoryStore`]). Forgotten counters are swept out at
/// most every [`SWEEP_EVERY`] seconds, so the map holds what is alive, not what ever was.
#[derive(Default)]
pub struct MemoryCounters {
    inner: Mutex<CounterMap>,
}

/// Seconds between sweeps of forgotten counters.
pub const SWEEP_EVERY: i64 = 10;

#[derive(Default)]
struct CounterMap {
    /// Each counter with the `forget_after` it was last hit with.
    hits: HashMap<String, (Hits, u32)>,
    swept: UnixTime,
}

impl MemoryCounters {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> StoreResult<MutexGuard<'_, CounterMap>> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("memory counters poisoned".into()))
    }

    /// How many counters are held (forgotten ones until the next sweep).
    pub fn len(&self) -> usize {
        self.lock().map_or(0, |m| m.hits.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> StoreResult<MutexGuard<'_, Data>> {
        self.data
            .lock()
            .map_err(|_| StoreError::Backend("memory store poisoned".into()))
    }
}

impl Data {
    fn append_audit(&mut self, events: Vec<AuditEvent>) {
        for mut e in events {
            self.audit_seq += 1;
            e.id = self.audit_seq;
            self.audit.push(e);
        }
    }

    /// Appends the events `audit` builds from a write's outcome, under the write's lock.
    fn audit_with<T: ?Sized>(&mut self, audit: &AuditWith<T>, outcome: &T) {
        if let Some(build) = audit {
            self.append_audit(build(outcome));
        }
    }

    /// The session's place in creation order (sessions are never deleted here).
    fn order_of(&self, id: &SessionId) -> u64 {
        self.created.get(id).copied().unwrap_or(0)
    }

    fn session_mut(&mut self, tenant: &TenantId, id: &SessionId) -> Option<&mut Session> {
        self.sessions.get_mut(id).filter(|s| &s.tenant_id == tenant)
    }

    fn revoke(&mut self, id: &SessionId, reason: RevokeReason, now: UnixTime) -> Option<Session> {
        let s = self.sessions.get_mut(id)?;
        if !s.is_active_at(now) {
            return None;
        }
        s.state = SessionState::Revoked { reason, at: now };
        let s = s.clone();
        self.log(Change::SessionEnded {
            tenant: s.tenant_id.clone(),
            session: s.id.clone(),
            user: s.user_id,
            reason,
            auth_time: Some(s.auth_time),
        });
        Some(s)
    }

    /// Records the timeout of an active session past it at `now`, with its `SessionExpired`.
    fn expire(&mut self, id: &SessionId, now: UnixTime) -> Option<Session> {
        let s = self.sessions.get_mut(id)?;
        if s.state != SessionState::Active || s.is_active_at(now) {
            return None;
        }
        s.state = SessionState::Expired { at: now };
        let s = s.clone();
        self.log(Change::session_expired(&s));
        Some(s)
    }

    fn log(&mut self, change: Change) {
        let seq = self.log_purged + self.log.len() as u64 + 1;
        self.log.push(LogEntry {
            seq,
            at: crate::wall_clock(),
            change,
        });
        self.hint.notify_waiters();
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_session(
        &self,
        new: NewSession,
        limit: SessionLimit,
        now: UnixTime,
        audit: AuditWith<[SessionId]>,
    ) -> StoreResult<Vec<SessionId>> {
        let mut d = self.lock()?;
        let s = new.session;
        let mut active: Vec<(UnixTime, u64, SessionId)> = d
            .sessions
            .values()
            .filter(|o| o.tenant_id == s.tenant_id && o.user_id == s.user_id && o.is_active_at(now))
            .map(|o| (o.created_at, d.order_of(&o.id), o.id.clone()))
            .collect();
        active.sort();
        let evicted: Vec<SessionId> = match limit {
            SessionLimit::Unlimited => Vec::new(),
            SessionLimit::Reject(max) if active.len() >= max as usize => {
                return Err(StoreError::LimitReached);
            }
            SessionLimit::Reject(_) => Vec::new(),
            SessionLimit::EvictOldest(max) => {
                let excess = (active.len() + 1).saturating_sub(max.max(1) as usize);
                active
                    .into_iter()
                    .take(excess)
                    .map(|(_, _, id)| id)
                    .collect()
            }
        };
        // Checked before any write: a failed create changes nothing.
        let token_taken = new
            .refresh
            .as_ref()
            .is_some_and(|r| d.refresh.contains_key(&r.hash));
        if d.sessions.contains_key(&s.id) || token_taken {
            return Err(StoreError::Conflict);
        }
        for id in &evicted {
            d.revoke(id, RevokeReason::Displaced, now);
        }
        if let Some(r) = new.refresh {
            d.refresh.insert(
                r.hash,
                RefreshRecord {
                    hash: r.hash,
                    tenant_id: s.tenant_id.clone(),
                    session_id: s.id.clone(),
                    expires_at: r.expires_at,
                    rotated: None,
                },
            );
        }
        let order = d.created.len() as u64;
        d.created.insert(s.id.clone(), order);
        d.sessions.insert(s.id.clone(), s);
        d.audit_with(&audit, &evicted[..]);
        Ok(evicted)
    }

    async fn get_session(&self, tenant: &TenantId, id: &SessionId) -> StoreResult<Option<Session>> {
        let d = self.lock()?;
        Ok(d.sessions
            .get(id)
            .filter(|s| &s.tenant_id == tenant)
            .cloned())
    }

    async fn touch_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
    ) -> StoreResult<()> {
        let mut d = self.lock()?;
        if let Some(s) = d.session_mut(tenant, id)
            && s.is_active_at(now)
            && s.last_seen_at < now
        {
            s.last_seen_at = now;
        }
        Ok(())
    }

    async fn reauthenticate(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
    ) -> StoreResult<Option<Session>> {
        let mut d = self.lock()?;
        Ok(match d.session_mut(tenant, id) {
            Some(s) if s.is_active_at(now) => {
                s.auth_time = s.auth_time.max(now);
                s.last_seen_at = s.last_seen_at.max(now);
                Some(s.clone())
            }
            _ => None,
        })
    }

    async fn rotate_refresh(
        &self,
        r: Rotation,
        audit: AuditWith<RotateOutcome>,
    ) -> StoreResult<RotateOutcome> {
        let mut d = self.lock()?;
        let Some(presented) = d.refresh.get(&r.presented).cloned() else {
            return Ok(RotateOutcome::Invalid);
        };
        let Some(session) = d.sessions.get(&presented.session_id).cloned() else {
            return Ok(RotateOutcome::Invalid);
        };
        let successor_is_current = presented
            .rotated
            .as_ref()
            .and_then(|rot| d.refresh.get(&rot.successor))
            .is_some_and(|s| s.rotated.is_none());
        let outcome = match r.step(&presented, &session, successor_is_current) {
            RotationStep::Invalid => RotateOutcome::Invalid,
            RotationStep::SessionInactive => RotateOutcome::SessionInactive { session },
            RotationStep::Rotate => {
                if d.refresh.contains_key(&r.successor.hash) {
                    return Err(StoreError::Conflict);
                }
                d.refresh.insert(
                    r.successor.hash,
                    RefreshRecord {
                        hash: r.successor.hash,
                        tenant_id: r.tenant_id.clone(),
                        session_id: session.id.clone(),
                        expires_at: r.successor.expires_at,
                        rotated: None,
                    },
                );
                if let Some(p) = d.refresh.get_mut(&r.presented) {
                    p.rotated = Some(Rotated {
                        at: r.now,
                        successor: r.successor.hash,
                        sealed_successor: r.sealed_successor,
                    });
                }
                let s = d.session_mut(&r.tenant_id, &session.id);
                let session = match s {
                    Some(s) => {
                        s.last_seen_at = s.last_seen_at.max(r.now);
                        s.clone()
                    }
                    None => session,
                };
                RotateOutcome::Rotated { session }
            }
            RotationStep::Replay => RotateOutcome::Replayed {
                session,
                sealed_successor: presented
                    .rotated
                    .map(|rot| rot.sealed_successor)
                    .unwrap_or_default(),
            },
            RotationStep::Reuse => {
                let revoked = d.revoke(&session.id, RevokeReason::ReuseDetected, r.now);
                RotateOutcome::Reused {
                    revoked: revoked.is_some(),
                    session: revoked.unwrap_or(session),
                }
            }
        };
        d.audit_with(&audit, &outcome);
        Ok(outcome)
    }

    async fn revoke_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        reason: RevokeReason,
        now: UnixTime,
        audit: AuditWith<[Session]>,
    ) -> StoreResult<Option<Session>> {
        let mut d = self.lock()?;
        if d.session_mut(tenant, id).is_none() {
            return Ok(None);
        }
        let revoked = d.revoke(id, reason, now);
        d.audit_with(&audit, revoked.as_slice());
        Ok(revoked)
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
        let mut d = self.lock()?;
        // Oldest first, as the other backends log them.
        let mut ids: Vec<(UnixTime, u64, SessionId)> = d
            .sessions
            .values()
            .filter(|s| &s.tenant_id == tenant && &s.user_id == user && Some(&s.id) != keep)
            .map(|s| (s.created_at, d.order_of(&s.id), s.id.clone()))
            .collect();
        ids.sort();
        let revoked: Vec<Session> = ids
            .iter()
            .filter_map(|(_, _, id)| d.revoke(id, reason, now))
            .collect();
        if keep.is_none() && !revoked.is_empty() {
            d.log(Change::UserSessionsEnded {
                tenant: tenant.clone(),
                user: *user,
                before: now,
                reason,
            });
        }
        d.audit_with(&audit, &revoked[..]);
        Ok(revoked)
    }

    async fn mark_expired(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        now: UnixTime,
        audit: AuditWith<bool>,
    ) -> StoreResult<bool> {
        let mut d = self.lock()?;
        let recorded = d.session_mut(tenant, id).is_some() && d.expire(id, now).is_some();
        d.audit_with(&audit, &recorded);
        Ok(recorded)
    }

    async fn expire_sessions(&self, now: UnixTime, batch: usize) -> StoreResult<Vec<Session>> {
        let mut d = self.lock()?;
        let due: Vec<SessionId> = d
            .sessions
            .values()
            .filter(|s| s.state == SessionState::Active && !s.is_active_at(now))
            .take(batch)
            .map(|s| s.id.clone())
            .collect();
        Ok(due.iter().filter_map(|id| d.expire(id, now)).collect())
    }

    async fn find_sessions(
        &self,
        tenant: &TenantId,
        query: &SessionQuery,
        now: UnixTime,
    ) -> StoreResult<Vec<Session>> {
        let d = self.lock()?;
        let mut found: Vec<Session> = d
            .sessions
            .values()
            .filter(|s| &s.tenant_id == tenant && query.matches(s, now))
            .cloned()
            .collect();
        if let Some(c) = &query.before {
            // Newest first: a page goes on below its last session's place in that order.
            let at = match d.sessions.get(&c.id).filter(|s| &s.tenant_id == tenant) {
                Some(_) => (c.created_at, d.order_of(&c.id)),
                None => (c.created_at, 0),
            };
            found.retain(|s| (s.created_at, d.order_of(&s.id)) < at);
        }
        found.sort_by_key(|s| std::cmp::Reverse((s.created_at, d.order_of(&s.id))));
        found.truncate(query.limit);
        Ok(found)
    }

    async fn consume_nonce(
        &self,
        tenant: &TenantId,
        nonce: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut d = self.lock()?;
        d.nonces.retain(|_, exp| *exp > now);
        let key = (tenant.clone(), nonce.to_owned());
        if d.nonces.contains_key(&key) {
            return Ok(false);
        }
        d.nonces.insert(key, expires_at);
        Ok(true)
    }

    async fn count_active_sessions(&self, now: UnixTime) -> StoreResult<u64> {
        Ok(self
            .lock()?
            .sessions
            .values()
            .filter(|s| s.is_active_at(now))
            .count() as u64)
    }

    async fn get_refresh(&self, hash: &TokenHash) -> StoreResult<Option<RefreshRecord>> {
        Ok(self.lock()?.refresh.get(hash).cloned())
    }

    async fn ping(&self) -> StoreResult<()> {
        self.lock().map(|_| ())
    }
}

#[async_trait]
impl IdentityStore for MemoryStore {
    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<()> {
        let mut d = self.lock()?;
        if d.tenants.contains_key(&tenant.id) {
            return Err(StoreError::Conflict);
        }
        d.tenants.insert(tenant.id.clone(), tenant);
        Ok(())
    }

    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        Ok(self.lock()?.tenants.get(id).cloned())
    }

    async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> StoreResult<Vec<Tenant>> {
        let d = self.lock()?;
        let mut found: Vec<Tenant> = d
            .tenants
            .values()
            .filter(|t| after.is_none_or(|a| t.id.as_str() > a.as_str()))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        found.truncate(limit);
        Ok(found)
    }

    async fn set_tenant_policy(
        &self,
        id: &TenantId,
        overrides: PolicyOverrides,
    ) -> StoreResult<Option<Tenant>> {
        let mut d = self.lock()?;
        let t = d.tenants.get_mut(id).map(|t| {
            t.overrides = overrides;
            t.clone()
        });
        if t.is_some() {
            d.log(Change::TenantChanged { tenant: id.clone() });
        }
        Ok(t)
    }

    async fn create_user(&self, user: User) -> StoreResult<()> {
        let mut d = self.lock()?;
        let taken = d.users.values().any(|u| {
            u.tenant_id == user.tenant_id
                && (u.id == user.id
                    || (user.username.is_some() && u.username == user.username)
                    || (user.external_id.is_some() && u.external_id == user.external_id))
        });
        if taken {
            return Err(StoreError::Conflict);
        }
        d.users.insert((user.tenant_id.clone(), user.id), user);
        Ok(())
    }

    async fn get_user(&self, tenant: &TenantId, id: &UserId) -> StoreResult<Option<User>> {
        Ok(self.lock()?.users.get(&(tenant.clone(), *id)).cloned())
    }

    async fn list_users(&self, tenant: &TenantId, query: &UserQuery) -> StoreResult<Vec<User>> {
        let d = self.lock()?;
        let mut found: Vec<User> = d
            .users
            .values()
            .filter(|u| &u.tenant_id == tenant && query.matches(u))
            .cloned()
            .collect();
        found.sort_by_key(|u| u.id);
        found.truncate(query.limit);
        Ok(found)
    }

    async fn set_user_role(
        &self,
        tenant: &TenantId,
        id: &UserId,
        role: Option<Role>,
    ) -> StoreResult<bool> {
        let mut d = self.lock()?;
        let found = d
            .users
            .get_mut(&(tenant.clone(), *id))
            .map(|u| u.role = role)
            .is_some();
        if found {
            d.log(Change::UserChanged {
                tenant: tenant.clone(),
                user: *id,
            });
        }
        Ok(found)
    }

    async fn find_user_by_username(
        &self,
        tenant: &TenantId,
        username: &str,
    ) -> StoreResult<Option<User>> {
        Ok(self
            .lock()?
            .users
            .values()
            .find(|u| &u.tenant_id == tenant && u.username.as_deref() == Some(username))
            .cloned())
    }

    async fn set_password_hash(
        &self,
        tenant: &TenantId,
        id: &UserId,
        hash: String,
    ) -> StoreResult<bool> {
        let mut d = self.lock()?;
        let found = d
            .users
            .get_mut(&(tenant.clone(), *id))
            .map(|u| u.password_hash = Some(hash))
            .is_some();
        if found {
            d.log(Change::UserChanged {
                tenant: tenant.clone(),
                user: *id,
            });
        }
        Ok(found)
    }

    async fn set_user_status(
        &self,
        tenant: &TenantId,
        id: &UserId,
        status: UserStatus,
    ) -> StoreResult<bool> {
        let mut d = self.lock()?;
        let found = d
            .users
            .get_mut(&(tenant.clone(), *id))
            .map(|u| u.status = status)
            .is_some();
        if found {
            d.log(Change::UserChanged {
                tenant: tenant.clone(),
                user: *id,
            });
        }
        Ok(found)
    }

    async fn find_user_by_external_id(
        &self,
        tenant: &TenantId,
        external_id: &str,
    ) -> StoreResult<Option<User>> {
        Ok(self
            .lock()?
            .users
            .values()
            .find(|u| &u.tenant_id == tenant && u.external_id.as_deref() == Some(external_id))
            .cloned())
    }

    async fn set_sso(&self, tenant: &TenantId, settings: SsoSettings) -> StoreResult<()> {
        let mut d = self.lock()?;
        d.sso.insert(tenant.clone(), settings);
        d.log(Change::SsoChanged {
            tenant: tenant.clone(),
        });
        Ok(())
    }

    async fn get_sso(&self, tenant: &TenantId) -> StoreResult<Option<SsoSettings>> {
        Ok(self.lock()?.sso.get(tenant).cloned())
    }

    async fn create_partner_secret(&self, secret: PartnerSecret) -> StoreResult<()> {
        let mut d = self.lock()?;
        if d.partner_secrets.contains_key(&secret.secret_id) {
            return Err(StoreError::Conflict);
        }
        d.log(Change::PartnerSecretChanged {
            secret_id: secret.secret_id.clone(),
        });
        d.partner_secrets.insert(secret.secret_id.clone(), secret);
        Ok(())
    }

    async fn get_partner_secret(&self, secret_id: &str) -> StoreResult<Option<PartnerSecret>> {
        Ok(self.lock()?.partner_secrets.get(secret_id).cloned())
    }

    async fn delete_partner_secret(&self, tenant: &TenantId, secret_id: &str) -> StoreResult<bool> {
        let mut d = self.lock()?;
        match d.partner_secrets.get(secret_id) {
            Some(s) if &s.tenant_id == tenant => {
                d.partner_secrets.remove(secret_id);
                d.log(Change::PartnerSecretChanged {
                    secret_id: secret_id.to_owned(),
                });
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn create_client(&self, client: ServiceClient) -> StoreResult<()> {
        let mut d = self.lock()?;
        if d.clients.contains_key(&client.client_id) {
            return Err(StoreError::Conflict);
        }
        d.log(Change::ClientChanged {
            client_id: client.client_id.clone(),
        });
        d.clients.insert(client.client_id.clone(), client);
        Ok(())
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ServiceClient>> {
        Ok(self.lock()?.clients.get(client_id).cloned())
    }

    async fn list_partner_secrets(&self, tenant: &TenantId) -> StoreResult<Vec<PartnerSecret>> {
        let mut found: Vec<PartnerSecret> = self
            .lock()?
            .partner_secrets
            .values()
            .filter(|p| &p.tenant_id == tenant)
            .cloned()
            .collect();
        found.sort_by(|a, b| a.secret_id.cmp(&b.secret_id));
        Ok(found)
    }

    async fn list_clients(&self, tenant: &TenantId) -> StoreResult<Vec<ServiceClient>> {
        let mut found: Vec<ServiceClient> = self
            .lock()?
            .clients
            .values()
            .filter(|c| &c.tenant_id == tenant)
            .cloned()
            .collect();
        found.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(found)
    }

    async fn load_keys(&self) -> StoreResult<Vec<StoredKey>> {
        Ok(self.lock()?.keys.clone())
    }

    async fn init_keys(&self, keys: Vec<StoredKey>) -> StoreResult<Vec<StoredKey>> {
        let mut d = self.lock()?;
        if d.keys.is_empty() {
            d.keys = keys;
            d.log(Change::KeyringChanged);
        }
        Ok(d.keys.clone())
    }

    async fn replace_keys(&self, keys: Vec<StoredKey>) -> StoreResult<()> {
        let mut d = self.lock()?;
        d.keys = keys;
        d.log(Change::KeyringChanged);
        Ok(())
    }

    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        self.lock()?.append_audit(events);
        Ok(())
    }

    async fn purge_audit(&self, before: UnixTime) -> StoreResult<u64> {
        let mut d = self.lock()?;
        let n = d.audit.len();
        d.audit.retain(|e| e.at >= before);
        Ok((n - d.audit.len()) as u64)
    }

    async fn find_audit(
        &self,
        tenant: &TenantId,
        query: &AuditQuery,
    ) -> StoreResult<Vec<AuditEvent>> {
        let d = self.lock()?;
        Ok(d.audit
            .iter()
            .rev()
            .filter(|e| &e.tenant_id == tenant && query.matches(e))
            .take(query.limit)
            .cloned()
            .collect())
    }

    async fn count_audit(
        &self,
        tenant: &TenantId,
        since: UnixTime,
        until: UnixTime,
        bucket: u32,
    ) -> StoreResult<Vec<AuditCount>> {
        let width = i64::from(bucket.max(1));
        let d = self.lock()?;
        let mut counts: HashMap<(UnixTime, AuditKind, Option<String>), u64> = HashMap::new();
        for e in d
            .audit
            .iter()
            .filter(|e| &e.tenant_id == tenant && e.at >= since && e.at < until)
        {
            *counts
                .entry((e.at.div_euclid(width) * width, e.kind, e.reason.clone()))
                .or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((bucket, kind, reason), count)| AuditCount {
                bucket,
                kind,
                reason,
                count,
            })
            .collect())
    }
}

#[async_trait]
impl ChangeLog for MemoryStore {
    fn partitions(&self) -> usize {
        1
    }

    async fn read_log(&self, cursors: &[(usize, u64)], limit: usize) -> StoreResult<Vec<LogRead>> {
        let d = self.lock()?;
        let head = d.log_purged + d.log.len() as u64;
        Ok(cursors
            .iter()
            .map(|&(_, after)| {
                if after < d.log_purged || after > head {
                    return LogRead::Gone { head };
                }
                let from = usize::try_from(after - d.log_purged).unwrap_or(usize::MAX);
                LogRead::Entries(d.log.iter().skip(from).take(limit).cloned().collect())
            })
            .collect())
    }

    async fn wait_hint(&self, max_wait: std::time::Duration) -> Vec<usize> {
        let Ok(hint) = self.lock().map(|d| std::sync::Arc::clone(&d.hint)) else {
            return Vec::new();
        };
        match tokio::time::timeout(max_wait, hint.notified()).await {
            Ok(()) => vec![0],
            Err(_) => Vec::new(),
        }
    }

    async fn purge_log(&self, before: UnixTime, batch: usize) -> StoreResult<u64> {
        let mut d = self.lock()?;
        let n = d
            .log
            .iter()
            .take(batch)
            .take_while(|e| e.at < before)
            .count();
        d.log.drain(..n);
        d.log_purged += n as u64;
        Ok(n as u64)
    }

    async fn load_mark(&self, name: &str) -> StoreResult<Option<Mark>> {
        Ok(self.lock()?.marks.get(name).cloned())
    }

    async fn swap_mark(
        &self,
        name: &str,
        expected: Option<u64>,
        body: &str,
    ) -> StoreResult<Option<u64>> {
        let mut d = self.lock()?;
        if d.marks.get(name).map(|m| m.version) != expected {
            return Ok(None);
        }
        let version = expected.unwrap_or(0) + 1;
        d.marks.insert(
            name.to_owned(),
            Mark {
                version,
                body: body.to_owned(),
            },
        );
        Ok(Some(version))
    }
}

#[async_trait]
impl Counters for MemoryCounters {
    async fn hit(&self, key: &str, forget_after: u32, now: UnixTime) -> StoreResult<Hits> {
        let mut m = self.lock()?;
        if now - m.swept >= SWEEP_EVERY {
            m.hits
                .retain(|_, (h, forget)| now - h.last < i64::from(*forget));
            m.swept = now;
        }
        let (h, forget) = m.hits.entry(key.to_owned()).or_default();
        if now - h.last >= i64::from(forget_after) {
            *h = Hits::default();
        }
        h.count += 1;
        h.last = h.last.max(now);
        *forget = forget_after;
        Ok(*h)
    }

    async fn peek(&self, key: &str, forget_after: u32, now: UnixTime) -> StoreResult<Hits> {
        Ok(self
            .lock()?
            .hits
            .get(key)
            .map(|(h, _)| *h)
            .filter(|h| now - h.last < i64::from(forget_after))
            .unwrap_or_default())
    }

    async fn reset(&self, key: &str) -> StoreResult<()> {
        self.lock()?.hits.remove(key);
        Ok(())
    }
}

#[async_trait]
impl Counters for MemoryStore {
    async fn hit(&self, key: &str, forget_after: u32, now: UnixTime) -> StoreResult<Hits> {
        self.counters.hit(key, forget_after, now).await
    }

    async fn peek(&self, key: &str, forget_after: u32, now: UnixTime) -> StoreResult<Hits> {
        self.counters.peek(key, forget_after, now).await
    }

    async fn reset(&self, key: &str) -> StoreResult<()> {
        self.counters.reset(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::{MemoryCounters, MemoryStore};

    crate::identity_store_conformance!(async { MemoryStore::new() });
    crate::session_store_conformance!(async { MemoryStore::new() });
    crate::audited_session_writes_conformance!(async { MemoryStore::new() });
    crate::session_change_log_conformance!(async { MemoryStore::new() });
    crate::identity_change_log_conformance!(async { MemoryStore::new() });
    crate::counters_conformance!(async { MemoryStore::new() });

    mod counters_alone {
        use super::MemoryCounters;
        use crate::Counters;
        crate::counters_conformance!(async { MemoryCounters::new() });

        #[tokio::test]
        async fn forgotten_counters_are_swept_out() {
            let c = MemoryCounters::new();
            for i in 0..1000 {
                c.hit(&format!("short:{i}"), 60, 1000).await.ok();
            }
            c.hit("long", 3600, 1000).await.ok();
            assert_eq!(c.len(), 1001);
            c.hit("later", 60, 1060).await.ok();
            assert_eq!(
                c.len(),
                2,
                "the short-lived counters are gone, the long one stays"
            );
            let long = c.peek("long", 3600, 1060).await.map(|h| h.count).ok();
            assert_eq!(long, Some(1));
        }
    }
}
