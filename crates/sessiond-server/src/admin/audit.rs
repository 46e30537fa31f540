//! A tenant's audit trail: search a page at a time, and counts over time for a chart.

use super::{Admin, VIEWER, admin_err, decode_cursor, next_cursor, page_size};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Params, Path};
use crate::schemas;
use crate::wire::{AuditBucket, AuditCountsResponse, AuditResponse};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use sessiond_proto::ids;
use sessiond_store::{AuditCount, AuditKind, AuditQuery, SessionId, UnixTime, UserId};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/tenants/{tenant}/audit", get(audit))
        .route("/admin/v1/tenants/{tenant}/audit/counts", get(counts))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// Only this user's events.
    #[param(value_type = Option<uuid::Uuid>, nullable = false)]
    user_id: Option<UserId>,
    /// Only this session's events.
    #[param(value_type = Option<ids::SessionId>, nullable = false)]
    session_id: Option<String>,
    /// Only the events of this activity (`X-Activity-ID`).
    #[param(nullable = false)]
    activity_id: Option<String>,
    /// Only events of this type.
    #[param(value_type = Option<schemas::AuditKind>, nullable = false)]
    r#type: Option<String>,
    /// Only events at or after this time (Unix seconds).
    #[param(nullable = false)]
    since: Option<i64>,
    /// Only events before this time (Unix seconds).
    #[param(nullable = false)]
    until: Option<i64>,
    /// The `nextCursor` of the previous page.
    #[param(nullable = false)]
    cursor: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[param(nullable = false, minimum = 1)]
    limit: Option<usize>,
}

/// Search a tenant's audit events, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{tenantId}/audit",
    tag = "admin",
    operation_id = "audit",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
        AuditParams,
    ),
    responses(
        (status = 200, description = "A page of the matching events.", body = AuditResponse),
    ),
)]
pub(crate) async fn audit(
    State(st): State<AppState>,
    admin: Admin<VIEWER>,
    Path(t): Path<String>,
    Params(p): Params<AuditParams>,
) -> ApiResult<Json<AuditResponse>> {
    let kind = p
        .r#type
        .map(|k| {
            AuditKind::parse(&k)
                .ok_or_else(|| ApiError::invalid_request(format!("unknown event type {k}")))
        })
        .transpose()?;
    let session_id = p
        .session_id
        .map(|s| SessionId::parse(&s).map_err(|_| ApiError::invalid_request("malformed sessionId")))
        .transpose()?;
    let limit = page_size(p.limit);
    let q = AuditQuery {
        user_id: p.user_id,
        session_id,
        activity_id: p.activity_id,
        kind,
        since: p.since,
        until: p.until,
        before: decode_cursor(p.cursor.as_deref())?,
        limit,
    };
    let events = st
        .engine
        .find_audit(&admin.tenant(&t)?, &q)
        .await
        .map_err(admin_err)?;
    let next = next_cursor(&events, limit, |e| e.id);
    Ok(Json(AuditResponse {
        events,
        next_cursor: next,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CountParams {
    /// From this time (Unix seconds; default: 24 buckets before `until`).
    #[param(nullable = false, minimum = 0, maximum = 100_000_000_000_i64)]
    since: Option<i64>,
    /// Up to this time (Unix seconds, exclusive; default: now).
    #[param(nullable = false, minimum = 0, maximum = 100_000_000_000_i64)]
    until: Option<i64>,
    /// Each bucket's width in seconds (default 60).
    #[param(nullable = false, minimum = 1)]
    bucket: Option<u32>,
}

/// The longest range one count covers: 31 days.
const MAX_RANGE: i64 = 31 * 86_400;

/// Counts of a tenant's logins, failures, rate-limit refusals, refreshes, reuse detections,
/// revocations and alerts per time bucket (at most 500 buckets, at most 31 days).
#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{tenantId}/audit/counts",
    tag = "admin",
    operation_id = "auditCounts",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
        CountParams,
    ),
    responses(
        (status = 200, description = "Every bucket from `since` to `until`, oldest first.", body = AuditCountsResponse),
    ),
)]
pub(crate) async fn counts(
    State(st): State<AppState>,
    admin: Admin<VIEWER>,
    Path(t): Path<String>,
    Params(p): Params<CountParams>,
) -> ApiResult<Json<AuditCountsResponse>> {
    let width = p.bucket.unwrap_or(60);
    if width == 0 {
        return Err(ApiError::invalid_request("bucket must be positive"));
    }
    let w = i64::from(width);
    let until = p.until.unwrap_or_else(|| st.engine.now() + 1);
    let since = p.since.unwrap_or(until.saturating_sub(24 * w));
    // Unix seconds from 1970 to the year 5138: no arithmetic below can overflow.
    const LATEST: i64 = 100_000_000_000;
    if !(0..=LATEST).contains(&since) || !(0..=LATEST).contains(&until) {
        return Err(ApiError::invalid_request(
            "since and until must be Unix seconds between 0 and 100000000000",
        ));
    }
    // Each count reads the tenant's events of the range: keep one call's work bounded.
    if until - since > MAX_RANGE {
        return Err(ApiError::invalid_request(
            "at most 31 days from since to until",
        ));
    }
    let counts = st
        .engine
        .count_audit(&admin.tenant(&t)?, since, until, width)
        .await
        .map_err(admin_err)?;
    Ok(Json(AuditCountsResponse {
        bucket: width,
        buckets: chart(&counts, since, until, w),
    }))
}

/// Every bucket of `[since, until)`, zero-filled, with the store's counts folded into the
/// chart's series.
fn chart(counts: &[AuditCount], since: UnixTime, until: UnixTime, w: i64) -> Vec<AuditBucket> {
    let first = since.div_euclid(w) * w;
    let last = (until - 1).div_euclid(w) * w;
    let n = usize::try_from((last - first) / w + 1).unwrap_or(0);
    let mut buckets: Vec<AuditBucket> = (0..n)
        .map(|i| AuditBucket {
            at: first + w * i as i64,
            ..AuditBucket::default()
        })
        .collect();
    for c in counts {
        let Some(b) = usize::try_from((c.bucket - first) / w)
            .ok()
            .and_then(|i| buckets.get_mut(i))
        else {
            continue;
        };
        let series = match c.kind {
            AuditKind::LoginSucceeded => &mut b.logins,
            AuditKind::LoginFailed
                if matches!(c.reason.as_deref(), Some("rate_limited" | "backoff")) =>
            {
                &mut b.rate_limited
            }
            AuditKind::LoginFailed => &mut b.failures,
            AuditKind::SessionRefreshed => &mut b.refreshes,
            AuditKind::RefreshTokenReused => &mut b.reuse_detections,
            AuditKind::SessionRevoked => &mut b.revocations,
            AuditKind::SuspiciousActivity => &mut b.alerts,
            _ => continue,
        };
        *series += c.count;
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_every_bucket_and_folds_the_series() {
        let c = |bucket, kind, reason: Option<&str>, count| AuditCount {
            bucket,
            kind,
            reason: reason.map(str::to_owned),
            count,
        };
        let counts = [
            c(120, AuditKind::LoginFailed, Some("invalid_credentials"), 3),
            c(120, AuditKind::LoginFailed, Some("rate_limited"), 2),
            c(120, AuditKind::LoginFailed, Some("backoff"), 1),
            c(240, AuditKind::LoginSucceeded, None, 5),
            c(240, AuditKind::SessionCreated, None, 5),
        ];
        let b = chart(&counts, 100, 250, 60);
        assert_eq!(
            b.iter().map(|b| b.at).collect::<Vec<_>>(),
            [60, 120, 180, 240]
        );
        assert_eq!((b[1].failures, b[1].rate_limited), (3, 3));
        assert_eq!(b[3].logins, 5);
        assert_eq!(b[0].logins + b[2].logins, 0);
        assert_eq!(chart(&[], 120, 180, 60).len(), 1, "until is exclusive");
    }
}
