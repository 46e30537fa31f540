//! A tenant's sessions: list and search a page at a time, revoke one.

use super::{Admin, OPERATOR, VIEWER, admin_err, decode_cursor, next_cursor, page_size};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Params, Path};
use crate::schemas;
use crate::wire::session_view;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sessiond_proto::{Problem, SessionsResponse, ids};
use sessiond_store::{SessionCursor, SessionId, SessionQuery, StateFilter, UnixTime, UserId};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/tenants/{tenant}/sessions", get(find_sessions))
        .route(
            "/admin/v1/tenants/{tenant}/sessions/{session}",
            delete(revoke_session),
        )
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SessionParams {
    /// Only this user's sessions.
    #[param(value_type = Option<uuid::Uuid>, nullable = false)]
    user_id: Option<UserId>,
    /// Only sessions in this state (timeouts included).
    #[param(value_type = Option<schemas::StateFilter>, nullable = false)]
    state: Option<StateFilter>,
    /// The `nextCursor` of the previous page.
    #[param(nullable = false)]
    cursor: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[param(nullable = false, minimum = 1)]
    limit: Option<usize>,
}

/// Where a page of sessions ended (the cursor's content).
#[derive(Serialize, Deserialize)]
struct At {
    c: UnixTime,
    s: String,
}

/// Search a tenant's sessions, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{tenantId}/sessions",
    tag = "admin",
    operation_id = "findSessions",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
        SessionParams,
    ),
    responses(
        (status = 200, description = "A page of the matching sessions (`nextCursor` when there may be more).", body = SessionsResponse),
    ),
)]
pub(crate) async fn find_sessions(
    State(st): State<AppState>,
    admin: Admin<VIEWER>,
    Path(t): Path<String>,
    Params(p): Params<SessionParams>,
) -> ApiResult<Json<SessionsResponse>> {
    let limit = page_size(p.limit);
    let before = decode_cursor::<At>(p.cursor.as_deref())?
        .map(|at| {
            SessionId::parse(&at.s)
                .map(|id| SessionCursor {
                    created_at: at.c,
                    id,
                })
                .map_err(|_| ApiError::invalid_request("malformed cursor"))
        })
        .transpose()?;
    let q = SessionQuery {
        user_id: p.user_id,
        state: p.state,
        before,
        limit,
    };
    let now = st.engine.now();
    let sessions = st
        .engine
        .find_sessions(&admin.tenant(&t)?, &q)
        .await
        .map_err(admin_err)?;
    let next = next_cursor(&sessions, limit, |s| At {
        c: s.created_at,
        s: s.id.to_string(),
    });
    Ok(Json(SessionsResponse {
        sessions: sessions
            .into_iter()
            .map(|s| session_view(&s, now, None))
            .collect(),
        next_cursor: next,
    }))
}

/// Revoke a session (reason `admin`).
#[utoipa::path(
    delete,
    path = "/admin/v1/tenants/{tenantId}/sessions/{sessionId}",
    tag = "admin",
    operation_id = "adminRevokeSession",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
        ("sessionId" = ids::SessionId, Path, description = "The session."),
    ),
    responses(
        (status = 204, description = "The session is revoked (or already was)."),
        (status = 404, description = "`not_found`: no such tenant or session.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn revoke_session(
    State(st): State<AppState>,
    admin: Admin<OPERATOR>,
    Path((t, s)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let t = admin.tenant(&t)?;
    let sid = SessionId::parse(&s).map_err(|_| ApiError::not_found("session"))?;
    if st
        .engine
        .get_session(&t, &sid)
        .await
        .map_err(admin_err)?
        .is_none()
    {
        return Err(ApiError::not_found("session"));
    }
    st.engine
        .revoke(&admin.ctx(&t), &sid, sessiond_store::RevokeReason::Admin)
        .await
        .map_err(admin_err)?;
    Ok(StatusCode::NO_CONTENT)
}
