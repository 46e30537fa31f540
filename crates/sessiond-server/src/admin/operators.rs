//! Named operators (admins only) and who is calling (`/admin/v1/me`).

use super::{ADMIN, Admin, VIEWER, admin_err, decode_cursor, next_cursor, page_size};
use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Body, Params, Path};
use crate::wire::{
    CreateOperatorRequest, MeResponse, OperatorResponse, OperatorsPage, RoleRequest,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use sessiond_proto::Problem;
use sessiond_store::{TenantId, UserQuery};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/me", get(me))
        .route(
            "/admin/v1/operators",
            get(list_operators).post(create_operator),
        )
        .route("/admin/v1/operators/{user}/role", put(set_role))
        .route("/admin/v1/operators/{user}/disable", post(disable_operator))
}

/// Who is calling: the admin token, or the signed-in operator and their role.
#[utoipa::path(
    get,
    path = "/admin/v1/me",
    tag = "admin",
    operation_id = "me",
    responses(
        (status = 200, description = "The caller.", body = MeResponse),
    ),
)]
pub(crate) async fn me(admin: Admin<VIEWER>) -> Json<MeResponse> {
    let (username, user_id, session_id) = match &admin.actor.operator {
        Some((u, sid)) => (u.username.clone(), Some(u.id), Some(sid.clone())),
        None => (None, None, None),
    };
    Json(MeResponse {
        actor: admin.actor.name.clone(),
        role: admin.actor.role,
        username,
        user_id,
        session_id,
    })
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct OperatorParams {
    /// Only operators whose username (or, as for users, external or customer id) contains this
    /// (ASCII case-insensitive).
    #[param(nullable = false, max_length = 256)]
    search: Option<String>,
    /// The `nextCursor` of the previous page.
    #[param(nullable = false)]
    cursor: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[param(nullable = false, minimum = 1)]
    limit: Option<usize>,
}

/// The operators, by user id, a page at a time.
#[utoipa::path(
    get,
    path = "/admin/v1/operators",
    tag = "admin",
    operation_id = "listOperators",
    params(OperatorParams),
    responses(
        (status = 200, description = "A page of operators.", body = OperatorsPage),
    ),
)]
pub(crate) async fn list_operators(
    State(st): State<AppState>,
    _: Admin<ADMIN>,
    Params(p): Params<OperatorParams>,
) -> ApiResult<Json<OperatorsPage>> {
    let limit = page_size(p.limit);
    let q = UserQuery {
        search: super::search(p.search)?,
        after: decode_cursor(p.cursor.as_deref())?,
        limit,
    };
    st.engine
        .ensure_operators_tenant()
        .await
        .map_err(admin_err)?;
    let users = st
        .engine
        .list_users(&TenantId::operators(), &q)
        .await
        .map_err(admin_err)?;
    let next = next_cursor(&users, limit, |u| u.id);
    Ok(Json(OperatorsPage {
        operators: users.into_iter().map(Into::into).collect(),
        next_cursor: next,
    }))
}

/// Create a named operator; they sign in to the console at `/console`.
#[utoipa::path(
    post,
    path = "/admin/v1/operators",
    tag = "admin",
    operation_id = "createOperator",
    request_body = CreateOperatorRequest,
    responses(
        (status = 201, description = "The operator.", body = OperatorResponse),
        (status = 409, description = "`invalid_request`: the username is taken.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn create_operator(
    State(st): State<AppState>,
    admin: Admin<ADMIN>,
    Body(req): Body<CreateOperatorRequest>,
) -> ApiResult<(StatusCode, Json<OperatorResponse>)> {
    let role = req.role;
    let user = st
        .engine
        .create_operator(req.username, req.password, role)
        .await
        .map_err(admin_err)?;
    admin.acting_on_user(user.id);
    admin.detail(format!("role={}", role.as_str()));
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Change an operator's role (it applies from their next request).
#[utoipa::path(
    put,
    path = "/admin/v1/operators/{userId}/role",
    tag = "admin",
    operation_id = "setOperatorRole",
    params(
        ("userId" = uuid::Uuid, Path, description = "The operator (`userId`)."),
    ),
    request_body = RoleRequest,
    responses(
        (status = 200, description = "The operator.", body = OperatorResponse),
        (status = 404, description = "`not_found`: no such operator.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn set_role(
    State(st): State<AppState>,
    admin: Admin<ADMIN>,
    Path(u): Path<String>,
    Body(req): Body<RoleRequest>,
) -> ApiResult<Json<OperatorResponse>> {
    let user = st
        .engine
        .set_operator_role(&admin.user(&u)?, req.role)
        .await
        .map_err(admin_err)?;
    admin.detail(format!("role={}", req.role.as_str()));
    Ok(Json(user.into()))
}

/// Disable an operator: they can no longer sign in, and their console sessions are revoked.
#[utoipa::path(
    post,
    path = "/admin/v1/operators/{userId}/disable",
    tag = "admin",
    operation_id = "disableOperator",
    params(
        ("userId" = uuid::Uuid, Path, description = "The operator (`userId`)."),
    ),
    responses(
        (status = 204, description = "Done."),
        (status = 404, description = "`not_found`: no such operator.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn disable_operator(
    State(st): State<AppState>,
    admin: Admin<ADMIN>,
    Path(u): Path<String>,
) -> ApiResult<StatusCode> {
    st.engine
        .disable_user(&admin.ctx(&TenantId::operators()), &admin.user(&u)?)
        .await
        .map_err(admin_err)?;
    Ok(StatusCode::NO_CONTENT)
}
