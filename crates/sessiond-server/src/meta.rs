//! Unauthenticated endpoints: public keys, issuer metadata, liveness and readiness (the OpenAPI
//! document, which describes these handlers, is served by [`crate::openapi`]).

use crate::AppState;
use crate::docs;
use crate::error::{ApiError, ApiResult};
use crate::schemas;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sessiond_proto::ErrorCode;
use sessiond_proto::{Jwks, Problem};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The public keys (JWKS): signing, next and retiring.
///
/// Cached for 5 minutes (`Cache-Control: public, max-age=300`).
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "well-known",
    operation_id = "jwks",
    responses(
        (status = 200, description = "The JSON Web Key Set.", body = Jwks),
        (status = 400, description = docs::D_400_TRACE, body = Problem,
            content_type = "application/problem+json"),
    ),
)]
async fn jwks(State(st): State<AppState>) -> ApiResult<Response> {
    let jwks: Jwks = serde_json::from_value(st.engine.jwks()?).map_err(|e| {
        ApiError::from(sessiond_core::CoreError::Internal(format!("the JWKS: {e}")))
    })?;
    let mut res = Json(jwks).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(res)
}

/// Liveness.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    responses(
        (status = 200, description = "The server runs: `{\"status\": \"ok\"}`.",
            body = schemas::Health),
        (status = 400, description = docs::D_400_TRACE, body = Problem,
            content_type = "application/problem+json"),
    ),
)]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ready\"}`.", body = schemas::Health),
        (status = 400, description = docs::D_400_TRACE, body = Problem,
            content_type = "application/problem+json"),
        (status = 503, description = "`store_unavailable` (with `Retry-After`): a store is \
            unreachable; `internal_error`: no answer within 30 s.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn readyz(State(st): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    st.engine.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "store not ready");
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StoreUnavailable,
            "a store is unreachable",
        );
        e.retry_after = Some(1);
        e
    })?;
    Ok(Json(serde_json::json!({ "status": "ready" })))
}

/// Issuer metadata.
///
/// The subset of OpenID Connect Discovery / RFC 8414 that applies to a session server: keys,
/// introspection, revocation, algorithms. Cached for 5 minutes.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "well-known",
    operation_id = "openidConfiguration",
    responses(
        (status = 200, description = "The issuer's metadata.", body = schemas::Discovery),
        (status = 400, description = docs::D_400_TRACE, body = Problem,
            content_type = "application/problem+json"),
    ),
)]
async fn discovery(State(st): State<AppState>) -> ApiResult<Response> {
    let issuer = st.engine.config().issuer.clone();
    let base = issuer.trim_end_matches('/');
    let auth = ["client_secret_basic", "client_secret_post"];
    let body = serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{base}/oauth2/introspect"),
        "introspection_endpoint_auth_methods_supported": auth,
        "revocation_endpoint": format!("{base}/oauth2/revoke"),
        "revocation_endpoint_auth_methods_supported": auth,
        "access_token_signing_alg_values_supported": st.engine.signing_algorithms()?,
        "token_types_supported": ["at+jwt"],
    });
    let mut res = Json(body).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(res)
}
