//! A tenant's users: create, look up, list and search, password, disable, revoke all of a
//! user's sessions.

use super::{Admin, OPERATOR, VIEWER, admin_err, decode_cursor, next_cursor, page_size};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Params, Path};
use crate::wire::{CreateUserRequest, PasswordRequest, UserLookup, UserResponse, UsersPage};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sessiond_proto::{Problem, RevokedResponse, ids};
use sessiond_store::{RevokeReason, TenantId, User, UserId, UserQuery};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/v1/tenants/{tenant}/users",
            post(create_user).get(find_users),
        )
        .route("/admin/v1/tenants/{tenant}/users/{user}", get(get_user))
        .route(
            "/admin/v1/tenants/{tenant}/users/{user}/password",
            post(set_password),
        )
        .route(
            "/admin/v1/tenants/{tenant}/users/{user}/disable",
            post(disable_user),
        )
        .route(
            "/admin/v1/tenants/{tenant}/users/{user}/sessions",
            delete(revoke_user_sessions),
        )
}

/// Create a user with a password.
#[utoipa::path(
    post,
    path = "/admin/v1/tenants/{tenantId}/users",
    tag = "admin",
    operation_id = "createUser",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
    ),
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "The user.", body = UserResponse),
        (status = 409, description = "`invalid_request`: the username or customer id is taken.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn create_user(
    State(st): State<AppState>,
    admin: Admin<OPERATOR>,
    Path(t): Path<String>,
    Body(req): Body<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<UserResponse>)> {
    let t = admin.tenant(&t)?;
    if t == TenantId::operators() {
        return Err(ApiError::invalid_request(
            "operators are created with POST /admin/v1/operators (they need a role)",
        ));
    }
    let user = st
        .engine
        .create_user(
            &t,
            req.username,
            req.password,
            req.customer_id,
            req.external_id,
        )
        .await
        .map_err(admin_err)?;
    admin.acting_on_user(user.id);
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// With `username` or `externalId`: that user. Otherwise a page of users, by user id,
/// narrowed by `search`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UserParams {
    /// Look up the user with this username (exact).
    #[param(nullable = false)]
    username: Option<String>,
    /// Look up the user with this partner id (the SSO token's `sub`; exact).
    #[param(nullable = false)]
    external_id: Option<String>,
    /// List: only users whose username, external id or customer id contains this (ASCII
    /// case-insensitive).
    #[param(nullable = false, max_length = 256)]
    search: Option<String>,
    /// List: the `nextCursor` of the previous page.
    #[param(nullable = false)]
    cursor: Option<String>,
    /// List: at most this many (default 100, at most 1000).
    #[param(nullable = false, minimum = 1)]
    limit: Option<usize>,
}

/// Look a user up by username or external id (the way to learn a user's id), or list and
/// search a tenant's users a page at a time.
#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{tenantId}/users",
    tag = "admin",
    operation_id = "findUser",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
        UserParams,
    ),
    responses(
        (status = 200, description = "The user (a lookup), or a page of users (a listing).", body = UserLookup),
        (status = 404, description = "`not_found`: no such tenant, or (a lookup) no such user.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn find_users(
    State(st): State<AppState>,
    admin: Admin<VIEWER>,
    Path(t): Path<String>,
    Params(p): Params<UserParams>,
) -> ApiResult<Json<UserLookup>> {
    let t = admin.tenant(&t)?;
    let lookup = match (p.username, p.external_id) {
        (Some(u), None) => st.engine.find_user(&t, &u).await,
        (None, Some(e)) => st.engine.find_user_by_external_id(&t, &e).await,
        (None, None) => {
            let limit = page_size(p.limit);
            let search = super::search(p.search)?;
            let q = UserQuery {
                search,
                after: decode_cursor(p.cursor.as_deref())?,
                limit,
            };
            let users = st.engine.list_users(&t, &q).await.map_err(admin_err)?;
            let next = next_cursor(&users, limit, |u| u.id);
            return Ok(Json(UserLookup::Page(UsersPage {
                users: users.into_iter().map(Into::into).collect(),
                next_cursor: next,
            })));
        }
        _ => {
            return Err(ApiError::invalid_request(
                "give at most one of username and externalId",
            ));
        }
    }
    .map_err(admin_err)?;
    Ok(Json(UserLookup::One(
        lookup.ok_or_else(|| ApiError::not_found("user"))?.into(),
    )))
}

/// A user, by id.
#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{tenantId}/users/{userId}",
    tag = "admin",
    operation_id = "getUser",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
        ("userId" = uuid::Uuid, Path, description = "The user (`userId`)."),
    ),
    responses(
        (status = 200, description = "The user.", body = UserResponse),
        (status = 404, description = "`not_found`: no such tenant or user.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn get_user(
    State(st): State<AppState>,
    admin: Admin<VIEWER>,
    Path((t, u)): Path<(String, String)>,
) -> ApiResult<Json<UserResponse>> {
    let (t, u) = (admin.tenant(&t)?, admin.user(&u)?);
    Ok(Json(existing_user(&st, &t, &u).await?.into()))
}

/// The user `u` of tenant `t`: 404 `not_found` for an unknown tenant or user.
async fn existing_user(st: &AppState, t: &TenantId, u: &UserId) -> ApiResult<User> {
    st.engine.tenant(t).await.map_err(admin_err)?;
    st.engine
        .get_user(t, u)
        .await
        .map_err(admin_err)?
        .ok_or_else(|| ApiError::not_found("user"))
}

/// Set a user's password; revokes the user's sessions (reason `password_changed`).
#[utoipa::path(
    post,
    path = "/admin/v1/tenants/{tenantId}/users/{userId}/password",
    tag = "admin",
    operation_id = "setPassword",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
        ("userId" = uuid::Uuid, Path, description = "The user (`userId`)."),
    ),
    request_body = PasswordRequest,
    responses(
        (status = 204, description = "Done."),
        (status = 404, description = "`not_found`: no such tenant or user.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn set_password(
    State(st): State<AppState>,
    admin: Admin<OPERATOR>,
    Path((t, u)): Path<(String, String)>,
    Body(req): Body<PasswordRequest>,
) -> ApiResult<StatusCode> {
    let (t, u) = (admin.tenant(&t)?, admin.user(&u)?);
    st.engine
        .set_password(&admin.ctx(&t), &u, req.password, None)
        .await
        .map_err(admin_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disable a user; revokes all the user's sessions (reason `admin`).
#[utoipa::path(
    post,
    path = "/admin/v1/tenants/{tenantId}/users/{userId}/disable",
    tag = "admin",
    operation_id = "disableUser",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
        ("userId" = uuid::Uuid, Path, description = "The user (`userId`)."),
    ),
    responses(
        (status = 204, description = "Done."),
        (status = 404, description = "`not_found`: no such tenant or user.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn disable_user(
    State(st): State<AppState>,
    admin: Admin<OPERATOR>,
    Path((t, u)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (t, u) = (admin.tenant(&t)?, admin.user(&u)?);
    st.engine
        .disable_user(&admin.ctx(&t), &u)
        .await
        .map_err(admin_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke all of a user's active sessions (reason `admin`); the user may log in again.
#[utoipa::path(
    delete,
    path = "/admin/v1/tenants/{tenantId}/users/{userId}/sessions",
    tag = "admin",
    operation_id = "revokeUserSessions",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
        ("userId" = uuid::Uuid, Path, description = "The user (`userId`)."),
    ),
    responses(
        (status = 200, description = "How many sessions were revoked.", body = RevokedResponse),
        (status = 404, description = "`not_found`: no such tenant or user.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn revoke_user_sessions(
    State(st): State<AppState>,
    admin: Admin<OPERATOR>,
    Path((t, u)): Path<(String, String)>,
) -> ApiResult<Json<RevokedResponse>> {
    let (t, u) = (admin.tenant(&t)?, admin.user(&u)?);
    existing_user(&st, &t, &u).await?;
    let revoked = st
        .engine
        .revoke_user(&admin.ctx(&t), &u, RevokeReason::Admin, None)
        .await
        .map_err(admin_err)?;
    Ok(Json(RevokedResponse { revoked }))
}
