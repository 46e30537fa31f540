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
