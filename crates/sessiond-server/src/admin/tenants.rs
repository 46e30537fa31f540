//! Tenants: create, list, read, policy, SSO trust and webhook.

use super::{ADMIN, Admin, VIEWER, admin_err, decode_cursor, next_cursor, page_size};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Params, Path};
use crate::schemas;
use crate::wire::{CreateTenantRequest, TenantResponse, TenantsPage};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, put};
use axum::{Json, Router};
use serde::Deserialize;
use sessiond_core::Policy;
use sessiond_proto::{Problem, ids};
use sessiond_store::{Role, TenantId};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/admin/v1/tenants/{tenant}", get(get_tenant))
        .route("/admin/v1/tenants/{tenant}/policy", patch(patch_policy))
        .route("/admin/v1/tenants/{tenant}/sso", put(set_sso))
        .route("/admin/v1/tenants/{tenant}/webhook", get(webhook))
}

/// Create a tenant with a profile and optional policy overrides.
#[utoipa::path(
    post,
    path = "/admin/v1/tenants",
    tag = "admin",
    operation_id = "createTenant",
    request_body = CreateTenantRequest,
    responses(
        (status = 201, description = "The tenant, with its effective policy.", body = TenantResponse),
        (status = 409, description = "`invalid_request`: the tenant already exists.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn create_tenant(
    State(st): State<AppState>,
    admin: Admin<ADMIN>,
    Body(req): Body<CreateTenantRequest>,
) -> ApiResult<(StatusCode, Json<TenantResponse>)> {
    let id = TenantId::parse(&req.id).map_err(|_| {
        ApiError::invalid_request("id must be 1 to 64 characters of A-Z, a-z, 0-9, - and _")
    })?;
    if id.is_reserved() {
        return Err(ApiError::invalid_request(
            "tenant ids starting with _ are reserved for sessiond",
        ));
    }
    admin.acting_on(&id);
    let t = st
        .engine
        .create_tenant(id, req.name, req.profile, req.policy)
        .await
        .map_err(admin_err)?;
    Ok((StatusCode::CREATED, Json(t.as_ref().into())))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// The `nextCursor` of the previous page.
    #[param(nullable = false)]
    cursor: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[param(nullable = false, minimum = 1)]
    limit: Option<usize>,
}

/// List the tenants, by id, a page at a time (the operators' tenant `_operators` only to
/// admins).
#[utoipa::path(
    get,
    path = "/admin/v1/tenants",
    tag = "admin",
    operation_id = "listTenants",
    params(PageParams),
    responses(
        (status = 200, description = "A page of tenants.", body = TenantsPage),
    ),
)]
pub(crate) async fn list_tenants(
    State(st): State<AppState>,
    admin: Admin<VIEWER>,
    Params(p): Params<PageParams>,
) -> ApiResult<Json<TenantsPage>> {
    let limit = page_size(p.limit);
    let after: Option<String> = decode_cursor(p.cursor.as_deref())?;
    let after = after
        .map(|a| TenantId::parse(&a).map_err(|_| ApiError::invalid_request("malformed cursor")))
        .transpose()?;
    let found = st
        .engine
        .list_tenants(after.as_ref(), limit)
        .await
        .map_err(admin_err)?;
    let next = next_cursor(&found, limit, |t| t.id.as_str().to_owned());
    let mut tenants = Vec::with_capacity(found.len());
    for t in found {
        if t.id.is_reserved() && admin.actor.role < Role::Admin {
            continue;
        }
        let policy = Policy::effective(t.profile, &t.overrides).map_err(admin_err)?;
        tenants.push(TenantResponse::from(&sessiond_core::TenantPolicy {
            tenant: t,
            policy,
        }));
    }
    Ok(Json(TenantsPage {
        tenants,
        next_cursor: next,
    }))
}

/// A tenant, with its effective policy.
#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{tenantId}",
    tag = "admin",
    operation_id = "getTenant",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
    ),
    responses(
        (status = 200, description = "The tenant.", body = TenantResponse),
    ),
)]
pub(crate) async fn get_tenant(
    State(st): State<AppState>,
    admin: Admin<VIEWER>,
    Path(t): Path<String>,
) -> ApiResult<Json<TenantResponse>> {
    let t = st
        .engine
        .tenant(&admin.tenant(&t)?)
        .await
        .map_err(admin_err)?;
    Ok(Json(t.as_ref().into()))
}

/// Change a tenant's policy overrides (JSON merge patch; `null` restores a default).
#[utoipa::path(
    patch,
    path = "/admin/v1/tenants/{tenantId}/policy",
    tag = "admin",
    operation_id = "patchPolicy",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
    ),
    request_body = schemas::PolicyPatch,
    responses(
        (status = 200, description = "The effective policy.", body = schemas::Policy),
    ),
)]
pub(crate) async fn patch_policy(
    State(st): State<AppState>,
    admin: Admin<ADMIN>,
    Path(t): Path<String>,
    Body(patch): Body<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<Json<Policy>> {
    Ok(Json(
        st.engine
            .patch_policy(&admin.tenant(&t)?, patch)
            .await
            .map_err(admin_err)?,
    ))
}

/// Set the tenant's SSO trust (exactly one of `hs256Secret`, `publicKeyPem`, `jwksUrl` and
/// `verifyUrl` with `verifySecret`).
#[utoipa::path(
    put,
    path = "/admin/v1/tenants/{tenantId}/sso",
    tag = "admin",
    operation_id = "setSso",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
    ),
    request_body = schemas::SsoConfig,
    responses(
        (status = 204, description = "Done."),
    ),
)]
pub(crate) async fn set_sso(
    State(st): State<AppState>,
    admin: Admin<ADMIN>,
    Path(t): Path<String>,
    Body(cfg): Body<sessiond_core::SsoConfig>,
) -> ApiResult<StatusCode> {
    st.engine
        .set_sso(&admin.tenant(&t)?, cfg)
        .await
        .map_err(admin_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's webhook URL (policy `webhookUrl`) and the secret its deliveries are signed
/// with (`X-Sessiond-Signature: v1=HMAC-SHA256(secret, timestamp + "." + body)`).
#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{tenantId}/webhook",
    tag = "admin",
    operation_id = "getWebhook",
    params(("tenantId" = ids::TenantId, Path, description = "The tenant.")),
    responses(
        (status = 200, description = "The webhook.", body = schemas::Webhook),
        (status = 404, description = "`not_found`: no such tenant, or it has no webhook.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn webhook(
    State(st): State<AppState>,
    admin: Admin<ADMIN>,
    Path(t): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    match st
        .engine
        .webhook(&admin.tenant(&t)?)
        .await
        .map_err(admin_err)?
    {
        Some((url, secret)) => Ok(Json(serde_json::json!({ "url": url, "secret": secret }))),
        None => Err(ApiError::not_found("webhook")),
    }
}
