//! Login, refresh and logout (DESIGN §5).

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, Ctx, bearer_token};
use crate::wire::{LoginRequest, RefreshRequest, RevokedResponse, TokenResponse};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use sessiond_store::DeviceInfo;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v2/auth/login", post(login))
        .route("/api/v2/auth/refresh", post(refresh))
        .route("/api/v2/auth/logout", post(logout))
        .route("/api/v2/auth/logout-all", post(logout_all))
}

async fn login(
    State(st): State<AppState>,
    c: Ctx,
    Body(req): Body<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    if req.username.len() > 256 || req.password.len() > 1024 {
        return Err(ApiError::invalid_request("username or password too long"));
    }
    let label = req
        .device
        .and_then(|d| d.label)
        .map(|l| l.chars().take(128).collect());
    let device = DeviceInfo {
        user_agent: c.device_user_agent(),
        ip: c.ctx.ip.clone(),
        label,
    };
    let issued = st
        .engine
        .login(&c.ctx, &c.tenant, &req.username, &req.password, device)
        .await?;
    Ok(Json(issued.into()))
}

async fn refresh(
    State(st): State<AppState>,
    c: Ctx,
    Body(req): Body<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let issued = st
        .engine
        .refresh(&c.ctx, &c.tenant, &req.refresh_token)
        .await?;
    Ok(Json(issued.into()))
}

/// Accepts `Authorization: Bearer` or the FinHub seed's `X-User-Session-Token`.
async fn logout(State(st): State<AppState>, c: Ctx, headers: HeaderMap) -> ApiResult<StatusCode> {
    let token = bearer_token(&headers, true)?;
    st.engine.logout(&c.ctx, token).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn logout_all(State(st): State<AppState>, a: Auth) -> ApiResult<Json<RevokedResponse>> {
    let revoked = st.engine.logout_all(&a.ctx, &a.auth).await?;
    Ok(Json(RevokedResponse { revoked }))
}
