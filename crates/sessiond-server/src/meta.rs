//! Unauthenticated endpoints: public keys, liveness and readiness.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn jwks(State(st): State<AppState>) -> ApiResult<Response> {
    let mut res = Json(st.engine.jwks()?).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(res)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(st): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    st.engine.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "store not ready");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "internal_error",
            "the store is unreachable",
        )
    })?;
    Ok(Json(serde_json::json!({ "status": "ready" })))
}

/// Issuer metadata (the subset of OpenID Connect Discovery / RFC 8414 that applies to a
/// session server: keys, introspection, revocation, algorithms).
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
