//! The signed-in user's own sessions: whoami, list, revoke (DESIGN §5).

use crate::AppState;
use crate::docs;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Params, Path};
use crate::wire::session_view;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use sessiond_proto::ids;
use sessiond_proto::{Problem, RevokedResponse, SessionsResponse, WhoamiResponse};
use sessiond_store::SessionId;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v2/session", get(whoami))
        .route("/api/v2/sessions", get(list).delete(revoke_others))
        .route("/api/v2/sessions/{session_id}", delete(revoke_one))
}

/// Who am I: validate the token and its session.
///
/// Returns the session and what the token says. Counts as activity for the idle timeout.
#[utoipa::path(
    get,
    path = "/api/v2/session",
    tag = "end-user",
    operation_id = "whoami",
    params(docs::TenantHeader),
    security(("sessionToken" = []), ("sessionCookie" = [])),
    responses(
        (status = 200, description = "The current session.", body = WhoamiResponse),
        (status = 400, description = docs::D_400_CTX, body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_TOKEN, body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_CTX, body = Problem,
            content_type = "application/problem+json"),
    ),
)]
async fn whoami(State(st): State<AppState>, a: Auth) -> Json<WhoamiResponse> {
    let now = st.engine.now();
    Json(WhoamiResponse {
        scope: a.auth.claims.scope.clone(),
        token_expires_at: a.auth.claims.exp,
        session: session_view(&a.auth.session, now, None),
    })
}

/// The user's active sessions (devices), the current one flagged.
#[utoipa::path(
    get,
    path = "/api/v2/sessions",
    tag = "end-user",
    operation_id = "listSessions",
    params(docs::TenantHeader),
    security(("sessionToken" = []), ("sessionCookie" = [])),
    responses(
        (status = 200, description = "The user's active sessions in this tenant.",
            body = SessionsResponse),
        (status = 400, description = docs::D_400_CTX, body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_TOKEN, body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_CTX, body = Problem,
            content_type = "application/problem+json"),
    ),
)]
async fn list(State(st): State<AppState>, a: Auth) -> ApiResult<Json<SessionsResponse>> {
    let now = st.engine.now();
    let current = a.auth.session.id.clone();
    let sessions = st.engine.user_sessions(&a.auth).await?;
    Ok(Json(SessionsResponse {
        sessions: sessions
            .into_iter()
            .map(|s| session_view(&s, now, Some(&current)))
            .collect(),
        next_cursor: None,
    }))
}

/// Revoke one of the user's own sessions.
#[utoipa::path(
    delete,
    path = "/api/v2/sessions/{sessionId}",
    tag = "end-user",
    operation_id = "revokeSession",
    params(
        ("sessionId" = ids::SessionId, Path, description = "The session to revoke."),
        docs::TenantHeader,
        docs::CsrfHeader,
    ),
    security(("sessionToken" = []), ("sessionCookie" = [])),
    responses(
        (status = 204, description = "The session is revoked."),
        (status = 400, description = docs::D_400_CTX, body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_TOKEN_RECENT, body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_CTX, body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such session of this user.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn revoke_one(
    State(st): State<AppState>,
    a: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = SessionId::parse(&id).map_err(|_| ApiError::not_found("session"))?;
    st.engine.revoke_own(&a.ctx, &a.auth, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ScopeQuery {
    /// Must be `others`.
    #[param(value_type = String, required = true, pattern = "^others$")]
    scope: Option<String>,
}

/// Revoke all the user's sessions but this one (`?scope=others`).
#[utoipa::path(
    delete,
    path = "/api/v2/sessions",
    tag = "end-user",
    operation_id = "revokeOtherSessions",
    params(ScopeQuery, docs::TenantHeader, docs::CsrfHeader),
    security(("sessionToken" = []), ("sessionCookie" = [])),
    responses(
        (status = 200, description = "How many sessions were revoked.", body = RevokedResponse),
        (status = 400, description = "As for every end-user request, or `invalid_request`: \
            `scope` is not `others`.", body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_TOKEN_RECENT, body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_CTX, body = Problem,
            content_type = "application/problem+json"),
    ),
)]
async fn revoke_others(
    State(st): State<AppState>,
    a: Auth,
    Params(q): Params<ScopeQuery>,
) -> ApiResult<Json<RevokedResponse>> {
    if q.scope.as_deref() != Some("others") {
        return Err(ApiError::invalid_request(
            "DELETE /api/v2/sessions needs ?scope=others",
        ));
    }
    let revoked = st.engine.revoke_others(&a.ctx, &a.auth).await?;
    Ok(Json(RevokedResponse { revoked }))
}
