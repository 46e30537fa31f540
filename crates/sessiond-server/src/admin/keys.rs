//! The signing keyring: read, rotate, revoke a key at once.

use super::{ADMIN, Admin, VIEWER, admin_err};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::wire::KeysResponse;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use sessiond_proto::Problem;
use sessiond_store::TenantId;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/keys", get(keys))
        .route("/admin/v1/keys/rotate", post(rotate_keys))
        .route("/admin/v1/keys/{kid}/revoke", post(revoke_key))
}

/// The signing keys (public parts, state, times).
#[utoipa::path(
    get,
    path = "/admin/v1/keys",
    tag = "admin",
    operation_id = "listKeys",
    responses(
        (status = 200, description = "The keys.", body = KeysResponse),
    ),
)]
pub(crate) async fn keys(
    State(st): State<AppState>,
    _: Admin<VIEWER>,
) -> ApiResult<Json<KeysResponse>> {
    Ok(Json(st.engine.keys()?.into()))
}

/// Rotate the signing keys: the published next key starts signing, a new next key is
/// published, and the old signing key stays published until its tokens have expired.
#[utoipa::path(
    post,
    path = "/admin/v1/keys/rotate",
    tag = "admin",
    operation_id = "rotateKeys",
    responses(
        (status = 200, description = "The keys after the rotation.", body = KeysResponse),
    ),
)]
pub(crate) async fn rotate_keys(
    State(st): State<AppState>,
    _: Admin<ADMIN>,
) -> ApiResult<Json<KeysResponse>> {
    Ok(Json(
        st.engine.rotate_keys().await.map_err(admin_err)?.into(),
    ))
}

/// Revoke a (leaked) key at once: it leaves the JWKS and the tokens it signed are refused
/// (by the other nodes once they read the change from the change log). A revoked signing key
/// is replaced as by a rotation (the published next key signs, a new next key is published);
/// a revoked next key by a new one.
#[utoipa::path(
    post,
    path = "/admin/v1/keys/{kid}/revoke",
    tag = "admin",
    operation_id = "revokeKey",
    params(
        ("kid" = String, Path, description = "The key's id (`kid`)."),
    ),
    responses(
        (status = 200, description = "The keys after the revocation.", body = KeysResponse),
        (status = 404, description = "`not_found`: no such key.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn revoke_key(
    State(st): State<AppState>,
    admin: Admin<ADMIN>,
    Path(kid): Path<String>,
) -> ApiResult<Json<KeysResponse>> {
    // Keys belong to no tenant: the operators' tenant carries the request's activity, IP and
    // actor to the log line.
    let ctx = admin.ctx(&TenantId::operators());
    match st
        .engine
        .revoke_key(&kid, Some(&ctx))
        .await
        .map_err(admin_err)?
    {
        Some(keys) => Ok(Json(keys.into())),
        None => Err(ApiError::not_found("key")),
    }
}
