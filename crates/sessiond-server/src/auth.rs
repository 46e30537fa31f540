//! Login, refresh and logout (DESIGN §5).

use crate::AppState;
use crate::cookies;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, Ctx, session_token};
use crate::wire::{LoginRequest, Mode, RefreshRequest, RevokedResponse};
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

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
) -> ApiResult<Response> {
    st.limiters.auth(c.ctx.ip.as_deref())?;
    if req.username.len() > 256 || req.password.len() > 1024 {
        return Err(ApiError::invalid_request("username or password too long"));
    }
    let device = c.device(req.device);
    let issued = st
        .engine
        .login(&c.ctx, &c.tenant, &req.username, &req.password, device)
        .await?;
    cookies::token_reply(issued, req.mode == Mode::Cookie)
}

/// The refresh token comes from the body, or in cookie mode from the refresh cookie (then the
/// CSRF check applies and the new tokens go back into cookies).
async fn refresh(
    State(st): State<AppState>,
    c: Ctx,
    parts: Parts,
    Body(req): Body<RefreshRequest>,
) -> ApiResult<Response> {
    st.limiters.auth(c.ctx.ip.as_deref())?;
    let (token, via_cookie) = match req.refresh_token {
        Some(t) => (t, false),
        None => match cookies::get(&parts.headers, cookies::REFRESH_COOKIE) {
            Some(t) => {
                cookies::check_csrf(&parts, &st)?;
                (t, true)
            }
            None => return Err(ApiError::invalid_request("refreshToken is required")),
        },
    };
    let issued = st.engine.refresh(&c.ctx, &c.tenant, &token).await?;
    cookies::token_reply(issued, via_cookie)
}

/// Accepts `Authorization: Bearer`, the FinHub seed's `X-User-Session-Token`, or the session
/// cookie (then it also expires the cookies).
async fn logout(State(st): State<AppState>, c: Ctx, parts: Parts) -> ApiResult<Response> {
    let (token, via_cookie) = session_token(&parts, &st, true)?;
    st.engine.logout(&c.ctx, &token).await?;
    Ok(if via_cookie {
        cookies::cleared(StatusCode::NO_CONTENT)
    } else {
        StatusCode::NO_CONTENT.into_response()
    })
}

async fn logout_all(State(st): State<AppState>, a: Auth) -> ApiResult<Json<RevokedResponse>> {
    let revoked = st.engine.logout_all(&a.ctx, &a.auth).await?;
    Ok(Json(RevokedResponse { revoked }))
}
