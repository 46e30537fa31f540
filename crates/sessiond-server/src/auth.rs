//! Login, refresh and logout (DESIGN §5).

use crate::AppState;
use crate::cookies;
use crate::docs;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, Ctx, session_token};
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use sessiond_proto::{
    LoginRequest, Mode, Problem, ReauthenticateRequest, RefreshRequest, RevokedResponse,
    TokenResponse,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v2/auth/login", post(login))
        .route("/api/v2/auth/refresh", post(refresh))
        .route("/api/v2/auth/logout", post(logout))
        .route("/api/v2/auth/logout-all", post(logout_all))
        .route("/api/v2/auth/reauthenticate", post(reauthenticate))
}

/// Log in with a username and password.
///
/// Authenticates the user, creates a session on a new device and returns a TokenResponse. An
/// unknown user and a wrong password are indistinguishable (same code, same timing). With
/// `"mode": "cookie"` the tokens go into `__Host-` cookies instead of the body.
#[utoipa::path(
    post,
    path = "/api/v2/auth/login",
    tag = "end-user",
    operation_id = "login",
    params(docs::TenantHeader),
    request_body = LoginRequest,
    responses(
        (status = 200, description = docs::D_TOKEN_RESPONSE, body = TokenResponse,
            headers(("Set-Cookie" = String, description = "Cookie mode only: `__Host-sessiond-session`, \
                `__Host-sessiond-refresh` (when refresh tokens are issued) and \
                `__Host-sessiond-csrf`, each `Secure; SameSite=Strict; Path=/` (the first two \
                `HttpOnly`)."))),
        (status = 400, description = docs::D_400_CTX, body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials`: unknown user or wrong password.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`account_disabled`; or `forbidden`: the user is at the \
            tenant's session limit with `onLimit: reject`, or the tenant accepts HTTPS only.",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = docs::D_413, body = Problem,
            content_type = "application/problem+json"),
        (status = 415, description = docs::D_415, body = Problem,
            content_type = "application/problem+json"),
        (status = 429, description = docs::D_429, body = Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
    ),
)]
async fn login(
    State(st): State<AppState>,
    c: Ctx,
    Body(req): Body<LoginRequest>,
) -> ApiResult<Response> {
    if req.username.len() > 256 || req.password.len() > 1024 {
        return Err(ApiError::invalid_request("username or password too long"));
    }
    let device = c.device(req.device);
    let login = async {
        Ok(st
            .engine
            .login(&c.ctx, &c.tenant, &req.username, &req.password, device)
            .await?)
    };
    let issued = st
        .limiters
        .auth(c.ctx.ip.as_deref(), st.engine.now(), login)
        .await?;
    cookies::reply(&st.engine, issued, req.mode == Mode::Cookie)
}

/// Rotate a refresh token.
///
/// The presented refresh token dies and a new pair is returned. A repeat of the just-rotated
/// token within the tenant's grace window returns the same successor again; any other reuse
/// revokes the session (`refresh_token_reused`). The refresh token comes from the body, or in
/// cookie mode from the refresh cookie (then the session cookie and the session's
/// `X-CSRF-Token` are required, the refresh token must belong to that session, and the new
/// tokens go back into cookies).
#[utoipa::path(
    post,
    path = "/api/v2/auth/refresh",
    tag = "end-user",
    operation_id = "refresh",
    params(docs::TenantHeader, docs::CsrfHeader),
    request_body = RefreshRequest,
    security((), ("refreshCookie" = [])),
    responses(
        (status = 200, description = docs::D_TOKEN_RESPONSE, body = TokenResponse,
            headers(("Set-Cookie" = String, description = "Cookie mode only: `__Host-sessiond-session`, \
                `__Host-sessiond-refresh` (when refresh tokens are issued) and \
                `__Host-sessiond-csrf`, each `Secure; SameSite=Strict; Path=/` (the first two \
                `HttpOnly`)."))),
        (status = 400, description = "As for every end-user request (`missing_header`, \
            `invalid_header`, `unknown_tenant`, `invalid_request`: no refresh token in the body \
            or cookie), or `refresh_not_enabled`: the tenant's profile issues no refresh tokens.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`refresh_token_invalid` (unknown, expired or another \
            tenant's), `refresh_token_reused` (the session is now revoked), `session_revoked`, \
            `session_displaced` or `session_expired`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_CTX, body = Problem,
            content_type = "application/problem+json"),
        (status = 413, description = docs::D_413, body = Problem,
            content_type = "application/problem+json"),
        (status = 415, description = docs::D_415, body = Problem,
            content_type = "application/problem+json"),
        (status = 429, description = docs::D_429, body = Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
    ),
)]
async fn refresh(
    State(st): State<AppState>,
    c: Ctx,
    parts: Parts,
    Body(req): Body<RefreshRequest>,
) -> ApiResult<Response> {
    let rotate = async {
        let (token, bound) = match req.refresh_token {
            Some(t) => (t, None),
            None => match cookies::get(&parts.headers, cookies::REFRESH_COOKIE) {
                Some(t) => {
                    let sid = cookies::refresh_session(&parts)?;
                    cookies::check_csrf(&parts, &st, &sid)?;
                    let owner = st.engine.refresh_token_session(&t).await?;
                    cookies::refresh_bound(owner.as_ref(), &sid)?;
                    (t, Some(sid))
                }
                None => return Err(ApiError::invalid_request("refreshToken is required")),
            },
        };
        let issued = st.engine.refresh(&c.ctx, &c.tenant, &token).await?;
        Ok((issued, bound))
    };
    let (issued, bound) = st
        .limiters
        .auth(c.ctx.ip.as_deref(), st.engine.now(), rotate)
        .await?;
    cookies::reply(&st.engine, issued, bound.is_some())
}

/// Log out: revoke this session.
///
/// Accepts `Authorization: Bearer`, the FinHub seed's `X-User-Session-Token`, or the session
/// cookie (then `X-CSRF-Token` is required and the cookies are expired). Idempotent; the
/// session's own expired token is accepted.
#[utoipa::path(
    post,
    path = "/api/v2/auth/logout",
    tag = "end-user",
    operation_id = "logout",
    params(docs::TenantHeader, docs::OptionalSessionTokenHeader, docs::CsrfHeader),
    security(("sessionToken" = []), ("sessionCookie" = []), ()),
    responses(
        (status = 204, description = "The session is revoked (or already was).",
            headers(("Set-Cookie" = String, description = "Cookie mode: the three cookies, \
                expired."))),
        (status = 400, description = docs::D_400_CTX, body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "`missing_header` (no session token), `invalid_header` \
            (`Authorization` is not `Bearer <token>`), `token_invalid` or `tenant_mismatch`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_CTX, body = Problem,
            content_type = "application/problem+json"),
    ),
)]
async fn logout(State(st): State<AppState>, c: Ctx, parts: Parts) -> ApiResult<Response> {
    let (token, via_cookie) = session_token(&parts, &st, true).await?;
    st.engine.logout(&c.ctx, &token).await?;
    Ok(if via_cookie {
        cookies::cleared(StatusCode::NO_CONTENT)
    } else {
        StatusCode::NO_CONTENT.into_response()
    })
}

/// Log out everywhere: revoke every session of this user in this tenant.
///
/// With the tenant's `reauthMaxAge`, the token's `auth_time` must be that recent.
#[utoipa::path(
    post,
    path = "/api/v2/auth/logout-all",
    tag = "end-user",
    operation_id = "logoutAll",
    params(docs::TenantHeader, docs::CsrfHeader),
    security(("sessionToken" = []), ("sessionCookie" = [])),
    responses(
        (status = 200, description = "How many sessions were revoked.", body = RevokedResponse),
        (status = 400, description = docs::D_400_CTX, body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_TOKEN_RECENT, body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_CTX, body = Problem,
            content_type = "application/problem+json"),
    ),
)]
async fn logout_all(State(st): State<AppState>, a: Auth) -> ApiResult<Json<RevokedResponse>> {
    let revoked = st.engine.logout_all(&a.ctx, &a.auth).await?;
    Ok(Json(RevokedResponse { revoked }))
}

/// Re-authenticate the current session (step-up).
///
/// The user proves who they are again — the password for a session created with one, a fresh
/// SSO token of the same partner user for an SSO session — and gets a new session token for
/// the same session whose `auth_time` is now (no new session, no new refresh token: later
/// refreshes keep the new `auth_time`). A tenant's `reauthMaxAge` makes logout-all and
/// revoking other sessions require a token whose `auth_time` is that recent. A wrong password
/// counts towards the account's login backoff. In cookie mode the new token goes into the
/// session cookie.
#[utoipa::path(
    post,
    path = "/api/v2/auth/reauthenticate",
    tag = "end-user",
    operation_id = "reauthenticate",
    params(docs::TenantHeader, docs::CsrfHeader),
    request_body = ReauthenticateRequest,
    security(("sessionToken" = []), ("sessionCookie" = [])),
    responses(
        (status = 200, description = "A new session token for the same session (no \
            `refreshToken`).", body = TokenResponse,
            headers(("Set-Cookie" = String, description = "Cookie mode only: \
                `__Host-sessiond-session` and `__Host-sessiond-csrf`."))),
        (status = 400, description = "As for every end-user request, or `invalid_request`: \
            not exactly one of `password` and `ssoToken`, or not the kind of proof the session \
            was created with.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials` (wrong password), \
            `sso_token_invalid` (invalid, already used, or of another partner user), or as for \
            every authenticated request (`token_invalid`, `token_expired`, `session_revoked`, \
            `session_displaced`, `session_expired`).",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`account_disabled`, or as for every end-user request.",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = docs::D_413, body = Problem,
            content_type = "application/problem+json"),
        (status = 415, description = docs::D_415, body = Problem,
            content_type = "application/problem+json"),
        (status = 429, description = docs::D_429, body = Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
        (status = 503, description = docs::D_503_SSO, body = Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
    ),
)]
async fn reauthenticate(
    State(st): State<AppState>,
    a: Auth,
    Body(req): Body<ReauthenticateRequest>,
) -> ApiResult<Response> {
    let proof = match (&req.password, &req.sso_token) {
        (Some(p), None) if p.len() <= 1024 => sessiond_core::engine::Proof::Password(p),
        (None, Some(t)) if t.len() <= 16 * 1024 => sessiond_core::engine::Proof::Sso(t),
        (Some(_), None) | (None, Some(_)) => {
            return Err(ApiError::invalid_request("password or ssoToken too long"));
        }
        _ => {
            return Err(ApiError::invalid_request(
                "exactly one of password and ssoToken is required",
            ));
        }
    };
    let run = async {
        Ok(st
            .engine
            .reauthenticate(&a.ctx, &a.tenant, &a.auth, proof)
            .await?)
    };
    let issued = st
        .limiters
        .auth(a.ctx.ip.as_deref(), st.engine.now(), run)
        .await?;
    // The refresh cookie this session may still hold lives at most to its absolute expiry.
    let keep = if a.tenant.policy.refresh_tokens {
        issued.session.absolute_expires_at - st.engine.now()
    } else {
        0
    };
    cookies::reply_keeping(&st.engine, issued, a.via_cookie, keep)
}
