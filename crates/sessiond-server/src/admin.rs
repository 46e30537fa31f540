//! The operator API under `/admin/v1` (DESIGN §9).

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Admin, Body, Params, Path};
use crate::wire::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use sessiond_core::Policy;
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

async fn get_tenant(
    State(st): State<AppState>,
    _: Admin,
    Path(t): Path<String>,
) -> ApiResult<Json<TenantResponse>> {
    let t = st.engine.tenant(&tenant_id(&t)?).await.map_err(admin_err)?;
    Ok(Json(t.as_ref().into()))
}

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SessionParams {
    user_id: Option<UserId>,
    state: Option<StateFilter>,
    limit: Option<usize>,
}

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
            .map(|s| SessionView::new(s, now, None))
            .collect(),
    }))
}

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuditParams {
    user_id: Option<UserId>,
    session_id: Option<String>,
    activity_id: Option<String>,
    r#type: Option<String>,
    since: Option<i64>,
    limit: Option<usize>,
}

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

async fn keys(State(st): State<AppState>, _: Admin) -> ApiResult<Json<KeysResponse>> {
    Ok(Json(st.engine.keys()?.into()))
}

async fn rotate_keys(State(st): State<AppState>, _: Admin) -> ApiResult<Json<KeysResponse>> {
    Ok(Json(
        st.engine.rotate_keys().await.map_err(admin_err)?.into(),
    ))
}

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

async fn create_client(
    State(st): State<AppState>,
    _: Admin,
    Path(t): Path<String>,
    Body(req): Body<CreateClientRequest>,
) -> ApiResult<(StatusCode, Json<ClientResponse>)> {
    let (client_id, client_secret) = st
        .engine
        .create_client(&tenant_id(&t)?, req.client_id, req.audience)
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UserParams {
    username: Option<String>,
    external_id: Option<String>,
}

/// Finds a user by username or external id (the way to learn a user's id after creation).
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
async fn webhook(
    State(st): State<AppState>,
    _: Admin,
    Path(t): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    match st.engine.webhook(&tenant_id(&t)?).await.map_err(admin_err)? {
        Some((url, secret)) => Ok(Json(serde_json::json!({ "url": url, "secret": secret }))),
        None => Err(ApiError::not_found("webhook")),
    }
}
