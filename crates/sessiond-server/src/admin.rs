//! The operator API under `/admin/v1` (DESIGN §9).

use crate::AppState;
use crate::docs;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Admin, Body, Params, Path};
use crate::schemas;
use crate::wire::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use sessiond_core::Policy;
use sessiond_proto::ids;
use sessiond_proto::{Problem, SessionsResponse};
use sessiond_store::{
    AuditKind, AuditQuery, SessionId, SessionQuery, StateFilter, TenantId, UserId,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/tenants", post(create_tenant))
        .route("/admin/v1/tenants/{tenant}", get(get_tenant))
        .route("/admin/v1/tenants/{tenant}/policy", patch(patch_policy))
        .route(
            "/admin/v1/tenants/{tenant}/users",
            post(create_user).get(find_user),
        )
        .route(
            "/admin/v1/tenants/{tenant}/users/{user}/password",
            post(set_password),
        )
        .route(
            "/admin/v1/tenants/{tenant}/users/{user}/disable",
            post(disable_user),
        )
        .route("/admin/v1/tenants/{tenant}/sessions", get(find_sessions))
        .route(
            "/admin/v1/tenants/{tenant}/sessions/{session}",
            delete(revoke_session),
        )
        .route("/admin/v1/tenants/{tenant}/audit", get(audit))
        .route(
            "/admin/v1/tenants/{tenant}/partner-secrets",
            post(create_partner_secret),
        )
        .route(
            "/admin/v1/tenants/{tenant}/partner-secrets/{secret}",
            delete(revoke_partner_secret),
        )
        .route("/admin/v1/tenants/{tenant}/sso", put(set_sso))
        .route("/admin/v1/tenants/{tenant}/clients", post(create_client))
        .route("/admin/v1/tenants/{tenant}/webhook", get(webhook))
        .route("/admin/v1/keys", get(keys))
        .route("/admin/v1/keys/rotate", post(rotate_keys))
        .route("/admin/v1/keys/{kid}/revoke", post(revoke_key))
}

/// On the admin API a tenant is a path resource: an unknown one is 404 `not_found`.
fn admin_err(e: sessiond_core::CoreError) -> ApiError {
    match e {
        sessiond_core::CoreError::UnknownTenant => ApiError::not_found("tenant"),
        e => e.into(),
    }
}

fn tenant_id(s: &str) -> ApiResult<TenantId> {
    TenantId::parse(s).map_err(|_| ApiError::not_found("tenant"))
}

fn ids(tenant: &str, user: &str) -> ApiResult<(TenantId, UserId)> {
    let user = uuid::Uuid::try_parse(user).map_err(|_| ApiError::not_found("user"))?;
    Ok((tenant_id(tenant)?, user))
}

/// Create a tenant with a profile and optional policy overrides.
#[utoipa::path(
    post,
    path = "/admin/v1/tenants",
    tag = "admin",
    operation_id = "createTenant",
    request_body = CreateTenantRequest,
    security(("adminToken" = [])),
    responses(
        (status = 201, description = "The tenant, with its effective policy.", body = TenantResponse),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_request`: the tenant already exists.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = docs::D_413, body = Problem, content_type = "application/problem+json"),
        (status = 415, description = docs::D_415, body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn create_tenant(
    State(st): State<AppState>,
    _: Admin,
    Body(req): Body<CreateTenantRequest>,
) -> ApiResult<(StatusCode, Json<TenantResponse>)> {
    let id = TenantId::parse(&req.id).map_err(|_| {
        ApiError::invalid_request("id must be 1 to 64 characters of A-Z, a-z, 0-9, - and _")
    })?;
    let t = st
        .engine
        .create_tenant(id, req.name, req.profile, req.policy)
        .await
        .map_err(admin_err)?;
    Ok((StatusCode::CREATED, Json(t.as_ref().into())))
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
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The tenant.", body = TenantResponse),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = docs::D_404_TENANT, body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn get_tenant(
    State(st): State<AppState>,
    _: Admin,
    Path(t): Path<String>,
) -> ApiResult<Json<TenantResponse>> {
    let t = st.engine.tenant(&tenant_id(&t)?).await.map_err(admin_err)?;
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
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The effective policy.", body = schemas::Policy),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = docs::D_404_TENANT, body = Problem, content_type = "application/problem+json"),
        (status = 413, description = docs::D_413, body = Problem, content_type = "application/problem+json"),
        (status = 415, description = docs::D_415, body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn patch_policy(
    State(st): State<AppState>,
    _: Admin,
    Path(t): Path<String>,
    Body(patch): Body<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<Json<Policy>> {
    Ok(Json(
        st.engine
            .patch_policy(&tenant_id(&t)?, patch)
            .await
            .map_err(admin_err)?,
    ))
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
    security(("adminToken" = [])),
    responses(
        (status = 201, description = "The user.", body = UserResponse),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = docs::D_404_TENANT, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_request`: the username or customer id is taken.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = docs::D_413, body = Problem, content_type = "application/problem+json"),
        (status = 415, description = docs::D_415, body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn create_user(
    State(st): State<AppState>,
    _: Admin,
    Path(t): Path<String>,
    Body(req): Body<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<UserResponse>)> {
    let user = st
        .engine
        .create_user(
            &tenant_id(&t)?,
            req.username,
            req.password,
            req.customer_id,
            req.external_id,
        )
        .await
        .map_err(admin_err)?;
    Ok((StatusCode::CREATED, Json(user.into())))
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
    security(("adminToken" = [])),
    responses(
        (status = 204, description = "Done."),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such tenant or user.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = docs::D_413, body = Problem, content_type = "application/problem+json"),
        (status = 415, description = docs::D_415, body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn set_password(
    State(st): State<AppState>,
    admin: Admin,
    Path((t, u)): Path<(String, String)>,
    Body(req): Body<PasswordRequest>,
) -> ApiResult<StatusCode> {
    let (t, u) = ids(&t, &u)?;
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
    security(("adminToken" = [])),
    responses(
        (status = 204, description = "Done."),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such tenant or user.", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn disable_user(
    State(st): State<AppState>,
    admin: Admin,
    Path((t, u)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (t, u) = ids(&t, &u)?;
    st.engine
        .disable_user(&admin.ctx(&t), &u)
        .await
        .map_err(admin_err)?;
    Ok(StatusCode::NO_CONTENT)
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
    /// At most this many (default 100, at most 1000).
    #[param(nullable = false)]
    limit: Option<usize>,
}

/// Search a tenant's sessions, newest first.
#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{tenantId}/sessions",
    tag = "admin",
    operation_id = "findSessions",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
        SessionParams,
    ),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The matching sessions.", body = SessionsResponse),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = docs::D_404_TENANT, body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn find_sessions(
    State(st): State<AppState>,
    _: Admin,
    Path(t): Path<String>,
    Params(p): Params<SessionParams>,
) -> ApiResult<Json<SessionsResponse>> {
    let q = SessionQuery {
        user_id: p.user_id,
        state: p.state,
        limit: p.limit.unwrap_or(100).min(1000),
    };
    let now = st.engine.now();
    let sessions = st
        .engine
        .find_sessions(&tenant_id(&t)?, &q)
        .await
        .map_err(admin_err)?;
    Ok(Json(SessionsResponse {
        sessions: sessions
            .into_iter()
            .map(|s| session_view(s, now, None))
            .collect(),
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
    security(("adminToken" = [])),
    responses(
        (status = 204, description = "The session is revoked (or already was)."),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such tenant or session.", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn revoke_session(
    State(st): State<AppState>,
    admin: Admin,
    Path((t, s)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let t = tenant_id(&t)?;
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

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// Only this user's events.
    #[param(value_type = Option<uuid::Uuid>, nullable = false)]
    user_id: Option<UserId>,
    /// Only this session's events.
    #[param(value_type = Option<ids::SessionId>, nullable = false)]
    session_id: Option<String>,
    /// Only the events of this activity (`X-Activity-ID`).
    #[param(nullable = false)]
    activity_id: Option<String>,
    /// Only events of this type.
    #[param(value_type = Option<schemas::AuditKind>, nullable = false)]
    r#type: Option<String>,
    /// Only events at or after this time (Unix seconds).
    #[param(nullable = false)]
    since: Option<i64>,
    /// At most this many (default 100, at most 1000).
    #[param(nullable = false)]
    limit: Option<usize>,
}

/// Search a tenant's audit events, newest first.
#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{tenantId}/audit",
    tag = "admin",
    operation_id = "audit",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
        AuditParams,
    ),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The matching events.", body = AuditResponse),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = docs::D_404_TENANT, body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn audit(
    State(st): State<AppState>,
    _: Admin,
    Path(t): Path<String>,
    Params(p): Params<AuditParams>,
) -> ApiResult<Json<AuditResponse>> {
    let kind = p
        .r#type
        .map(|k| {
            AuditKind::parse(&k)
                .ok_or_else(|| ApiError::invalid_request(format!("unknown event type {k}")))
        })
        .transpose()?;
    let session_id = p
        .session_id
        .map(|s| SessionId::parse(&s).map_err(|_| ApiError::invalid_request("malformed sessionId")))
        .transpose()?;
    let q = AuditQuery {
        user_id: p.user_id,
        session_id,
        activity_id: p.activity_id,
        kind,
        since: p.since,
        limit: p.limit.unwrap_or(100).min(1000),
    };
    Ok(Json(AuditResponse {
        events: st
            .engine
            .find_audit(&tenant_id(&t)?, &q)
            .await
            .map_err(admin_err)?,
    }))
}

/// The signing keys (public parts, state, times).
#[utoipa::path(
    get,
    path = "/admin/v1/keys",
    tag = "admin",
    operation_id = "listKeys",
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The keys.", body = KeysResponse),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn keys(State(st): State<AppState>, _: Admin) -> ApiResult<Json<KeysResponse>> {
    Ok(Json(st.engine.keys()?.into()))
}

/// Rotate the signing keys: the published next key starts signing, a new next key is
/// published, and the old signing key stays published until its tokens have expired.
#[utoipa::path(
    post,
    path = "/admin/v1/keys/rotate",
    tag = "admin",
    operation_id = "rotateKeys",
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The keys after the rotation.", body = KeysResponse),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn rotate_keys(State(st): State<AppState>, _: Admin) -> ApiResult<Json<KeysResponse>> {
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
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The keys after the revocation.", body = KeysResponse),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such key.", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn revoke_key(
    State(st): State<AppState>,
    admin: Admin,
    Path(kid): Path<String>,
) -> ApiResult<Json<KeysResponse>> {
    // Keys belong to no tenant: the placeholder only carries the request's activity and IP
    // to the log line.
    let ctx = TenantId::parse("admin").map(|t| admin.ctx(&t)).ok();
    match st
        .engine
        .revoke_key(&kid, ctx.as_ref())
        .await
        .map_err(admin_err)?
    {
        Some(keys) => Ok(Json(keys.into())),
        None => Err(ApiError::not_found("key")),
    }
}

/// Create a partner secret for the tenant (shown once; several may be active).
#[utoipa::path(
    post,
    path = "/admin/v1/tenants/{tenantId}/partner-secrets",
    tag = "admin",
    operation_id = "createPartnerSecret",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
    ),
    security(("adminToken" = [])),
    responses(
        (status = 201, description = "The secret and its id.", body = PartnerSecretResponse),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = docs::D_404_TENANT, body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn create_partner_secret(
    State(st): State<AppState>,
    _: Admin,
    Path(t): Path<String>,
) -> ApiResult<(StatusCode, Json<PartnerSecretResponse>)> {
    let (secret_id, secret) = st
        .engine
        .create_partner_secret(&tenant_id(&t)?)
        .await
        .map_err(admin_err)?;
    Ok((
        StatusCode::CREATED,
        Json(PartnerSecretResponse { secret_id, secret }),
    ))
}

/// Revoke a partner secret.
#[utoipa::path(
    delete,
    path = "/admin/v1/tenants/{tenantId}/partner-secrets/{secretId}",
    tag = "admin",
    operation_id = "revokePartnerSecret",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
        ("secretId" = String, Path, description = "The secret's id."),
    ),
    security(("adminToken" = [])),
    responses(
        (status = 204, description = "Done."),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such tenant or partner secret.", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn revoke_partner_secret(
    State(st): State<AppState>,
    _: Admin,
    Path((t, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    st.engine
        .revoke_partner_secret(&tenant_id(&t)?, &id)
        .await
        .map_err(admin_err)?;
    Ok(StatusCode::NO_CONTENT)
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
    security(("adminToken" = [])),
    responses(
        (status = 204, description = "Done."),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = docs::D_404_TENANT, body = Problem, content_type = "application/problem+json"),
        (status = 413, description = docs::D_413, body = Problem, content_type = "application/problem+json"),
        (status = 415, description = docs::D_415, body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn set_sso(
    State(st): State<AppState>,
    _: Admin,
    Path(t): Path<String>,
    Body(cfg): Body<sessiond_core::SsoConfig>,
) -> ApiResult<StatusCode> {
    st.engine
        .set_sso(&tenant_id(&t)?, cfg)
        .await
        .map_err(admin_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create a service client (introspection, internal access tokens, back-channel logout); the
/// secret is shown once.
#[utoipa::path(
    post,
    path = "/admin/v1/tenants/{tenantId}/clients",
    tag = "admin",
    operation_id = "createClient",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
    ),
    request_body = CreateClientRequest,
    security(("adminToken" = [])),
    responses(
        (status = 201, description = "The client's id and secret.", body = ClientResponse),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = docs::D_404_TENANT, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_request`: the clientId is taken.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = docs::D_413, body = Problem, content_type = "application/problem+json"),
        (status = 415, description = docs::D_415, body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn create_client(
    State(st): State<AppState>,
    _: Admin,
    Path(t): Path<String>,
    Body(req): Body<CreateClientRequest>,
) -> ApiResult<(StatusCode, Json<ClientResponse>)> {
    let (client_id, client_secret) = st
        .engine
        .create_client(
            &tenant_id(&t)?,
            req.client_id,
            req.audience,
            req.backchannel_logout_uri,
        )
        .await
        .map_err(admin_err)?;
    Ok((
        StatusCode::CREATED,
        Json(ClientResponse {
            client_id,
            client_secret,
        }),
    ))
}

/// Exactly one of `username` and `externalId`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UserParams {
    /// The user's username.
    #[param(nullable = false)]
    username: Option<String>,
    /// The partner's id for the user (the SSO token's `sub`).
    #[param(nullable = false)]
    external_id: Option<String>,
}

/// Find a user by username or external id (the way to learn a user's id).
#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{tenantId}/users",
    tag = "admin",
    operation_id = "findUser",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
        UserParams,
    ),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The user.", body = UserResponse),
        (status = 400, description = docs::D_400_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such tenant or user.", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn find_user(
    State(st): State<AppState>,
    _: Admin,
    Path(t): Path<String>,
    Params(p): Params<UserParams>,
) -> ApiResult<Json<UserResponse>> {
    let t = tenant_id(&t)?;
    let user = match (p.username, p.external_id) {
        (Some(u), None) => st.engine.find_user(&t, &u).await,
        (None, Some(e)) => st.engine.find_user_by_external_id(&t, &e).await,
        _ => {
            return Err(ApiError::invalid_request(
                "give exactly one of username and externalId",
            ));
        }
    }
    .map_err(admin_err)?;
    Ok(Json(
        user.ok_or_else(|| ApiError::not_found("user"))?.into(),
    ))
}

/// The tenant's webhook URL (policy `webhookUrl`) and the secret its deliveries are signed
/// with (`X-Sessiond-Signature: v1=HMAC-SHA256(secret, timestamp + "." + body)`).
#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{tenantId}/webhook",
    tag = "admin",
    operation_id = "getWebhook",
    params(("tenantId" = ids::TenantId, Path, description = "The tenant.")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The webhook.", body = schemas::Webhook),
        (status = 400, description = docs::D_400_ADMIN, body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = docs::D_401_ADMIN, body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = docs::D_403_ADMIN, body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such tenant, or it has no webhook.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn webhook(
    State(st): State<AppState>,
    _: Admin,
    Path(t): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    match st
        .engine
        .webhook(&tenant_id(&t)?)
        .await
        .map_err(admin_err)?
    {
        Some((url, secret)) => Ok(Json(serde_json::json!({ "url": url, "secret": secret }))),
        None => Err(ApiError::not_found("webhook")),
    }
}
