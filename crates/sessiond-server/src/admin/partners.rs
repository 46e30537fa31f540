//! A tenant's partner secrets and service clients: list, create (the secret shown once),
//! revoke.

use super::{Admin, OPERATOR, VIEWER, admin_err};
use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Body, Path};
use crate::wire::{
    ClientResponse, ClientView, ClientsResponse, CreateClientRequest, PartnerSecretResponse,
    PartnerSecretView, PartnerSecretsResponse,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use sessiond_proto::{Problem, ids};
use sessiond_store::Role;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/v1/tenants/{tenant}/partner-secrets",
            get(list_partner_secrets).post(create_partner_secret),
        )
        .route(
            "/admin/v1/tenants/{tenant}/partner-secrets/{secret}",
            delete(revoke_partner_secret),
        )
        .route(
            "/admin/v1/tenants/{tenant}/clients",
            get(list_clients).post(create_client),
        )
}

/// The tenant's partner secrets (ids and creation times; never the secrets).
#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{tenantId}/partner-secrets",
    tag = "admin",
    operation_id = "listPartnerSecrets",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
    ),
    responses(
        (status = 200, description = "The secrets, by id.", body = PartnerSecretsResponse),
    ),
)]
pub(crate) async fn list_partner_secrets(
    State(st): State<AppState>,
    admin: Admin<VIEWER>,
    Path(t): Path<String>,
) -> ApiResult<Json<PartnerSecretsResponse>> {
    let secrets = st
        .engine
        .list_partner_secrets(&admin.tenant(&t)?)
        .await
        .map_err(admin_err)?;
    Ok(Json(PartnerSecretsResponse {
        secrets: secrets
            .into_iter()
            .map(|s| PartnerSecretView {
                secret_id: s.secret_id,
                created_at: s.created_at,
            })
            .collect(),
    }))
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
    responses(
        (status = 201, description = "The secret and its id.", body = PartnerSecretResponse),
    ),
)]
pub(crate) async fn create_partner_secret(
    State(st): State<AppState>,
    admin: Admin<OPERATOR>,
    Path(t): Path<String>,
) -> ApiResult<(StatusCode, Json<PartnerSecretResponse>)> {
    let (secret_id, secret) = st
        .engine
        .create_partner_secret(&admin.tenant(&t)?)
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
    responses(
        (status = 204, description = "Done."),
        (status = 404, description = "`not_found`: no such tenant or partner secret.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn revoke_partner_secret(
    State(st): State<AppState>,
    admin: Admin<OPERATOR>,
    Path((t, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    st.engine
        .revoke_partner_secret(&admin.tenant(&t)?, &id)
        .await
        .map_err(admin_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's service clients (never their secrets).
#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{tenantId}/clients",
    tag = "admin",
    operation_id = "listClients",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
    ),
    responses(
        (status = 200, description = "The clients, by id.", body = ClientsResponse),
    ),
)]
pub(crate) async fn list_clients(
    State(st): State<AppState>,
    admin: Admin<VIEWER>,
    Path(t): Path<String>,
) -> ApiResult<Json<ClientsResponse>> {
    let clients = st
        .engine
        .list_clients(&admin.tenant(&t)?)
        .await
        .map_err(admin_err)?;
    Ok(Json(ClientsResponse {
        clients: clients
            .into_iter()
            .map(|c| ClientView {
                client_id: c.client_id,
                audience: c.audience,
                backchannel_logout_uri: c.backchannel_logout_uri,
                created_at: c.created_at,
            })
            .collect(),
    }))
}

/// Create a service client (introspection, internal access tokens, back-channel logout); the
/// secret is shown once. A `backchannelLogoutUri` needs the admin role.
#[utoipa::path(
    post,
    path = "/admin/v1/tenants/{tenantId}/clients",
    tag = "admin",
    operation_id = "createClient",
    params(
        ("tenantId" = ids::TenantId, Path, description = "The tenant."),
    ),
    request_body = CreateClientRequest,
    responses(
        (status = 201, description = "The client's id and secret.", body = ClientResponse),
        (status = 409, description = "`invalid_request`: the clientId is taken.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn create_client(
    State(st): State<AppState>,
    admin: Admin<OPERATOR>,
    Path(t): Path<String>,
    Body(req): Body<CreateClientRequest>,
) -> ApiResult<(StatusCode, Json<ClientResponse>)> {
    // A back-channel logout URI makes sessiond send requests to an address of the caller's
    // choosing, as the tenant's webhook and CAEP receiver (policy) do: admins only.
    if req.backchannel_logout_uri.is_some() && admin.actor.role < Role::Admin {
        return Err(super::forbidden(
            "a backchannelLogoutUri needs the admin role",
        ));
    }
    let (client_id, client_secret) = st
        .engine
        .create_client(
            &admin.tenant(&t)?,
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
