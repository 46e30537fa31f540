//! Session events: when a session ends, the relying parties that hold state for it learn at
//! once. Every service client of the session's tenant with a `backchannel_logout_uri` gets an
//! OpenID Connect Back-Channel Logout 1.0 logout token, and the tenant's CAEP receiver
//! (`caepReceiverUrl`) a `session-revoked` Security Event Token (RFC 8417), pushed per RFC 8935.
//!
//! The change log is the outbox: every end of a session appends its `session_ended` entry in
//! the same transaction (or script) as the change itself, so an acknowledged logout survives a
//! crash. [`crate::dispatch`] delivers from it. This module builds the events: who receives one, and
//! the signed token each receiver gets.

use crate::engine::Engine;
use crate::error::{CoreError, CoreResult};
use crate::outbound::Outbound;
use serde_json::json;
use sessiond_store::{AuditKind, RevokeReason, SessionId, TenantId, UnixTime, UserId};
use sha2::{Digest, Sha256};

/// The `events` member of a back-channel logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The CAEP event type sessiond sends.
pub const SESSION_REVOKED_EVENT: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// The `typ` of a logout token (OpenID Connect Back-Channel Logout 1.0, §2.4).
pub const LOGOUT_TOKEN_TYPE: &str = "logout+jwt";
/// The `typ` of a Security Event Token (RFC 8417, §2.3).
pub const SET_TYPE: &str = "secevent+jwt";
/// A logout token is accepted for this long after it is signed (each attempt signs anew).
pub const LOGOUT_TOKEN_TTL: i64 = 120;

/// Where an event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A service client's `backchannel_logout_uri`: `logout_token=<JWT>`, form-encoded.
    BackchannelLogout,
    /// The tenant's CAEP receiver: the SET as an `application/secevent+jwt` body.
    Caep,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::BackchannelLogout => "backchannel_logout",
            Channel::Caep => "caep",
        }
    }
}

/// A session that ended, as its change-log entry recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub tenant: TenantId,
    pub session: SessionId,
    pub user: UserId,
    pub reason: EndReason,
    /// When the entry was written.
    pub at: UnixTime,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Revoked(RevokeReason),
    /// Its idle (`idle: true`) or absolute timeout passed.
    TimedOut {
        idle: bool,
    },
}

impl EndReason {
    /// The reason as events and the audit trail name it: a revocation reason, `idle_timeout`
    /// or `absolute_timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Revoked(r) => r.as_str(),
            EndReason::TimedOut { idle: true } => "idle_timeout",
            EndReason::TimedOut { idle: false } => "absolute_timeout",
        }
    }
}

/// One event for one receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub channel: Channel,
    /// The service client's id, or `caep`.
    pub receiver: String,
    pub url: String,
    /// Which addresses the tenant's profile may reach.
    pub outbound: Outbound,
    /// The same for every attempt at this event for this receiver, on every node.
    pub jti: String,
    pub ended: Ended,
}

impl Delivery {
    /// The receiver as the audit trail names it: `backchannel_logout:<clientId>` or `caep`.
    pub fn receiver_label(&self) -> String {
        match self.channel {
            Channel::BackchannelLogout => format!("backchannel_logout:{}", self.receiver),
            Channel::Caep => "caep".to_owned(),
        }
    }
}

/// What a receiver made of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Worth another attempt later (a connection failure, a timeout, a 5xx, a 429).
    Retry(String),
    /// The receiver refused the event (a 4xx) or cannot be reached by the tenant's rules:
    /// another attempt would fare no better.
    Refused(String),
}

/// Sends one event over HTTP (the server implements it; tests record).
#[async_trait::async_trait]
pub trait Deliver: Send + Sync + 'static {
    async fn post(&self, delivery: &Delivery, token: &str) -> Outcome;
}

/// The CAEP `initiating_entity` of a `session-revoked` event for how the session ended.
pub fn initiating_entity(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Revoked(
            RevokeReason::Logout | RevokeReason::LogoutAll | RevokeReason::PasswordChanged,
        ) => "user",
        EndReason::Revoked(RevokeReason::Admin | RevokeReason::PartnerLogout) => "admin",
        EndReason::Revoked(RevokeReason::Displaced) | EndReason::TimedOut { .. } => "policy",
        EndReason::Revoked(RevokeReason::ReuseDetected) => "system",
    }
}

/// A `jti` that names one event for one receiver: base64url of 16 bytes of SHA-256 over the
/// channel, the receiver, the tenant and the session (a session ends once).
fn event_id(channel: Channel, receiver: &str, ended: &Ended) -> String {
    let mut h = Sha256::new();
    for part in [
        "sessiond-session-event",
        channel.as_str(),
        receiver,
        ended.tenant.as_str(),
        ended.session.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    crate::secret::b64(&h.finalize()[..16])
}

/// Where a tenant's events go: its clients' back-channel logout URIs (by client id), then its
/// CAEP receiver, under the tenant's outbound rules.
#[derive(Debug, Clone)]
pub struct Receivers {
    outbound: Outbound,
    list: Vec<(Channel, String, String)>,
}

impl Receivers {
    /// One delivery of `ended` per receiver.
    pub fn deliveries(&self, ended: &Ended) -> Vec<Delivery> {
        self.list
            .iter()
            .map(|(channel, receiver, url)| Delivery {
                channel: *channel,
                jti: event_id(*channel, receiver, ended),
                receiver: receiver.clone(),
                url: url.clone(),
                outbound: self.outbound,
                ended: ended.clone(),
            })
            .collect()
    }
}

impl Engine {
    /// The receivers of a tenant's session events; none for a tenant that is gone.
    pub async fn event_receivers(&self, tenant: &TenantId) -> CoreResult<Receivers> {
        let tp = match self.tenant(tenant).await {
            Ok(tp) => tp,
            Err(CoreError::UnknownTenant) => {
                return Ok(Receivers {
                    outbound: Outbound::PublicOnly,
                    list: Vec::new(),
                });
            }
            Err(e) => return Err(e),
        };
        let mut list = Vec::new();
        for client in self.identity.list_clients(tenant).await? {
            if let Some(url) = client.backchannel_logout_uri {
                list.push((Channel::BackchannelLogout, client.client_id, url));
            }
        }
        if let Some(url) = &tp.policy.caep_receiver_url {
            list.push((Channel::Caep, "caep".to_owned(), url.clone()));
        }
        Ok(Receivers {
            outbound: Outbound::for_profile(tp.tenant.profile),
            list,
        })
    }

    /// The delivery's token, signed now with the session-token keyring: a logout token
    /// (`typ: logout+jwt`, no `nonce`) or a `session-revoked` SET (`typ: secevent+jwt`).
    pub fn event_token(&self, d: &Delivery) -> CoreResult<String> {
        let now = self.now();
        let e = &d.ended;
        let issuer = &self.config().issuer;
        let keyring = self.keyring()?;
        match d.channel {
            Channel::BackchannelLogout => keyring.sign_typed(
                LOGOUT_TOKEN_TYPE,
                &json!({
                    "iss": issuer,
                    "aud": d.receiver,
                    "iat": now,
                    "exp": now + LOGOUT_TOKEN_TTL,
                    "jti": d.jti,
                    "sub": e.user.to_string(),
                    "sid": e.session.as_str(),
                    "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
                }),
            ),
            Channel::Caep => keyring.sign_typed(
                SET_TYPE,
                &json!({
                    "iss": issuer,
                    "aud": d.url,
                    "iat": now,
                    "jti": d.jti,
                    "sub_id": {
                        "format": "complex",
                        "user": { "format": "opaque", "id": e.user.to_string() },
                        "session": { "format": "opaque", "id": e.session.as_str() },
                        "tenant": { "format": "opaque", "id": e.tenant.as_str() },
                    },
                    "events": {
                        SESSION_REVOKED_EVENT: {
                            "event_timestamp": e.at,
                            "initiating_entity": initiating_entity(e.reason),
                            "reason_admin": { "en": e.reason.as_str() },
                        }
                    },
                }),
            ),
        }
    }

    /// Records the end of a delivery in the tenant's audit trail: `session_event_delivered`
    /// or `session_event_failed`, the receiver in `reason`, the event's `jti` as activity id.
    pub async fn record_delivery(&self, d: &Delivery, delivered: bool) -> CoreResult<()> {
        let kind = if delivered {
            AuditKind::SessionEventDelivered
        } else {
            AuditKind::SessionEventFailed
        };
        let e = &d.ended;
        self.record(vec![self.background_event(
            kind,
            &e.tenant,
            e.user,
            &e.session,
            d.jti.clone(),
            d.receiver_label(),
        )])
        .await
    }
}
