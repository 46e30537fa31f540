//! The audit trail: events, their recording and alerts, queries and retention.

use super::*;

impl Engine {
    /// A tenant's webhook URL and the secret its deliveries are signed with.
    pub async fn webhook(&self, tenant: &TenantId) -> CoreResult<Option<(String, String)>> {
        let tp = self.tenant(tenant).await?;
        Ok(tp.policy.webhook_url.as_ref().map(|url| {
            (
                url.clone(),
                crate::alert::webhook_secret(&self.master, tenant, url),
            )
        }))
    }

    /// Deletes audit events older than `keep_seconds` (all tenants); returns how many.
    pub async fn purge_audit(&self, keep_seconds: i64) -> CoreResult<u64> {
        Ok(self.identity.purge_audit(self.now() - keep_seconds).await?)
    }

    pub async fn find_audit(
        &self,
        tenant: &TenantId,
        q: &AuditQuery,
    ) -> CoreResult<Vec<AuditEvent>> {
        self.tenant(tenant).await?;
        Ok(self.identity.find_audit(tenant, q).await?)
    }

    pub(crate) fn event(
        &self,
        ctx: &RequestContext,
        kind: AuditKind,
        user: Option<UserId>,
        session: Option<SessionId>,
    ) -> AuditEvent {
        AuditEvent {
            id: 0,
            kind,
            tenant_id: ctx.tenant_id.clone(),
            user_id: user,
            session_id: session,
            activity_id: ctx.activity_id.clone(),
            correlation_id: ctx.correlation_id.clone(),
            ip: ctx.ip.clone(),
            user_agent: ctx.user_agent.clone(),
            reason: None,
            at: self.now(),
            actor: ctx.actor.clone(),
        }
    }

    /// An event of sessiond's own doing, outside any request (the janitor's sweep, a session
    /// event's delivery): about one session, under the activity id `activity`.
    pub(crate) fn background_event(
        &self,
        kind: AuditKind,
        tenant: &TenantId,
        user: UserId,
        session: &SessionId,
        activity: String,
        reason: String,
    ) -> AuditEvent {
        AuditEvent {
            id: 0,
            kind,
            tenant_id: tenant.clone(),
            user_id: Some(user),
            session_id: Some(session.clone()),
            activity_id: activity,
            correlation_id: None,
            ip: None,
            user_agent: None,
            reason: Some(reason),
            at: self.now(),
            actor: None,
        }
    }

    /// Whether session writes commit their audit events in their own transaction: the
    /// session store is the identity store too. Then nothing a request records is left half
    /// done if the request is cut off (a hang-up), so reads need no task of their own.
    pub fn audits_in_writes(&self) -> bool {
        self.audit_in_writes
    }

    /// The audit of a session write whose events `build` makes from its outcome (see
    /// [`WriteAudit`]).
    pub(crate) fn write_audit<T: ?Sized>(
        &self,
        build: impl Fn(&T) -> Vec<AuditEvent> + Send + Sync + 'static,
    ) -> WriteAudit<T> {
        WriteAudit {
            build: Arc::new(build),
            in_write: self.audit_in_writes,
        }
    }

    /// Records the audit events of a write that has returned `outcome`: appends them unless
    /// the write committed them itself, then logs and counts them as [`Engine::record`] does.
    pub(crate) async fn record_write<T: ?Sized>(
        &self,
        audit: &WriteAudit<T>,
        outcome: &T,
    ) -> CoreResult<()> {
        let events = (audit.build)(outcome);
        if events.is_empty() {
            return Ok(());
        }
        if audit.in_write {
            self.publish(&events).await;
            Ok(())
        } else {
            self.record(events).await
        }
    }

    /// Stores audit events and emits each as a JSON log line (no token ever reaches either).
    pub(crate) async fn record(&self, events: Vec<AuditEvent>) -> CoreResult<()> {
        self.identity.append_audit(events.clone()).await?;
        self.publish(&events).await;
        Ok(())
    }

    /// Counts and logs stored audit events, and raises the alerts they call for.
    async fn publish(&self, events: &[AuditEvent]) {
        for e in events {
            // Every lifecycle step passes here: logins and failures, refreshes, reuse,
            // revocations by reason, expirations, suspicious activity.
            // A session event's reason names its receiver (a client id): the label keeps only
            // the channel, so the metric does not grow with the clients.
            let reason = match (e.kind, e.reason.as_deref()) {
                (AuditKind::SessionEventDelivered | AuditKind::SessionEventFailed, Some(r)) => {
                    r.split(':').next().unwrap_or_default().to_owned()
                }
                (_, r) => r.unwrap_or_default().to_owned(),
            };
            metrics::counter!(
                "sessiond_events_total",
                "type" => e.kind.as_str(),
                "reason" => reason
            )
            .increment(1);
            let user = e.user_id.map(|u| u.to_string());
            tracing::info!(
                target: "sessiond::audit",
                r#type = e.kind.as_str(),
                tenant = %e.tenant_id,
                user = user.as_deref(),
                session = e.session_id.as_ref().map(SessionId::as_str),
                activity = %e.activity_id,
                correlation = e.correlation_id.as_deref(),
                reason = e.reason.as_deref(),
                ip = e.ip.as_deref(),
                "audit"
            );
        }
        self.alert(events).await;
    }
}

/// The audit events of one session write, built from its outcome by one function. When the
/// session store keeps the audit trail, the write is handed the function and commits the
/// events in its own transaction (one fsync for both); otherwise they are appended after it.
/// Either way [`Engine::record_write`] logs and counts them once the write has returned.
pub(crate) struct WriteAudit<T: ?Sized> {
    build: AuditFn<T>,
    in_write: bool,
}

impl<T: ?Sized> WriteAudit<T> {
    /// What the store's write is given: the function, if it commits the events.
    pub(crate) fn for_store(&self) -> AuditWith<T> {
        self.in_write.then(|| Arc::clone(&self.build))
    }
}

/// A copy of `template` (an event of the request) about `user`'s `session`, of `kind`.
pub(crate) fn about(
    template: &AuditEvent,
    kind: AuditKind,
    user: UserId,
    session: &SessionId,
    reason: Option<&str>,
) -> AuditEvent {
    AuditEvent {
        kind,
        user_id: Some(user),
        session_id: Some(session.clone()),
        reason: reason.map(str::to_owned),
        ..template.clone()
    }
}
