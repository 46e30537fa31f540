//! Alerts: `suspicious_activity` events a tenant wants pushed to its webhook. The engine
//! hands them to an [`AlertSink`], which must not block (the server's sink queues them and
//! delivers in the background, signed and retried).

use crate::outbound::Outbound;
use crate::secret::{MasterKey, hmac_hex};
use sessiond_store::{AuditEvent, TenantId};

pub trait AlertSink: Send + Sync + 'static {
    /// Queues `event` for delivery to `url`, signed with `secret`, reaching only the
    /// destinations `outbound` allows (the tenant's profile decides). Must return at once.
    fn deliver(&self, url: &str, secret: &str, event: &AuditEvent, outbound: Outbound);
}

/// A tenant's webhook signing secret: derived from the master key, the tenant and the URL, so
/// nothing more is stored; changing the URL (e.g. a `?v=2`) changes the secret.
pub fn webhook_secret(master: &MasterKey, tenant: &TenantId, url: &str) -> String {
    master.derive_hex(&[
        b"sessiond/webhook/v1\0",
        tenant.as_str().as_bytes(),
        b"\0",
        url.as_bytes(),
    ])
}

/// The `X-Sessiond-Signature` of a delivery: `v1=` and HMAC-SHA256 over `timestamp.body`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1={}",
        hmac_hex(
            secret.as_bytes(),
            &[timestamp.to_string().as_bytes(), b".", body]
        )
    )
}
