//! The signed-in user's own sessions: whoami, list, revoke (DESIGN §5).

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Params, Path};
use crate::wire::{RevokedResponse, SessionView, SessionsResponse, WhoamiResponse};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use sessiond_store::SessionId;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v2/session", get(whoami))
        .route("/api/v2/sessions", get(list).delete(revoke_others))
        .route("/api/v2/sessions/{session_id}", delete(revoke_one))
}

async fn whoami(State(st): State<AppState>, a: Auth) -> Json<WhoamiResponse> {
    let now = st.engine.now();
    Json(WhoamiResponse {
        scope: a.auth.claims.scope.clone(),
        token_expires_at: a.auth.claims.exp,
        session: SessionView::new(a.auth.session, now, None),
    })
}

async fn list(State(st): State<AppState>, a: Auth) -> ApiResult<Json<SessionsResponse>> {
    let now = st.engine.now();
    let current = a.auth.session.id.clone();
    let sessions = st.engine.user_sessions(&a.auth).await?;
    Ok(Json(SessionsResponse {
        sessions: sessions
            .into_iter()
            .map(|s| SessionView::new(s, now, Some(&current)))
            .collect(),
    }))
}

async fn revoke_one(
    State(st): State<AppState>,
    a: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = SessionId::parse(&id).map_err(|_| ApiError::not_found("session"))?;
    st.engine.revoke_own(&a.ctx, &a.auth, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ScopeQuery {
    scope: Option<String>,
}

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
