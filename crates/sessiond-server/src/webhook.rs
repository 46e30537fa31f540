//! Delivers `suspicious_activity` alerts to tenants' webhooks: queued without blocking the
//! request, POSTed with an HMAC-SHA256 signature over `timestamp.body`, retried with
//! exponential backoff. A production tenant's webhook is reached only at a public address
//! (see [`crate::outbound`]).

use crate::outbound::{OutboundClients, describe};
use sessiond_core::alert::{AlertSink, signature};
use sessiond_core::outbound::Outbound;
use sessiond_store::AuditEvent;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, mpsc};

/// Deliveries waiting; past this, new alerts are dropped (and logged) rather than queued.
const QUEUE: usize = 1024;
const ATTEMPTS: u32 = 5;
const PARALLEL: usize = 8;

struct Job {
    url: String,
    secret: String,
    body: String,
    outbound: Outbound,
}

pub struct WebhookSender {
    queue: mpsc::Sender<Job>,
}

impl WebhookSender {
    /// Starts the delivery task; retries wait `first_retry`, then twice as long each time.
    pub fn start(first_retry: Duration) -> Self {
        let (queue, mut jobs) = mpsc::channel::<Job>(QUEUE);
        let http = OutboundClients::new(Duration::from_secs(5));
        let slots = Arc::new(Semaphore::new(PARALLEL));
        tokio::spawn(async move {
            while let Some(job) = jobs.recv().await {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                let http = http.clone();
                tokio::spawn(async move {
                    deliver(&http, &job, first_retry).await;
                    drop(slot);
                });
            }
        });
        Self { queue }
    }
}

async fn deliver(clients: &OutboundClients, job: &Job, first_retry: Duration) {
    let http = match clients.for_url(&job.url, job.outbound) {
        Ok(http) => http,
        Err(why) => {
            tracing::error!(url = %job.url, why, "webhook refused: not delivered");
            return;
        }
    };
    let mut wait = first_retry;
    for attempt in 1..=ATTEMPTS {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let res = http
            .post(&job.url)
            .header("content-type", "application/json")
            .header("x-sessiond-timestamp", ts.to_string())
            .header(
                "x-sessiond-signature",
                signature(&job.secret, ts, job.body.as_bytes()),
            )
            .body(job.body.clone())
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => {
                tracing::warn!(url = %job.url, status = %r.status(), attempt, "webhook refused")
            }
            Err(e) => {
                tracing::warn!(url = %job.url, error = describe(&e), attempt, "webhook unreachable")
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    tracing::error!(url = %job.url, "webhook delivery abandoned");
}

impl AlertSink for WebhookSender {
    fn deliver(&self, url: &str, secret: &str, event: &AuditEvent, outbound: Outbound) {
        let Ok(body) = serde_json::to_string(event) else {
            return;
        };
        let job = Job {
            url: url.to_owned(),
            secret: secret.to_owned(),
            body,
            outbound,
        };
        if self.queue.try_send(job).is_err() {
            tracing::error!(url, "webhook queue full: alert dropped");
        }
    }
}
