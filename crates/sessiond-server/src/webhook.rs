//! Delivers `suspicious_activity` alerts to tenants' webhooks: queued without blocking the
//! request, POSTed with an HMAC-SHA256 signature over `timestamp.body`, retried with
//! exponential backoff.

use sessiond_core::alert::{AlertSink, signature};
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
}

pub struct WebhookSender {
    queue: mpsc::Sender<Job>,
}

impl WebhookSender {
    /// Starts the delivery task; retries wait `first_retry`, then twice as long each time.
    pub fn start(first_retry: Duration) -> Self {
        let (queue, mut jobs) = mpsc::channel::<Job>(QUEUE);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
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

async fn deliver(http: &reqwest::Client, job: &Job, first_retry: Duration) {
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
            Err(e) => tracing::warn!(url = %job.url, error = %e, attempt, "webhook unreachable"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    tracing::error!(url = %job.url, "webhook delivery abandoned");
}

impl AlertSink for WebhookSender {
    fn deliver(&self, url: &str, secret: &str, event: &AuditEvent) {
        let Ok(body) = serde_json::to_string(event) else {
            return;
        };
        let job = Job {
            url: url.to_owned(),
            secret: secret.to_owned(),
            body,
        };
        if self.queue.try_send(job).is_err() {
            tracing::error!(url, "webhook queue full: alert dropped");
        }
    }
}
